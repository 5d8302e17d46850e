"""Members, ensembles and checkpoints."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from pdd.models import (
    CheckpointError,
    Ensemble,
    EnsembleSpec,
    LogMeanProb,
    checkpoint,
    load_ensemble,
    mean_log_prob,
    read_checkpoint,
)


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "vgg16"])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_member_logits_shape(arch: str, k: int) -> None:
    model = Ensemble(EnsembleSpec(arch, k, 10, 1, width=2)).eval()
    assert model(torch.rand(4, 1, 8, 8)).shape == (k, 4, 10)


@pytest.mark.parametrize("arch, width, size, channels", [("resnet18", 4, 32, 3), ("resnet34", 2, 28, 1),
                                                         ("vgg16", 2, 64, 3), ("resnet18", 16, 8, 1)])
def test_feature_width_follows_width(arch: str, width: int, size: int, channels: int) -> None:
    model = Ensemble(EnsembleSpec(arch, 2, 100, channels, width=width)).eval()
    assert model.feature_dim == 8 * width
    assert model.features(torch.rand(3, channels, size, size)).shape == (2, 3, 8 * width)
    assert model(torch.rand(3, channels, size, size)).shape == (2, 3, 100)


def test_standard_width_resnet18_has_512_features_and_paper_size() -> None:
    model = Ensemble(EnsembleSpec("resnet18", 2, 100, 3, width=64))
    assert model.feature_dim == 512
    per_member = sum(p.numel() for p in model.parameters()) / 2
    assert 11.1e6 < per_member < 11.3e6  # CIFAR ResNet-18 with a 100-way head: 11.22 M parameters


def test_members_have_independent_weights() -> None:
    model = Ensemble(EnsembleSpec("resnet18", 3, 10, 1, width=2))
    a, b = (m.stem[0].weight for m in model.members[:2])
    assert a.data_ptr() != b.data_ptr() and not torch.equal(a, b)


def test_log_mean_prob_is_log_of_mean_softmax() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7) * 4
    expected = torch.log(logits.softmax(-1).mean(0))
    assert torch.allclose(mean_log_prob(logits), expected, atol=1e-6)
    assert torch.allclose(mean_log_prob(logits).exp().sum(-1), torch.ones(5))
    model = Ensemble(EnsembleSpec("resnet18", 3, 10, 1, width=2)).eval()
    x = torch.rand(2, 1, 8, 8)
    assert torch.allclose(LogMeanProb(model)(x), torch.log(model(x).softmax(-1).mean(0)), atol=1e-6)


def test_per_member_inputs_match_shared_input() -> None:
    model = Ensemble(EnsembleSpec("resnet18", 3, 10, 1, width=2)).eval()
    x = torch.rand(4, 1, 8, 8)
    assert torch.allclose(model(x), model(x.expand(3, *x.shape)), atol=1e-6)


def test_pdd_layer_only_acts_in_training() -> None:
    spec = EnsembleSpec("resnet18", 3, 10, 1, width=2, pdd={"num_intervals": 10, "alpha": 0.9, "beta": 0.1})
    model = Ensemble(spec)
    plain = Ensemble(EnsembleSpec("resnet18", 3, 10, 1, width=2))
    plain.load_state_dict(model.state_dict())
    x = torch.rand(4, 1, 8, 8)
    model.eval(), plain.eval()
    assert torch.equal(model(x), plain(x))


@pytest.mark.parametrize("bad", [dict(num_members=1), dict(arch="resnet50"), dict(width=0)])
def test_invalid_spec_rejected(bad: dict) -> None:
    args = dict(arch="resnet18", num_members=3, num_classes=10, in_channels=1, width=2) | bad
    with pytest.raises(ValueError):
        EnsembleSpec(**args)


def test_checkpoint_round_trip(tmp_path) -> None:
    model = Ensemble(EnsembleSpec("vgg16", 2, 10, 1, width=2)).eval()
    torch.save(checkpoint(model), tmp_path / "m.pt")
    loaded = load_ensemble(tmp_path / "m.pt")
    x = torch.rand(3, 1, 8, 8)
    assert not loaded.training
    assert torch.equal(loaded(x), model(x))


def test_corrupt_checkpoint_gives_clear_error(tmp_path) -> None:
    model = Ensemble(EnsembleSpec("resnet18", 2, 10, 1, width=2))
    path = tmp_path / "m.pt"
    torch.save(checkpoint(model), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_ensemble(path)


def test_foreign_and_mismatched_checkpoints_give_clear_errors(tmp_path) -> None:
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a pdd ensemble checkpoint"):
        load_ensemble(tmp_path / "foreign.pt")
    ckpt = checkpoint(Ensemble(EnsembleSpec("resnet18", 2, 10, 1, width=2)))
    ckpt["spec"]["width"] = 4
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="does not match"):
        load_ensemble(tmp_path / "mismatch.pt")


class _Payload:
    """Pickles as a call that creates `marker`: what a hostile checkpoint would run on unpickling."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("with_numpy", [False, True])
