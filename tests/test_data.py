"""Tests of pdd.data on small files written in each dataset's real on-disk format (no loader mocks)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.abc
import io
import json
import pickle
import struct
import sys
import traceback
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner

import pdd.data as data
from pdd.cli import main
from pdd.data import DATASETS, DatasetCorrupt, DatasetMissing, TorchvisionUnusable, get_dataset, prepare

OFFLINE_NAMES = ("fashion_mnist", "cifar10", "cifar100", "tiny_imagenet")


@pytest.fixture(autouse=True)
def no_system_data(tmp_path_factory, monkeypatch):
    """Hide the machine's installed datasets (and any $PDD_SYSTEM_DATA) from every test here."""
    monkeypatch.delenv(data.SYSTEM_DATA_ENV, raising=False)
    nowhere = tmp_path_factory.mktemp("no-system-data") / "absent"
    monkeypatch.setattr(data, "SYSTEM_DIRS", {name: (nowhere,) for name in data.SYSTEM_DIRS})


# ----------------------------------------------------------------------------- helpers


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _all(ds) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (image, label) of `ds` through its public __getitem__, stacked."""
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    assert all(isinstance(y, int) for y in ys)
    return torch.stack(xs), torch.tensor(ys)


def _idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian int32 dims, raw bytes."""
    assert array.dtype == np.uint8
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


