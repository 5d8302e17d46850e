"""Datasets of the paper (and the embedded digits demo) as tensors in [0, 1], CHW."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import os
import shutil
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from pdd.io import atomic_path
from pdd.settings.datasets import DATASETS, TINY_IMAGENET_URL, DatasetInfo, info  # noqa: F401 (re-exported)

TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"

SPLITS = ("train", "test")
DIGITS_TEST_SIZE = 360  # 20% of the 1797 digits, stratified
CIFAR = ("cifar10", "cifar100")  # the datasets read by torchvision's CIFAR classes (`cifar_class`)

# Fashion-MNIST's four IDX files (decompressed names, as torchvision's FashionMNIST reads them).
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)
# Number of items (first IDX dimension) per file: 60000 training and 10000 test images.
FASHION_MNIST_COUNTS = {
    "train-images-idx3-ubyte": 60000, "train-labels-idx1-ubyte": 60000,
    "t10k-images-idx3-ubyte": 10000, "t10k-labels-idx1-ubyte": 10000,
}
# sha256 of the *decompressed* files, measured on Debian's dataset-fashion-mnist
# (0.0~git20200523.55506a9-1). Its .gz files are repacked (other bytes and md5s than upstream's
# that torchvision checks), so the content, not the archive, is what we verify.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
SYSTEM_DATA_ENV = "PDD_SYSTEM_DATA"  # a directory searched before the system packages' locations
# Where distribution packages install datasets (Debian/Ubuntu: `apt install dataset-fashion-mnist`).
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {"fashion_mnist": (Path("/usr/share/datasets/fashion-mnist"),)}
SYSTEM_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}  # the Debian/Ubuntu package installing SYSTEM_DIRS
SYSTEM_FILES = {"fashion_mnist": tuple(f"{file}.gz" for file in FASHION_MNIST_FILES)}  # what a system dir holds
# Sub-directories of $PDD_SYSTEM_DATA that may hold a dataset's files (besides the directory itself).
SYSTEM_LAYOUTS: dict[str, tuple[str, ...]] = {"fashion_mnist": ("fashion-mnist", "FashionMNIST/raw")}


class DatasetMissing(FileNotFoundError):
    """The dataset's files are not on disk and could not be downloaded."""


class DatasetCorrupt(ValueError):
    """The dataset's files are there but their content is not the expected one."""


class TorchvisionUnusable(RuntimeError):
    """torchvision, which reads Fashion-MNIST, CIFAR and Tiny-ImageNet, cannot be imported (not installed, or
    built for another torch): its own error, not a missing dataset."""


@dataclass(frozen=True)
class Prepared:
    """What `prepare` made available: split sizes, where the files came from, verified checksums."""

    sizes: dict[str, int]
    source: str
    checksums: dict[str, str] = field(default_factory=dict)  # file -> "<algorithm>:<hex digest>"

    def manifest(self) -> dict:
        """The JSON-ready record `pdd prepare-data --out` writes."""
        return {**self.sizes, "source": self.source, "checksums": dict(self.checksums)}


class TensorImages(Dataset):
    """Images held in memory as one float tensor [N, C, H, W] and integer labels [N]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: int):
        self.images, self.labels, self.num_classes = images, labels, classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


class TinyImageNet(Dataset):
    """Tiny-ImageNet-200 read from the official zip's layout; the labelled `val` split is the test set."""

    def __init__(self, root: str | os.PathLike, split: str):
        base = Path(root) / "tiny-imagenet-200"
        wnids = (base / "wnids.txt").read_text().split()
        self.classes = sorted(wnids)
        index = {w: i for i, w in enumerate(self.classes)}
        if split == "train":
            self.samples = [
                (p, index[w]) for w in self.classes
                for p in sorted((base / "train" / w / "images").glob("*.JPEG"))
            ]
        else:
            lines = (base / "val" / "val_annotations.txt").read_text().splitlines()
            self.samples = [
                (base / "val" / "images" / f, index[w])
                for f, w, *_ in (line.split("\t") for line in lines if line.strip())
            ]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as img:
            x = _torchvision("transforms.functional").pil_to_tensor(img.convert("RGB")).float().div_(255)
        return x, label


