"""Tests of pdd.data on small files written in each dataset's real on-disk format (no loader mocks)."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

import pdd.data as data
from pdd.data import DATASETS, DatasetMissing, get_dataset, prepare

OFFLINE_NAMES = ("fashion_mnist", "cifar100", "tiny_imagenet")


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


def _write_fashion(root: Path, seed: int = 0):
    rng = np.random.default_rng(seed)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    written = {}
    for prefix, n in (("train", 5), ("t10k", 3)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255  # both ends of the range
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
        (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
        written["train" if prefix == "train" else "test"] = (images, labels)
    return raw, written


def test_idx_header_is_the_real_one():
    assert _idx_bytes(np.zeros((2, 28, 28), np.uint8))[:16] == bytes.fromhex("00000803" "00000002" "0000001c" "0000001c")
    assert _idx_bytes(np.zeros(3, np.uint8))[:8] == bytes.fromhex("00000801" "00000003")


def test_fashion_mnist_prepare_decompresses_and_loads(tmp_path):
    raw, written = _write_fashion(tmp_path)
    sizes = prepare("fashion_mnist", tmp_path, download=False)
    assert sizes == {"train": 5, "test": 3}
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert (raw / name).is_file()
        assert (raw / name).read_bytes() == gzip.decompress((raw / f"{name}.gz").read_bytes())
    for split, (images, labels) in written.items():
        ds = get_dataset("fashion_mnist", split, tmp_path)
        assert len(ds) == len(labels)
        assert ds.num_classes == 10
        xs, ys = _all(ds)
        assert xs.dtype == torch.float32 and xs.shape == (len(labels), 1, 28, 28)
        assert torch.allclose(xs[:, 0], torch.from_numpy(images).float() / 255, atol=1e-7)
        assert xs.min() == 0.0 and xs.max() == 1.0
        assert ys.tolist() == labels.tolist()
    # A second prepare with the raw files already decompressed is a no-op that still works.
    assert prepare("fashion_mnist", tmp_path, download=False) == {"train": 5, "test": 3}


def test_fashion_mnist_gz_only_is_missing_until_prepared(tmp_path):
    raw, _ = _write_fashion(tmp_path)
    with pytest.raises(DatasetMissing) as excinfo:
        get_dataset("fashion_mnist", "train", tmp_path)
    _assert_missing(excinfo, raw, DATASETS["fashion_mnist"].source)


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
        {"fine_label_names": [f"fine_{i:02d}" for i in range(100)], "coarse_label_names": [f"coarse_{i:02d}" for i in range(20)]},
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
    assert prepare("cifar100", root, download=False) == {"train": 4, "test": 2}


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
VAL = [("val_0.JPEG", "n04567890"), ("val_1.JPEG", "n09999999"), ("val_2.JPEG", "n01443537"), ("val_3.JPEG", "n04567890")]
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
    assert prepare("tiny_imagenet", tmp_path, download=False) == {"train": 6, "test": 4}


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
    sizes = prepare("tiny_imagenet", tmp_path, download=False)
    assert sizes == {"train": 6, "test": 4}
    assert (tmp_path / "tiny-imagenet-200" / "wnids.txt").is_file()
    _check_tiny(tmp_path)


# ----------------------------------------------------------------------------- missing data, bad names


@pytest.mark.parametrize("name", OFFLINE_NAMES)
@pytest.mark.parametrize("split", data.SPLITS)
def test_get_dataset_missing_names_path_and_source(tmp_path, name, split):
    expected = {
        "fashion_mnist": tmp_path / "FashionMNIST" / "raw",
        "cifar100": tmp_path / "cifar-100-python",
        "tiny_imagenet": tmp_path / "tiny-imagenet-200",
    }[name]
    with pytest.raises(DatasetMissing) as excinfo:
        get_dataset(name, split, tmp_path)
    assert isinstance(excinfo.value, FileNotFoundError)
    _assert_missing(excinfo, expected, DATASETS[name].source, name)


@pytest.mark.parametrize("name", OFFLINE_NAMES)
def test_prepare_offline_without_files_raises_missing(tmp_path, name):
    with pytest.raises(DatasetMissing) as excinfo:
        prepare(name, tmp_path, download=False)
    _assert_missing(excinfo, name, DATASETS[name].source)


def test_sources_are_download_urls():
    for name in OFFLINE_NAMES:
        assert DATASETS[name].source.startswith(("http://", "https://"))


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