class _Py2Pickler(pickle._Pickler):
    """Writes text as Python-2 `str` (SHORT_BINSTRING / BINSTRING), like the cPickle'd CIFAR files.

    Loaded with encoding="bytes" the dict keys come back as b"data", b"fine_labels", ...; with
    torchvision's encoding="latin1" they come back as str, exactly as with the official files.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: str) -> None:
        raw = obj.encode("latin1")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = lambda self, obj: self.save_py2_str(obj.decode("latin1"))  # numpy's raw buffer


def _py2_pickle(obj, path: Path) -> None:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())


def _assert_missing(excinfo, *needles: object) -> None:
    message = str(excinfo.value)
    for needle in needles:
        assert str(needle) in message, f"{needle!s} not in {message!r}"


# ----------------------------------------------------------------------------- digits


def test_digits_shapes_range_labels():
    train = get_dataset("digits", "train", "unused-root")
    test = get_dataset("digits", "test", "unused-root")
    assert len(test) >= 300
    assert len(train) + len(test) == 1797
    for ds in (train, test):
        x, y = ds[0]
        assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
        assert x.shape == (1, 8, 8)
        assert isinstance(y, int)
        xs, ys = _all(ds)
        assert xs.shape[1:] == (1, 8, 8)
        assert 0.0 <= xs.min() and xs.max() <= 1.0
        assert xs.max() == 1.0  # scaled by 16, not by 255
        assert set(ys.tolist()) <= set(range(10))
    assert set(test.labels.tolist()) == set(range(10))  # stratified: every class in test


def test_digits_split_is_disjoint_complete_and_deterministic():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    every = torch.tensor(bunch.images, dtype=torch.float32).div(16).reshape(len(bunch.images), -1)
    keys = lambda ds: [tuple(x.flatten().tolist()) + (int(y),) for x, y in zip(ds.images, ds.labels)]
    train, test = get_dataset("digits", "train", "."), get_dataset("digits", "test", ".")
    train_keys, test_keys = keys(train), keys(test)
    everything = [tuple(x.tolist()) + (int(y),) for x, y in zip(every, bunch.target)]
    # Same multiset of (image, label) as scikit-learn's data: a partition of it.
    assert sorted(train_keys + test_keys) == sorted(everything)
    # Disjoint as index sets: no sample is in both (duplicates in the raw data only count once each).
    from collections import Counter

    assert Counter(train_keys) + Counter(test_keys) == Counter(everything)
    # Stratification keeps the class proportions close.
    counts = torch.bincount(test.labels, minlength=10).float()
    expected = torch.bincount(torch.as_tensor(bunch.target), minlength=10).float() * len(test) / 1797
    assert (counts - expected).abs().max() <= 1.0
    again = get_dataset("digits", "test", ".")
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    again_train = get_dataset("digits", "train", ".")
    assert torch.equal(again_train.images, train.images) and torch.equal(again_train.labels, train.labels)


# ----------------------------------------------------------------------------- fashion_mnist


FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_SIZES = {"train": 5, "test": 3}


def _write_fashion_gz(directory: Path, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four Fashion-MNIST .gz files of random images and labels in `directory`; returns split -> arrays."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in FASHION_SIZES.items():
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255  # both ends of the range
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        image_file, label_file = FASHION_FILES[split]
        (directory / f"{image_file}.gz").write_bytes(gzip.compress(_idx_bytes(images)))
        (directory / f"{label_file}.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
        written[split] = (images, labels)
    return written


def _fashion_digests(written) -> dict[str, str]:
    """sha256 of each decompressed file, computed from the arrays (not from the files)."""
    digests = {}
    for split, (images, labels) in written.items():
        image_file, label_file = FASHION_FILES[split]
        digests[image_file] = hashlib.sha256(_idx_bytes(images)).hexdigest()
        digests[label_file] = hashlib.sha256(_idx_bytes(labels)).hexdigest()
    return digests


def _expect_fashion(monkeypatch, written) -> dict[str, str]:
    """Make `written` the expected Fashion-MNIST (content digests and item counts); return the digests."""
    digests = _fashion_digests(written)
    counts = {file: FASHION_SIZES[split] for split, files in FASHION_FILES.items() for file in files}
    monkeypatch.setattr(data, "FASHION_MNIST_SHA256", digests)
    monkeypatch.setattr(data, "FASHION_MNIST_COUNTS", counts)
    return digests


def _write_fashion(root: Path, seed: int = 0):
    raw = root / "FashionMNIST" / "raw"
    return raw, _write_fashion_gz(raw, seed)


def _check_fashion(root: Path, written) -> None:
    for split, (images, labels) in written.items():
        ds = get_dataset("fashion_mnist", split, root)
        assert len(ds) == len(labels)
        assert ds.num_classes == 10
        xs, ys = _all(ds)
        assert xs.dtype == torch.float32 and xs.shape == (len(labels), 1, 28, 28)
        assert torch.allclose(xs[:, 0], torch.from_numpy(images).float() / 255, atol=1e-7)
        assert xs.min() == 0.0 and xs.max() == 1.0
        assert ys.tolist() == labels.tolist()


def test_idx_header_is_the_real_one():
    assert _idx_bytes(np.zeros((2, 28, 28), np.uint8))[:16] == bytes.fromhex(
        "00000803" "00000002" "0000001c" "0000001c"
    )
    assert _idx_bytes(np.zeros(3, np.uint8))[:8] == bytes.fromhex("00000801" "00000003")


def test_fashion_mnist_constants_describe_the_real_dataset():
    assert set(data.FASHION_MNIST_SHA256) == set(data.FASHION_MNIST_COUNTS) == set(data.FASHION_MNIST_FILES)
    assert sum(data.FASHION_MNIST_COUNTS.values()) == 2 * (60000 + 10000)
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in data.FASHION_MNIST_SHA256.values())
    # torchvision's resource names are ours plus .gz: the files we link are the ones it reads.
    assert [f"{f}.gz" for f in data.FASHION_MNIST_FILES] == [f for f, _ in torchvision.datasets.FashionMNIST.resources]


def test_fashion_mnist_prepare_decompresses_and_loads(tmp_path, monkeypatch):
    raw, written = _write_fashion(tmp_path)
    digests = _expect_fashion(monkeypatch, written)
    prepared = prepare("fashion_mnist", tmp_path, download=False)
    assert prepared.sizes == {"train": 5, "test": 3}
    assert prepared.source == f"existing files {raw}"
    assert prepared.checksums == {file: f"sha256:{d}" for file, d in digests.items()}
    for name in data.FASHION_MNIST_FILES:
        assert (raw / name).is_file()
        assert (raw / name).read_bytes() == gzip.decompress((raw / f"{name}.gz").read_bytes())
    _check_fashion(tmp_path, written)
    # A second prepare with the raw files already decompressed is a no-op that still works.
    assert prepare("fashion_mnist", tmp_path, download=False).sizes == {"train": 5, "test": 3}


def test_fashion_mnist_gz_only_is_missing_until_prepared(tmp_path):
    raw, _ = _write_fashion(tmp_path)
    with pytest.raises(DatasetMissing) as excinfo:
        get_dataset("fashion_mnist", "train", tmp_path)
    _assert_missing(excinfo, raw, DATASETS["fashion_mnist"].source, "dataset-fashion-mnist", data.SYSTEM_DATA_ENV)


def test_verify_idx_returns_content_digests(tmp_path):
    written = _write_fashion_gz(tmp_path)
    for gz in tmp_path.glob("*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
    digests = _fashion_digests(written)
    counts = {"train-images-idx3-ubyte": 5, "train-labels-idx1-ubyte": 5,
              "t10k-images-idx3-ubyte": 3, "t10k-labels-idx1-ubyte": 3}
    found = data.verify_idx(tmp_path, digests, counts)
    assert found == {file: "sha256:" + d for file, d in digests.items()}
    # The gzip bytes do not matter (Debian repacks them): the same content recompressed differently verifies.
    gz = tmp_path / "train-images-idx3-ubyte.gz"
    assert gzip.compress(gzip.decompress(gz.read_bytes()), compresslevel=1) != gz.read_bytes()


def test_verify_idx_content_mismatch_is_a_clear_error(tmp_path):
    written = _write_fashion_gz(tmp_path)
    for gz in tmp_path.glob("*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
    digests = _fashion_digests(written)
    counts = {"train-images-idx3-ubyte": 5, "train-labels-idx1-ubyte": 5,
              "t10k-images-idx3-ubyte": 3, "t10k-labels-idx1-ubyte": 3}
    images = tmp_path / "t10k-images-idx3-ubyte"
    content = bytearray(images.read_bytes())
    content[-1] ^= 1  # one pixel, one bit
    images.write_bytes(bytes(content))
    actual = hashlib.sha256(bytes(content)).hexdigest()
    with pytest.raises(DatasetCorrupt) as excinfo:
        data.verify_idx(tmp_path, digests, counts)
    _assert_missing(excinfo, images, actual, digests["t10k-images-idx3-ubyte"], "pdd prepare-data")
    assert "train-images" not in str(excinfo.value)  # only the bad file is named
    with pytest.raises(DatasetCorrupt, match="train-labels-idx1-ubyte: 5 items, expected 7"):
        data.verify_idx(tmp_path, digests, {**counts, "train-labels-idx1-ubyte": 7})
    images.write_bytes(b"not an IDX file")
    with pytest.raises(DatasetCorrupt, match="not an IDX file"):
        data.verify_idx(tmp_path, digests, counts)


def test_fashion_mnist_small_files_fail_the_real_checksums(tmp_path):
    raw, _ = _write_fashion(tmp_path)
    with pytest.raises(DatasetCorrupt) as excinfo:
        prepare("fashion_mnist", tmp_path, download=False)
    _assert_missing(excinfo, data.FASHION_MNIST_SHA256["train-images-idx3-ubyte"], "5 items, expected 60000",
                    "3 items, expected 10000")


@pytest.mark.parametrize("layout", ["", "fashion-mnist", "FashionMNIST/raw"])
def test_prepare_links_system_data_and_cli_records_source(tmp_path, monkeypatch, layout):
    system = tmp_path / "system"
    written = _write_fashion_gz(system / layout if layout else system)
    digests = _expect_fashion(monkeypatch, written)
    monkeypatch.setenv(data.SYSTEM_DATA_ENV, str(system))
    root, manifest = tmp_path / "root", tmp_path / "results" / "fashion_mnist.json"
    result = CliRunner().invoke(main, ["prepare-data", "--dataset", "fashion_mnist", "--root", str(root),
                                       "--no-download", "--out", str(manifest)])
    assert result.exit_code == 0, result.output
    where = (system / layout).resolve() if layout else system.resolve()
    assert f"from system data {where}" in result.output
    record = json.loads(manifest.read_text())
    assert record == {"dataset": "fashion_mnist", "root": str(root), "train": 5, "test": 3,
                      "source": f"system data {where}",
                      "checksums": {file: f"sha256:{d}" for file, d in digests.items()}}
    raw = root / "FashionMNIST" / "raw"
    for file in data.FASHION_MNIST_FILES:
        assert (raw / f"{file}.gz").is_symlink() and (raw / f"{file}.gz").resolve() == where / f"{file}.gz"
        assert not (raw / file).is_symlink()
    _check_fashion(root, written)
    # Rerun: nothing relinked, the source is still the system directory.
    again = prepare("fashion_mnist", root, download=False)
    assert again.source == f"system data {where}" and again.sizes == {"train": 5, "test": 3}


def test_system_dirs_are_searched_after_the_override(tmp_path, monkeypatch):
    debian, override = tmp_path / "usr-share", tmp_path / "override"
    debian_data, override_data = _write_fashion_gz(debian, seed=1), _write_fashion_gz(override, seed=2)
    monkeypatch.setattr(data, "SYSTEM_DIRS", {"fashion_mnist": (debian,)})
    assert data.find_system_data("fashion_mnist") == debian.resolve()
    assert data.find_system_data("cifar100") is None
    monkeypatch.setenv(data.SYSTEM_DATA_ENV, str(override))
    assert data.find_system_data("fashion_mnist") == override.resolve()
    _expect_fashion(monkeypatch, override_data)
    assert prepare("fashion_mnist", tmp_path / "a", download=False).source == f"system data {override.resolve()}"
    _check_fashion(tmp_path / "a", override_data)
    monkeypatch.delenv(data.SYSTEM_DATA_ENV)
    _expect_fashion(monkeypatch, debian_data)
    assert prepare("fashion_mnist", tmp_path / "b", download=False).source == f"system data {debian.resolve()}"
    _check_fashion(tmp_path / "b", debian_data)


def test_override_that_is_not_a_directory_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(data.SYSTEM_DATA_ENV, str(tmp_path / "typo"))
    with pytest.raises(DatasetMissing, match=f"{data.SYSTEM_DATA_ENV}=.*typo is not a directory"):
        prepare("fashion_mnist", tmp_path / "root", download=False)


def test_files_already_in_root_win_over_system_data(tmp_path, monkeypatch):
    raw, mine = _write_fashion(tmp_path / "root", seed=3)
    system_data = _write_fashion_gz(tmp_path / "system", seed=4)
    assert not np.array_equal(mine["train"][0], system_data["train"][0])
    monkeypatch.setenv(data.SYSTEM_DATA_ENV, str(tmp_path / "system"))
    _expect_fashion(monkeypatch, mine)
    assert prepare("fashion_mnist", tmp_path / "root", download=False).source == f"existing files {raw}"
    assert not any(p.is_symlink() for p in raw.iterdir())


def test_system_data_is_copied_where_links_fail(tmp_path, monkeypatch):
    system = tmp_path / "system"
    written = _write_fashion_gz(system)
    _expect_fashion(monkeypatch, written)
    monkeypatch.setenv(data.SYSTEM_DATA_ENV, str(system))

    def refuse(self, target, target_is_directory=False):
        raise OSError(1, "Operation not permitted (no symlinks here)")

    monkeypatch.setattr(Path, "symlink_to", refuse)
    prepared = prepare("fashion_mnist", tmp_path / "root", download=False)
    assert prepared.source == f"system data {system.resolve()}"
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    for file in data.FASHION_MNIST_FILES:
        assert not (raw / f"{file}.gz").is_symlink()
        assert (raw / f"{file}.gz").read_bytes() == (system / f"{file}.gz").read_bytes()
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [*data.FASHION_MNIST_FILES, *data.SYSTEM_FILES["fashion_mnist"]]
    )
    _check_fashion(tmp_path / "root", written)


def test_truncated_system_archive_leaves_no_half_file(tmp_path, monkeypatch):
    system = tmp_path / "system"
    _expect_fashion(monkeypatch, _write_fashion_gz(system))
    gz = system / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[: len(gz.read_bytes()) // 2])
    monkeypatch.setenv(data.SYSTEM_DATA_ENV, str(system))
    with pytest.raises(DatasetCorrupt, match=f"-> {gz.resolve()}.* not a complete gzip file"):
        prepare("fashion_mnist", tmp_path / "root", download=False)
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    assert not (raw / "train-images-idx3-ubyte").exists()
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_prepare_data_cli_reports_corrupt_system_data(tmp_path, monkeypatch):
    _write_fashion_gz(tmp_path / "system")  # small files: not the real content
    monkeypatch.setenv(data.SYSTEM_DATA_ENV, str(tmp_path / "system"))
    manifest = tmp_path / "m.json"
    result = CliRunner().invoke(main, ["prepare-data", "--dataset", "fashion_mnist", "--root", str(tmp_path / "root"),
                                       "--no-download", "--out", str(manifest)])
    assert result.exit_code == 1
    assert "content sha256" in result.output and "train-images-idx3-ubyte" in result.output
    assert "Traceback" not in result.output and not manifest.exists()


def test_prepare_offline_without_any_fashion_data_says_where_to_get_it(tmp_path):
    with pytest.raises(DatasetMissing) as excinfo:
        prepare("fashion_mnist", tmp_path, download=False)
    _assert_missing(excinfo, tmp_path / "FashionMNIST" / "raw", "apt install dataset-fashion-mnist",
                    data.SYSTEM_DATA_ENV, DATASETS["fashion_mnist"].source)


# ----------------------------------------------------------------------------- cifar10

CIFAR10_BATCHES = {f"data_batch_{i}": 2 for i in range(1, 6)} | {"test_batch": 3}  # images per file


def _write_cifar10(root: Path, seed: int = 0):
    """cifar-10-batches-py as in the official tarball: five training batches, a test batch, batches.meta."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    written = {"train": ([], []), "test": ([], [])}
    for file, n in CIFAR10_BATCHES.items():
        hwc = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        hwc[0, 0, 0] = (255, 0, 128)  # distinct channels at one pixel: catches plane mix-ups
        labels = rng.integers(0, 10, size=n).tolist()
        _py2_pickle(
            {
                "batch_label": f"{'testing' if file == 'test_batch' else 'training'} batch of 5",
                "labels": labels,
                "data": hwc.transpose(0, 3, 1, 2).reshape(n, 3072),  # R plane, G plane, B plane, row-major
                "filenames": [f"{file}_{i}.png" for i in range(n)],
            },
            base / file,
        )
        images, targets = written["test" if file == "test_batch" else "train"]
        images.append(hwc)
        targets.extend(labels)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _py2_pickle({"num_cases_per_batch": 10000, "label_names": names, "num_vis": 3072}, base / "batches.meta")
    return base, {split: (np.concatenate(images), targets) for split, (images, targets) in written.items()}