def _torchvision(module: str = "datasets"):
    """torchvision.<module>, imported on first use: only the jobs that read Fashion-MNIST, CIFAR or Tiny-ImageNet
    pay its import (about 2 s: torchvision.ops pulls in torch._dynamo). A torchvision that cannot be imported is
    a `TorchvisionUnusable`, never mistaken for a missing dataset (torchvision says both with RuntimeError)."""
    try:
        return importlib.import_module(f"torchvision.{module}")
    except (ImportError, RuntimeError) as err:  # RuntimeError: e.g. "operator torchvision::nms does not exist"
        raise TorchvisionUnusable(
            f"torchvision cannot be imported ({type(err).__name__}: {err}); it reads Fashion-MNIST, CIFAR and "
            f"Tiny-ImageNet. Install the torchvision release built for torch {torch.__version__}, from the same "
            "index as torch (docs/running.md, Installing)"
        ) from err


def cifar_class(name: str) -> type:
    """torchvision's dataset class of CIFAR dataset `name` ('cifar10' or 'cifar100')."""
    datasets = _torchvision()
    return {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]


def digits_split() -> dict[str, torch.Tensor]:
    """scikit-learn's 8x8 digits (values 0-16) and the fixed stratified train/test split of their indices."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    idx_train, idx_test = train_test_split(
        torch.arange(len(bunch.target)).numpy(), test_size=DIGITS_TEST_SIZE, stratify=bunch.target, random_state=0
    )
    return {"images": torch.tensor(bunch.images, dtype=torch.uint8), "labels": torch.tensor(bunch.target),
            "train": torch.as_tensor(idx_train), "test": torch.as_tensor(idx_test)}


def _digits_cache(root: Path) -> Path:
    """Where `prepare` keeps `digits_split()`: reading it skips importing scikit-learn (seconds per job)."""
    return root / "digits" / "digits_split.pt"


def _digits(split: str, root: Path) -> TensorImages:
    """The digits scaled to [0, 1] (from the cache `prepare` writes under `root`, else from scikit-learn)."""
    cache, arrays = _digits_cache(root), None
    if cache.exists():
        try:
            arrays = torch.load(cache, weights_only=True)  # tensors only: nothing in the file can run
        except Exception:  # noqa: BLE001  (a damaged cache is recomputed, never trusted)
            arrays = None
    if not isinstance(arrays, dict) or len(arrays.get("test", ())) != DIGITS_TEST_SIZE:
        arrays = digits_split()
    x = arrays["images"].float().div_(16.0).unsqueeze(1)
    idx = arrays["train" if split == "train" else "test"]
    return TensorImages(x[idx], arrays["labels"].long()[idx], 10)


def _missing(name: str, root: Path, expected: Path) -> DatasetMissing:
    system = ""
    if name in SYSTEM_PACKAGES:
        system = (f" Without internet: install the system package (Debian/Ubuntu: apt install {SYSTEM_PACKAGES[name]}) "
                  f"or set {SYSTEM_DATA_ENV} to a directory holding its files, then run `pdd prepare-data`.")
    return DatasetMissing(
        f"dataset {name!r} not found: expected {expected}. Run `pdd prepare-data --dataset {name} "
        f"--root {root}` with internet access, or download {info(name).source} and put it there.{system}"
    )


def _fashion_raw(root: Path) -> Path:
    return root / "FashionMNIST" / "raw"


def get_dataset(name: str, split: str, root: str | os.PathLike) -> Dataset:
    """The `split` ('train' or 'test') of dataset `name` stored under `root`, images in [0, 1]."""
    info(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    root, train = Path(root), split == "train"
    if name == "digits":
        return _digits(split, root)
    if name == "fashion_mnist":
        fashion = _torchvision().FashionMNIST
        try:
            return _as_float(fashion(root, train=train, download=False))
        except RuntimeError:
            raise _missing(name, root, _fashion_raw(root)) from None  # torchvision's advice names its Python API
    if name in CIFAR:
        cls = cifar_class(name)
        try:
            return _as_float(cls(root, train=train, download=False))
        except RuntimeError:
            raise _missing(name, root, root / cls.base_folder) from None
    base = root / "tiny-imagenet-200"
    if not (base / "wnids.txt").exists():
        raise _missing(name, root, base)
    return TinyImageNet(root, split)


def _as_float(ds: Dataset) -> TensorImages:
    """Convert torchvision's uint8 arrays (MNIST-style tensor or CIFAR numpy HWC) to a TensorImages."""
    data = torch.as_tensor(ds.data)
    x = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
    y = torch.as_tensor(ds.targets, dtype=torch.long)
    return TensorImages(x.float().div_(255).contiguous(), y, len(ds.classes))


