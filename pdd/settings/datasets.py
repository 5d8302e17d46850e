"""Static facts of each dataset (classes, channels, image size, source), read by the plan and the models alike."""

from __future__ import annotations

from dataclasses import dataclass

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts of a dataset: what the models need to know and where it comes from."""

    num_classes: int
    in_channels: int
    image_size: int
    source: str


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(10, 1, 8, "bundled with scikit-learn (sklearn.datasets.load_digits)"),
    # torchvision's FashionMNIST.mirrors[0], CIFAR10.url, CIFAR100.url (tests/test_data.py checks they agree):
    # written out so that `import pdd.data` does not import torchvision (2 s, most of it torch._dynamo).
    "fashion_mnist": DatasetInfo(10, 1, 28, "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    "cifar10": DatasetInfo(10, 3, 32, "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": DatasetInfo(100, 3, 32, "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    "tiny_imagenet": DatasetInfo(200, 3, 64, TINY_IMAGENET_URL),
}


def info(name: str) -> DatasetInfo:
    """The `DatasetInfo` of `name`, or a clear error listing the known names."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name]