def _patch_cifar10_md5s(monkeypatch, base: Path, meta: bool = True) -> None:
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[f, _md5(base / f)] for f in CIFAR10_BATCHES if f != "test_batch"])
    monkeypatch.setattr(cls, "test_list", [["test_batch", _md5(base / "test_batch")]])
    if meta:
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(base / "batches.meta")})


@pytest.fixture
def cifar10_root(tmp_path, monkeypatch):
    base, written = _write_cifar10(tmp_path)
    _patch_cifar10_md5s(monkeypatch, base)
    return tmp_path, written


def test_cifar10_is_registered_like_cifar100():
    assert DATASETS["cifar10"] == data.DatasetInfo(10, 3, 32, "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
    assert data.cifar_class("cifar10") is torchvision.datasets.CIFAR10
    assert [f for f, _ in torchvision.datasets.CIFAR10.train_list] == [f for f in CIFAR10_BATCHES if f != "test_batch"]


def test_sources_written_out_are_torchvisions():
    # pdd.data spells the URLs out so that importing it does not import torchvision; they must stay torchvision's.
    tv = torchvision.datasets
    assert DATASETS["fashion_mnist"].source == tv.FashionMNIST.mirrors[0]
    assert DATASETS["cifar10"].source == tv.CIFAR10.url and DATASETS["cifar100"].source == tv.CIFAR100.url
    assert data.cifar_class("cifar100") is tv.CIFAR100


def test_importing_pdd_data_leaves_torchvision_unloaded():
    import subprocess
    import sys

    code = "import sys, pdd.data, pdd.models, pdd.training; print('torchvision' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_cifar10_pickles_have_the_official_bytes_keys(tmp_path):
    base, _ = _write_cifar10(tmp_path)
    with open(base / "data_batch_3", "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    assert {b"data", b"labels", b"filenames", b"batch_label"} == set(entry)
    assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (2, 3072)
    with open(base / "batches.meta", "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    assert len(meta[b"label_names"]) == 10 and meta[b"num_vis"] == 3072


def test_cifar10_loads_all_batches_in_order(cifar10_root):
    root, written = cifar10_root
    for split, (hwc, labels) in written.items():
        ds = get_dataset("cifar10", split, root)
        assert len(ds) == len(labels) == (10 if split == "train" else 3)
        assert ds.num_classes == 10
        xs, ys = _all(ds)
        assert xs.dtype == torch.float32 and xs.shape == (len(labels), 3, 32, 32)
        assert 0.0 <= xs.min() and xs.max() <= 1.0
        expected = torch.from_numpy(hwc).permute(0, 3, 1, 2).float() / 255
        assert torch.allclose(xs, expected, atol=1e-7)  # batch 1 first, then 2, ..., 5
        assert torch.allclose(xs[0, :, 0, 0], torch.tensor([1.0, 0.0, 128 / 255]))
        assert ys.tolist() == labels


def test_cifar10_prepare_offline_with_files_present(cifar10_root):
    root, _ = cifar10_root
    prepared = prepare("cifar10", root, download=False)
    assert prepared.sizes == {"train": 10, "test": 3}
    base = root / "cifar-10-batches-py"
    assert prepared.source == f"existing files {base}"
    assert prepared.checksums == {f: f"md5:{_md5(base / f)}" for f in [*CIFAR10_BATCHES, "batches.meta"]}


def test_cifar10_wrong_checksums_are_missing(tmp_path, monkeypatch):
    base, _ = _write_cifar10(tmp_path)
    for split in data.SPLITS:  # the official md5s: our small files fail torchvision's integrity check
        with pytest.raises(DatasetMissing) as excinfo:
            get_dataset("cifar10", split, tmp_path)
        _assert_missing(excinfo, base, DATASETS["cifar10"].source)
    _patch_cifar10_md5s(monkeypatch, base, meta=False)
    with pytest.raises(DatasetMissing):  # batches.meta still has the official md5
        get_dataset("cifar10", "test", tmp_path)
    with pytest.raises(DatasetMissing) as excinfo:
        prepare("cifar10", tmp_path, download=False)
    _assert_missing(excinfo, "cifar10", DATASETS["cifar10"].source)


# ----------------------------------------------------------------------------- cifar100


def _write_cifar100(root: Path, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    written = {}
    for split, n in (("train", 4), ("test", 2)):
        hwc = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        hwc[0, 0, 0] = (255, 0, 128)  # distinct channels at one pixel: catches plane mix-ups
        flat = hwc.transpose(0, 3, 1, 2).reshape(n, 3072)  # R plane, G plane, B plane, row-major
        fine = rng.integers(0, 100, size=n).tolist()
        coarse = [f // 5 for f in fine]
        _py2_pickle(
            {
                "filenames": [f"img_{split}_{i}.png" for i in range(n)],
                "batch_label": f"{split}ing batch 1 of 1",
                "fine_labels": fine,
                "coarse_labels": coarse,
                "data": flat,
            },
            base / split,
        )
        written[split] = (hwc, fine)
    _py2_pickle(
        {
            "fine_label_names": [f"fine_{i:02d}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i:02d}" for i in range(20)],
        },
        base / "meta",
    )
    return base, written


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    base, written = _write_cifar100(tmp_path)
    cls = torchvision.datasets.CIFAR100
    monkeypatch.setattr(cls, "train_list", [["train", _md5(base / "train")]])
    monkeypatch.setattr(cls, "test_list", [["test", _md5(base / "test")]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(base / "meta")})
    return tmp_path, written


def test_cifar100_pickles_have_the_official_bytes_keys(tmp_path):
    base, _ = _write_cifar100(tmp_path)
    with open(base / "train", "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    assert {b"data", b"fine_labels", b"coarse_labels", b"filenames"} <= set(entry)
    assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (4, 3072)
    with open(base / "meta", "rb") as f:
        meta = pickle.load(f, encoding="bytes")
    assert len(meta[b"fine_label_names"]) == 100 and len(meta[b"coarse_label_names"]) == 20


def test_cifar100_loads_pixels_and_fine_labels(cifar_root):
    root, written = cifar_root
    for split, (hwc, fine) in written.items():
        ds = get_dataset("cifar100", split, root)
        assert len(ds) == len(fine)
        assert ds.num_classes == 100
        xs, ys = _all(ds)
        assert xs.dtype == torch.float32 and xs.shape == (len(fine), 3, 32, 32)
        assert 0.0 <= xs.min() and xs.max() <= 1.0
        expected = torch.from_numpy(hwc).permute(0, 3, 1, 2).float() / 255
        assert torch.allclose(xs, expected, atol=1e-7)
        assert torch.allclose(xs[0, :, 0, 0], torch.tensor([1.0, 0.0, 128 / 255]))
        assert ys.tolist() == fine


def test_cifar100_prepare_offline_with_files_present(cifar_root):
    root, _ = cifar_root
    prepared = prepare("cifar100", root, download=False)
    assert prepared.sizes == {"train": 4, "test": 2}
    assert prepared.source == f"existing files {root / 'cifar-100-python'}"
    md5 = torchvision.datasets.CIFAR100.meta["md5"]  # the fixture's patched value: that of the written file
    assert prepared.checksums == {"train": f"md5:{_md5(root / 'cifar-100-python' / 'train')}",
                                  "test": f"md5:{_md5(root / 'cifar-100-python' / 'test')}", "meta": f"md5:{md5}"}


def test_cifar100_wrong_checksum_is_missing(tmp_path):
    # Real md5s of the official files: our small files fail torchvision's integrity check.
    _write_cifar100(tmp_path)
    for split in data.SPLITS:
        with pytest.raises(DatasetMissing) as excinfo:
            get_dataset("cifar100", split, tmp_path)
        _assert_missing(excinfo, tmp_path / "cifar-100-python", DATASETS["cifar100"].source)


def test_cifar100_wrong_meta_checksum_is_missing(tmp_path, monkeypatch):
    base, _ = _write_cifar100(tmp_path)
    cls = torchvision.datasets.CIFAR100
    monkeypatch.setattr(cls, "train_list", [["train", _md5(base / "train")]])
    monkeypatch.setattr(cls, "test_list", [["test", _md5(base / "test")]])
    with pytest.raises(DatasetMissing) as excinfo:  # meta still has the official md5
        get_dataset("cifar100", "train", tmp_path)
    _assert_missing(excinfo, base)


# ----------------------------------------------------------------------------- tiny_imagenet

WNIDS = ["n09999999", "n01443537", "n04567890"]  # deliberately not sorted
COLOURS = {"n09999999": (200, 30, 40), "n01443537": (20, 180, 60), "n04567890": (50, 60, 220)}
VAL = [("val_0.JPEG", "n04567890"), ("val_1.JPEG", "n09999999"), ("val_2.JPEG", "n01443537"),
       ("val_3.JPEG", "n04567890")]
TRAIN_PER_CLASS = 2


def _jpeg(colour) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _tiny_files() -> dict[str, bytes]:
    """Relative path -> content of a miniature tiny-imagenet-200 tree in the official zip's layout."""
    files = {"tiny-imagenet-200/wnids.txt": ("\n".join(WNIDS) + "\n").encode()}
    for w in WNIDS:
        files[f"tiny-imagenet-200/train/{w}/{w}_boxes.txt"] = b"".join(
            f"{w}_{i}.JPEG\t0\t0\t63\t63\n".encode() for i in range(TRAIN_PER_CLASS)
        )
        for i in range(TRAIN_PER_CLASS):
            files[f"tiny-imagenet-200/train/{w}/images/{w}_{i}.JPEG"] = _jpeg(COLOURS[w])
    annotations = "".join(f"{f}\t{w}\t{3}\t{4}\t{60}\t{61}\n" for f, w in VAL)
    files["tiny-imagenet-200/val/val_annotations.txt"] = annotations.encode()
    for f, w in VAL:
        files[f"tiny-imagenet-200/val/images/{f}"] = _jpeg(COLOURS[w])
    for i in range(2):  # unlabelled test split of the zip: must not be used
        files[f"tiny-imagenet-200/test/images/test_{i}.JPEG"] = _jpeg((0, 0, 0))
    return files


def _write_tiny_folder(root: Path) -> None:
    for rel, content in _tiny_files().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)


def _write_tiny_zip(root: Path) -> Path:
    archive = root / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        dirs = sorted({str(Path(rel).parent) + "/" for rel in _tiny_files()} | {"tiny-imagenet-200/"})
        for d in dirs:  # the official zip lists directory entries too
            zf.writestr(d, b"")
        for rel, content in _tiny_files().items():
            zf.writestr(rel, content)
    return archive


def _check_tiny(root: Path) -> None:
    index = {w: i for i, w in enumerate(sorted(WNIDS))}
    train = get_dataset("tiny_imagenet", "train", root)
    test = get_dataset("tiny_imagenet", "test", root)
    assert len(train) == TRAIN_PER_CLASS * len(WNIDS)
    assert len(test) == len(VAL)  # test split = the labelled val split
    assert train.classes == sorted(WNIDS)
    colour_of = {index[w]: COLOURS[w] for w in WNIDS}
    xs, ys = _all(train)
    assert xs.dtype == torch.float32 and xs.shape == (len(train), 3, 64, 64)
    assert sorted(ys.tolist()) == sorted(index[w] for w in WNIDS for _ in range(TRAIN_PER_CLASS))
    for x, y in zip(xs, ys.tolist()):
        target = torch.tensor(colour_of[y], dtype=torch.float32).view(3, 1, 1) / 255
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert (x - target).abs().max() < 0.05
    for (path, label), (x, y) in zip(test.samples, (test[i] for i in range(len(test)))):
        assert label == y
    xs, ys = _all(test)
    assert xs.shape == (len(VAL), 3, 64, 64)
    assert ys.tolist() == [index[w] for _, w in VAL]
    for x, (_, w) in zip(xs, VAL):
        target = torch.tensor(COLOURS[w], dtype=torch.float32).view(3, 1, 1) / 255
        assert (x - target).abs().max() < 0.05


def test_tiny_imagenet_from_folder(tmp_path):
    _write_tiny_folder(tmp_path)
    _check_tiny(tmp_path)
    prepared = prepare("tiny_imagenet", tmp_path, download=False)
    assert prepared.sizes == {"train": 6, "test": 4}
    assert prepared.source == f"existing files {tmp_path / 'tiny-imagenet-200'}"


def test_tiny_imagenet_grayscale_jpeg_becomes_rgb(tmp_path):
    from PIL import Image

    _write_tiny_folder(tmp_path)
    w = sorted(WNIDS)[0]
    Image.new("L", (64, 64), 100).save(tmp_path / f"tiny-imagenet-200/train/{w}/images/{w}_0.JPEG", quality=95)
    x, y = get_dataset("tiny_imagenet", "train", tmp_path)[0]
    assert y == 0 and x.shape == (3, 64, 64)
    assert (x - 100 / 255).abs().max() < 0.02


def test_tiny_imagenet_prepare_extracts_zip(tmp_path):
    archive = _write_tiny_zip(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]
    with pytest.raises(DatasetMissing):  # not usable before extraction
        get_dataset("tiny_imagenet", "train", tmp_path)
    prepared = prepare("tiny_imagenet", tmp_path, download=False)
    assert prepared.sizes == {"train": 6, "test": 4} and prepared.source == f"archive {archive}"
    assert (tmp_path / "tiny-imagenet-200" / "wnids.txt").is_file()
    _check_tiny(tmp_path)


# ----------------------------------------------------------------------------- missing data, bad names


@pytest.mark.parametrize("name", OFFLINE_NAMES)
@pytest.mark.parametrize("split", data.SPLITS)
def test_get_dataset_missing_names_path_and_source(tmp_path, name, split):
    expected = {
        "fashion_mnist": tmp_path / "FashionMNIST" / "raw",
        "cifar10": tmp_path / "cifar-10-batches-py",
        "cifar100": tmp_path / "cifar-100-python",
        "tiny_imagenet": tmp_path / "tiny-imagenet-200",
    }[name]
    with pytest.raises(DatasetMissing) as excinfo:
        get_dataset(name, split, tmp_path)
    assert isinstance(excinfo.value, FileNotFoundError)
    _assert_missing(excinfo, expected, DATASETS[name].source, name)
    # torchvision's advice ("use download=True") means nothing to a CLI user: not in the message, nor chained
    chain = "".join(traceback.format_exception(excinfo.value))
    assert "download=True" not in chain and "prepare-data" in chain


@pytest.mark.parametrize("name", OFFLINE_NAMES)
def test_prepare_offline_without_files_raises_missing(tmp_path, name):
    with pytest.raises(DatasetMissing) as excinfo:
        prepare(name, tmp_path, download=False)
    _assert_missing(excinfo, name, DATASETS[name].source)


class _TorchvisionForAnotherTorch(importlib.abc.MetaPathFinder):
    """Imports of torchvision fail as a torchvision built for another torch fails (seen with PyTorch's CPU build
    beside PyPI's torchvision): a RuntimeError, which torchvision also raises for a dataset it cannot find."""

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


@pytest.fixture
def broken_torchvision(monkeypatch):
    """torchvision unimportable for one test (its loaded modules hidden, the finder first on sys.meta_path)."""
    for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_TorchvisionForAnotherTorch(), *sys.meta_path])


@pytest.mark.parametrize("name", ("fashion_mnist", "cifar10", "cifar100"))
def test_unusable_torchvision_is_not_a_missing_dataset(tmp_path, monkeypatch, broken_torchvision, name):
    if name == "fashion_mnist":  # its files present and checked: only the reading needs torchvision
        _expect_fashion(monkeypatch, _write_fashion(tmp_path)[1])
    for call in (lambda: get_dataset(name, "test", tmp_path), lambda: prepare(name, tmp_path, download=False)):
        with pytest.raises(TorchvisionUnusable, match="torchvision cannot be imported .*torchvision::nms") as excinfo:
            call()
        assert not isinstance(excinfo.value, DatasetMissing)
        assert torch.__version__ in str(excinfo.value)


def test_prepare_data_cli_names_an_unusable_torchvision(tmp_path, monkeypatch, broken_torchvision):
    _expect_fashion(monkeypatch, _write_fashion(tmp_path)[1])
    result = CliRunner().invoke(main, ["prepare-data", "--dataset", "fashion_mnist", "--root", str(tmp_path),
                                       "--no-download"])
    assert result.exit_code == 1
    assert result.output.startswith("pdd: error: torchvision cannot be imported (RuntimeError: operator")
    assert "not found" not in result.output and len(result.output.strip().splitlines()) == 1


def test_sources_are_download_urls():
    for name in OFFLINE_NAMES:
        assert DATASETS[name].source.startswith(("http://", "https://"))


def test_digits_prepare_needs_no_files(tmp_path):
    prepared = prepare("digits", tmp_path, download=False)
    assert prepared.sizes == {"train": 1797 - data.DIGITS_TEST_SIZE, "test": data.DIGITS_TEST_SIZE}
    assert prepared.source == DATASETS["digits"].source and prepared.checksums == {}


def test_prepared_digits_load_without_scikit_learn_and_equal_its_split(tmp_path):
    """`prepare` caches the digits and their split, so each job skips importing scikit-learn (seconds); the
    cached splits are exactly scikit-learn's, and a damaged cache is recomputed, not trusted."""
    import subprocess
    import sys

    fresh = {split: get_dataset("digits", split, tmp_path) for split in ("train", "test")}
    prepare("digits", tmp_path, download=False)
    for split, expected in fresh.items():
        cached = get_dataset("digits", split, tmp_path)
        assert torch.equal(cached.images, expected.images) and torch.equal(cached.labels, expected.labels)
    probe = (f"import sys; from pdd import data; data.get_dataset('digits', 'test', {str(tmp_path)!r}); "
             "print('sklearn' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    (tmp_path / "digits" / "digits_split.pt").write_bytes(b"not a tensor file")
    assert torch.equal(get_dataset("digits", "test", tmp_path).images, fresh["test"].images)


def test_unknown_dataset_and_split_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="imagenet_21k"):
        get_dataset("imagenet_21k", "train", tmp_path)
    with pytest.raises(ValueError, match="imagenet_21k"):
        data.info("imagenet_21k")
    with pytest.raises(ValueError, match="imagenet_21k"):
        prepare("imagenet_21k", tmp_path, download=False)
    for name in DATASETS:
        with pytest.raises(ValueError, match="validation"):
            get_dataset(name, "validation", tmp_path)