def find_system_data(name: str) -> Path | None:
    """The first directory holding dataset `name`'s .gz files: $PDD_SYSTEM_DATA (and its known
    sub-layouts) first, then the distribution packages' locations; None if there is none."""
    candidates: list[Path] = []
    override = os.environ.get(SYSTEM_DATA_ENV)
    if override:
        base = Path(override).expanduser()
        if not base.is_dir():
            raise DatasetMissing(f"{SYSTEM_DATA_ENV}={override} is not a directory")
        candidates += [base, *(base / sub for sub in SYSTEM_LAYOUTS.get(name, ()))]
    candidates += SYSTEM_DIRS.get(name, ())
    for directory in candidates:
        if all((directory / file).is_file() for file in SYSTEM_FILES.get(name, ("",))):
            return directory.resolve()
    return None


def _link_or_copy(source: Path, target: Path) -> None:
    """Make `target` a symlink to `source` (a copy where links fail), replacing whatever is there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            tmp.symlink_to(source.resolve())
        except OSError:
            shutil.copyfile(source, tmp)
            shutil.copymode(source, tmp)  # readable like the system file, not the temp file's 0600


def _gunzip(gz: Path, target: Path) -> None:
    """Decompress `gz` to `target` atomically (an interrupted run never leaves half a file)."""
    try:
        with gzip.open(gz, "rb") as src, atomic_path(target) as tmp:
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
            shutil.copymode(gz, tmp)  # readable like the archive (a shared data root), not the temp file's 0600
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        where = f"{gz} (-> {gz.resolve()})" if gz.is_symlink() else str(gz)
        raise DatasetCorrupt(f"{where} is not a complete gzip file ({err}); replace it and run `pdd prepare-data` "
                             "again") from err


def idx_count(path: Path) -> int:
    """The number of items (first dimension) in the header of a decompressed IDX file."""
    with open(path, "rb") as f:
        header = f.read(8)
    if len(header) < 8 or header[:2] != b"\x00\x00" or header[3] < 1:
        raise DatasetCorrupt(f"{path} is not an IDX file (header {header.hex()})")
    return struct.unpack(">I", header[4:8])[0]


def verify_idx(raw: Path, sha256: Mapping[str, str], counts: Mapping[str, int]) -> dict[str, str]:
    """Check each decompressed IDX file under `raw` against its item count and content sha256.

    Returns file -> "sha256:<digest>"; raises DatasetCorrupt naming every mismatching file.
    """
    found, problems = {}, []
    for file, expected in sha256.items():
        path = raw / file
        count = idx_count(path)
        if count != counts[file]:
            problems.append(f"{path}: {count} items, expected {counts[file]}")
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            problems.append(f"{path}: content sha256 {digest.hexdigest()}, expected {expected}")
        found[file] = f"sha256:{digest.hexdigest()}"
    if problems:
        raise DatasetCorrupt("dataset content differs from the expected one:\n  " + "\n  ".join(problems)
                             + f"\nDelete {raw} and run `pdd prepare-data` again (or reinstall the system package).")
    return found


def _link_source(raw: Path) -> str | None:
    """The directory the .gz files in `raw` link to, when all of them are symlinks into one place."""
    links = [raw / f"{file}.gz" for file in FASHION_MNIST_FILES]
    if all(link.is_symlink() for link in links):
        parents = {link.resolve().parent for link in links}
        if len(parents) == 1:
            return str(parents.pop())
    return None


def _prepare_fashion(root: Path, download: bool) -> tuple[str, dict[str, str]]:
    """Decompressed, verified Fashion-MNIST under root/FashionMNIST/raw: files already there, else
    the system data (linked), else torchvision's download (with its md5s). Returns (source, checksums)."""
    raw = _fashion_raw(root)
    have = lambda file: (raw / file).is_file() or (raw / f"{file}.gz").is_file()
    source = None
    if not all(have(file) for file in FASHION_MNIST_FILES):
        system = find_system_data("fashion_mnist")
        if system is not None:
            for file in FASHION_MNIST_FILES:
                if not have(file):
                    _link_or_copy(system / f"{file}.gz", raw / f"{file}.gz")
            source = f"system data {system}"
    for file in FASHION_MNIST_FILES:
        if not (raw / file).is_file() and (raw / f"{file}.gz").is_file():
            _gunzip(raw / f"{file}.gz", raw / file)
    if not all((raw / file).is_file() for file in FASHION_MNIST_FILES):
        if not download:
            looked = [
                os.environ.get(SYSTEM_DATA_ENV) or f"${SYSTEM_DATA_ENV} (unset)",
                *map(str, SYSTEM_DIRS["fashion_mnist"]),
            ]
            raise DatasetMissing(
                f"dataset 'fashion_mnist' is not under {raw} nor in the system data ({', '.join(looked)}) and "
                f"downloading is off. Install the system package "
                f"(Debian/Ubuntu: apt install {SYSTEM_PACKAGES['fashion_mnist']}), "
                f"set {SYSTEM_DATA_ENV} to a directory holding the four .gz files, or download them from "
                f"{info('fashion_mnist').source} into {raw}."
            )
        # torchvision: download, md5 check, extract
        _torchvision().FashionMNIST(root, train=True, download=True)
        source = f"download {info('fashion_mnist').source}"
    if source is None:
        linked = _link_source(raw)
        source = f"system data {linked}" if linked else f"existing files {raw}"
    return source, verify_idx(raw, FASHION_MNIST_SHA256, FASHION_MNIST_COUNTS)


