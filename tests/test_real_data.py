"""Real Fashion-MNIST from the system package (Debian/Ubuntu `dataset-fashion-mnist`, or $PDD_SYSTEM_DATA):
`pdd prepare-data` offline, then a small ensemble trained on it must beat 75% clean accuracy, which only the
real images give (random or shuffled data stays near 10%)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from pdd import data
from pdd.cli import main
from pdd.losses import ensemble_cross_entropy
from pdd.models import Ensemble, EnsembleSpec

pytestmark = pytest.mark.slow

TRAIN_IMAGES, TEST_IMAGES = 4000, 1000  # fixed random subsets of the 60000 / 10000
STEPS, BATCH = 200, 64  # about 3 epochs of the subset; measured: 83% clean accuracy, 45 s of one core


@pytest.fixture(scope="module")
def fashion_root(tmp_path_factory):
    """A data root prepared by `pdd prepare-data --no-download` from the installed system data."""
    if data.find_system_data("fashion_mnist") is None:
        pytest.skip(f"Fashion-MNIST is not installed: `apt install {data.SYSTEM_PACKAGES['fashion_mnist']}` "
                    f"(files in {data.SYSTEM_DIRS['fashion_mnist'][0]}) or set {data.SYSTEM_DATA_ENV}")
    root = tmp_path_factory.mktemp("real-data")
    manifest = root / "fashion_mnist.json"
    result = CliRunner().invoke(main, ["prepare-data", "--dataset", "fashion_mnist", "--root", str(root),
                                       "--no-download", "--out", str(manifest)])
    assert result.exit_code == 0, result.output
    record = json.loads(manifest.read_text())
    system = data.find_system_data("fashion_mnist")
    assert record["source"] == f"system data {system}" and f"from system data {system}" in result.output
    assert (record["train"], record["test"]) == (60000, 10000)
    assert record["checksums"] == {file: f"sha256:{d}" for file, d in data.FASHION_MNIST_SHA256.items()}
    return root


def test_real_fashion_mnist_statistics(fashion_root):
    train = data.get_dataset("fashion_mnist", "train", fashion_root)
    test = data.get_dataset("fashion_mnist", "test", fashion_root)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    # Fashion-MNIST's well-known facts: balanced classes, pixel mean 0.2860 / std 0.3530 (train).
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert abs(train.images.mean().item() - 0.2860) < 5e-4 and abs(train.images.std().item() - 0.3530) < 5e-4
    assert train.labels[:3].tolist() == [9, 0, 0]  # ankle boot, T-shirt, T-shirt


def _subset(ds, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    return ds.images[idx], ds.labels[idx]


def test_small_ensemble_learns_real_fashion_mnist(fashion_root):
    torch.manual_seed(0)
    x_train, y_train = _subset(data.get_dataset("fashion_mnist", "train", fashion_root), TRAIN_IMAGES, seed=0)
    x_test, y_test = _subset(data.get_dataset("fashion_mnist", "test", fashion_root), TEST_IMAGES, seed=1)
    info = data.info("fashion_mnist")
    model = Ensemble(EnsembleSpec("resnet18", 2, info.num_classes, info.in_channels, width=8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)  # the paper's recipe
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=STEPS, eta_min=1e-4)
    shuffle = torch.Generator().manual_seed(2)
    epochs = -(-STEPS * BATCH // TRAIN_IMAGES)
    batches = torch.cat([torch.randperm(TRAIN_IMAGES, generator=shuffle)[: TRAIN_IMAGES // BATCH * BATCH]
                         for _ in range(epochs)]).view(-1, BATCH)[:STEPS]
    model.train()
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        ensemble_cross_entropy(model(x_train[batch]), y_train[batch]).backward()
        optimizer.step()
        scheduler.step()
    model.eval()
    with torch.inference_mode():
        predicted = torch.cat([model.log_mean_prob(x).argmax(1) for x in x_test.split(500)])
    accuracy = (predicted == y_test).float().mean().item()
    assert accuracy > 0.75, f"clean accuracy {accuracy:.3f} on {TEST_IMAGES} real test images"