def test_checkpoint_that_runs_code_is_refused(tmp_path: Path, with_numpy: bool) -> None:
    marker = tmp_path / "marker"
    ckpt = checkpoint(Ensemble(EnsembleSpec("resnet18", 2, 10, 1, width=2)), extra=_Payload(marker))
    if with_numpy:  # numpy arrays are allowed for legacy states; they must not open the door to anything else
        ckpt["rng"] = {"numpy": np.random.get_state()}
    path = tmp_path / "hostile.pt"
    torch.save(ckpt, path)
    torch.load(path, weights_only=False)             # the payload is live: plain unpickling runs it
    assert marker.exists()
    marker.unlink()
    for load in (read_checkpoint, load_ensemble):
        with pytest.raises(CheckpointError, match="refused to load .*hostile.pt.*io.open.*retrain"):
            load(path)
        assert not marker.exists()


def test_checkpoints_are_plain_data(tmp_path: Path) -> None:
    model = Ensemble(EnsembleSpec("resnet18", 2, 10, 1, width=2, pdd={"num_intervals": 5, "alpha": 0.9, "beta": 0.1}))
    torch.save(checkpoint(model, train_config={"lr": 0.02, "hyper": {"deg_lambda": 0.01}}, log=[{"epoch": 1}]),
               tmp_path / "m.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "m.pt") == []
    assert read_checkpoint(tmp_path / "m.pt")["train_config"]["hyper"] == {"deg_lambda": 0.01}


def test_legacy_state_with_numpy_rng_still_loads(tmp_path: Path) -> None:
    """Training states written before the plain format held numpy's RNG state tuple (a uint32 array)."""
    np.random.seed(7)
    legacy = {"rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
              "log": [{"epoch": 1, "lr": np.float64(0.02)}]}
    torch.save(legacy, tmp_path / "m.pt.state")
    with pytest.raises(Exception):
        torch.load(tmp_path / "m.pt.state", weights_only=True)   # not loadable as plain data
    state = read_checkpoint(tmp_path / "m.pt.state")
    kind, key, pos, has_gauss, gauss = state["rng"]["numpy"]
    assert kind == "MT19937" and key.dtype == np.uint32 and np.array_equal(key, legacy["rng"]["numpy"][1])
    assert (pos, has_gauss, gauss) == legacy["rng"]["numpy"][2:]
    assert state["rng"]["python"] == legacy["rng"]["python"] and state["log"][0]["lr"] == 0.02
    assert torch.equal(state["rng"]["torch"], legacy["rng"]["torch"])


@pytest.mark.parametrize("content", [bytes(range(157, 256)) * 3, b"\x80\x02" + bytes(range(200, 250))])
def test_garbage_checkpoint_is_corrupt_not_code(tmp_path: Path, content: bytes) -> None:
    """Bytes that are no pickle at all are reported as corrupt (torch's weights-only loader says 'Unsupported
    operand' for them, which read as a file that could run code)."""
    path = tmp_path / "state.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt or truncated") as err:
        read_checkpoint(path)
    assert "run code" not in str(err.value)