def _prepare_cifar(name: str, root: Path, download: bool) -> tuple[str, dict[str, str]]:
    """CIFAR-10/100 through torchvision (download + md5 check); returns (source, verified md5s)."""
    cls = cifar_class(name)
    try:
        cls(root, train=True, download=False)
        source = f"existing files {root / cls.base_folder}"
    except RuntimeError:
        if not download:
            raise
        cls(root, train=True, download=True)
        source = f"download {cls.url}"
    files = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    return source, {file: f"md5:{md5}" for file, md5 in files}


def prepare(name: str, root: str | os.PathLike, download: bool = True) -> Prepared:
    """Make dataset `name` loadable from `root` (files there, system data, archives put there, else
    download), check its content, and say where it came from."""
    info(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    source, checksums = info(name).source, {}
    try:
        if name == "digits":
            with atomic_path(_digits_cache(root)) as tmp:
                torch.save(digits_split(), tmp)
        elif name == "fashion_mnist":
            source, checksums = _prepare_fashion(root, download)
        elif name in CIFAR:
            source, checksums = _prepare_cifar(name, root, download)
        elif name == "tiny_imagenet":
            source = f"existing files {root / 'tiny-imagenet-200'}"
            if not (root / "tiny-imagenet-200" / "wnids.txt").exists():
                archive = root / "tiny-imagenet-200.zip"
                utils = _torchvision("datasets.utils")
                if archive.exists():
                    utils.extract_archive(str(archive), str(root))
                    source = f"archive {archive}"
                elif download:
                    utils.download_and_extract_archive(TINY_IMAGENET_URL, str(root), md5=TINY_IMAGENET_MD5)
                    source, checksums = f"download {TINY_IMAGENET_URL}", {archive.name: f"md5:{TINY_IMAGENET_MD5}"}
    except (DatasetMissing, TorchvisionUnusable):
        raise
    except (OSError, RuntimeError, zipfile.BadZipFile, tarfile.ReadError) as err:  # offline, refused, bad file
        raise DatasetMissing(
            f"could not obtain dataset {name!r} under {root} from {info(name).source}: {err}. "
            "Download it by hand and put the files there."
        ) from err
    sizes = {split: len(get_dataset(name, split, root)) for split in SPLITS}
    return Prepared(sizes, source, checksums)
