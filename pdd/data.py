"""Datasets of the paper (and the embedded digits demo) as tensors in [0, 1], CHW."""

from __future__ import annotations

import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.datasets.utils import download_and_extract_archive, extract_archive
from torchvision.transforms.functional import pil_to_tensor

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts of a dataset: what the models need to know and where it comes from."""

    num_classes: int
    in_channels: int
    image_size: int
    source: str


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(10, 1, 8, "bundled with scikit-learn (sklearn.datasets.load_digits)"),
    "fashion_mnist": DatasetInfo(10, 1, 28, datasets.FashionMNIST.mirrors[0]),
    "cifar100": DatasetInfo(100, 3, 32, datasets.CIFAR100.url),
    "tiny_imagenet": DatasetInfo(200, 3, 64, TINY_IMAGENET_URL),
}
SPLITS = ("train", "test")
DIGITS_TEST_SIZE = 360  # 20% of the 1797 digits, stratified


class DatasetMissing(FileNotFoundError):
    """The dataset's files are not on disk and could not be downloaded."""


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
            x = pil_to_tensor(img.convert("RGB")).float().div_(255)
        return x, label


def info(name: str) -> DatasetInfo:
    """The `DatasetInfo` of `name`, or a clear error listing the known names."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def _digits(split: str) -> TensorImages:
    """scikit-learn's 8x8 digits scaled to [0, 1], with a fixed stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=DIGITS_TEST_SIZE, stratify=y.numpy(), random_state=0
    )
    idx = torch.as_tensor(idx_train if split == "train" else idx_test)
    return TensorImages(x[idx], y[idx], 10)


def _missing(name: str, root: Path, expected: Path) -> DatasetMissing:
    return DatasetMissing(
        f"dataset {name!r} not found: expected {expected}. Run `pdd prepare-data --dataset {name} "
        f"--root {root}` with internet access, or download {info(name).source} and put it there."
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
        return _digits(split)
    if name == "fashion_mnist":
        try:
            return _as_float(datasets.FashionMNIST(root, train=train, download=False))
        except RuntimeError as err:
            raise _missing(name, root, _fashion_raw(root)) from err
    if name == "cifar100":
        try:
            return _as_float(datasets.CIFAR100(root, train=train, download=False))
        except RuntimeError as err:
            raise _missing(name, root, root / "cifar-100-python") from err
    base = root / "tiny-imagenet-200"
    if not (base / "wnids.txt").exists():
        raise _missing(name, root, base)
    return TinyImageNet(root, split)


def _as_float(ds: datasets.VisionDataset) -> TensorImages:
    """Convert torchvision's uint8 arrays (MNIST-style tensor or CIFAR numpy HWC) to a TensorImages."""
    data = torch.as_tensor(ds.data)
    x = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
    y = torch.as_tensor(ds.targets, dtype=torch.long)
    return TensorImages(x.float().div_(255).contiguous(), y, len(ds.classes))


def prepare(name: str, root: str | os.PathLike, download: bool = True) -> dict[str, int]:
    """Make dataset `name` loadable from `root` (extract archives put there, else download); return sizes."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        if name == "fashion_mnist":
            raw = _fashion_raw(root)
            for gz in sorted(raw.glob("*-ubyte.gz")):
                if not gz.with_suffix("").exists():
                    extract_archive(str(gz), str(raw))
            if download:
                datasets.FashionMNIST(root, train=True, download=True)
        elif name == "cifar100" and download:
            datasets.CIFAR100(root, train=True, download=True)
        elif name == "tiny_imagenet" and not (root / "tiny-imagenet-200" / "wnids.txt").exists():
            archive = root / "tiny-imagenet-200.zip"
            if archive.exists():
                extract_archive(str(archive), str(root))
            elif download:
                download_and_extract_archive(TINY_IMAGENET_URL, str(root), md5=TINY_IMAGENET_MD5)
    except (OSError, RuntimeError, zipfile.BadZipFile, tarfile.ReadError) as err:  # offline, refused, bad file
        raise DatasetMissing(
            f"could not obtain dataset {name!r} under {root} from {info(name).source}: {err}. "
            "Download it by hand and put the files there."
        ) from err
    return {split: len(get_dataset(name, split, root)) for split in SPLITS}
