"""The one-backward-pass `class_gradient` of `pdd.evaluation.attacks.art_classifier`: same gradients and adversarial
examples as stock ART, and a number of backward passes that does not grow with the number of classes."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier

import pdd.evaluation.attacks
from pdd.evaluation.attacks import AttackSettings, art_classifier, generate, predict
from pdd.models import Ensemble, EnsembleSpec

CPU = torch.device("cpu")
SHAPE = (3, 8, 8)


def sharp_ensemble(num_classes: int, seed: int = 0) -> Ensemble:
    """A tiny random K = 2 ensemble whose heads are scaled up so that its predictions depend on the input
    (C&W then succeeds within a few iterations, so the compared examples actually move)."""
    torch.manual_seed(seed)
    model = Ensemble(EnsembleSpec("resnet18", 2, num_classes, SHAPE[0], width=2))
    with torch.no_grad():
        for head in model.heads:
            head.weight.mul_(30)
    return model.eval()


def stock_art(monkeypatch) -> None:
    """Make `pdd.evaluation.attacks.generate` build stock ART's PyTorchClassifier (the per-label loop)."""
    monkeypatch.setattr(pdd.evaluation.attacks, "art_classifier",
                        functools.partial(art_classifier, per_sample_gradients=False))


class PassCounter:
    """Counts the ensemble's forward passes that build a graph and the backward passes through its output."""

    def __init__(self, model: Ensemble):
        self.gradient_forwards = 0
        self.backwards = 0
        self._handle = model.register_forward_hook(self._forward)

    def _forward(self, module, inputs, output: torch.Tensor) -> None:
        if output.requires_grad:
            self.gradient_forwards += 1
            output.register_hook(self._backward)

    def _backward(self, grad: torch.Tensor) -> None:
        self.backwards += 1

    def close(self) -> None:
        self._handle.remove()


def count_passes(model: Ensemble, x: torch.Tensor, y: torch.Tensor, attack: str, param: float,
                 settings: AttackSettings) -> PassCounter:
    counter = PassCounter(model)
    try:
        generate(model, x, y, attack, param, settings, CPU)
    finally:
        counter.close()
    return counter


@pytest.mark.parametrize("num_classes", [10, 100, 200])
def test_per_sample_gradients_equal_arts_per_label_loop(num_classes: int) -> None:
    model = sharp_ensemble(num_classes)
    ours = art_classifier(model, SHAPE, num_classes, CPU)
    stock = art_classifier(model, SHAPE, num_classes, CPU, per_sample_gradients=False)
    assert type(stock) is PyTorchClassifier and isinstance(ours, PyTorchClassifier) and type(ours) is not type(stock)
    x = np.random.default_rng(0).random((7, *SHAPE), dtype=np.float32)
    labels = np.array([3, 0, num_classes - 1, 3, 7, num_classes // 2, 0])  # repeated labels, both ends
    expected = stock.class_gradient(x, label=labels)
    got = ours.class_gradient(x, label=labels)
    assert got.shape == expected.shape == (7, 1, *SHAPE) and got.dtype == expected.dtype == np.float32
    assert np.abs(expected).max() > 1e-3  # a non-trivial gradient
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    # A list of labels is the same request.
    np.testing.assert_allclose(ours.class_gradient(x, label=labels.tolist()), expected, rtol=1e-4, atol=1e-6)


def test_per_sample_gradient_matches_autograd_by_hand() -> None:
    """Row b is d log_mean_prob(x)[b, label_b] / d x[b], computed one image at a time."""
    model = sharp_ensemble(10)
    x = torch.rand(3, *SHAPE)
    labels = np.array([2, 9, 2])
    got = art_classifier(model, SHAPE, 10, CPU).class_gradient(x.numpy(), label=labels)
    for b in range(3):
        xb = x[b:b + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.log_mean_prob(xb)[0, labels[b]], xb)
        np.testing.assert_allclose(got[b, 0], grad[0].numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("label", [None, 4, np.int64(4)])
def test_other_label_forms_keep_arts_path(label) -> None:
    model = sharp_ensemble(10)
    x = np.random.default_rng(1).random((4, *SHAPE), dtype=np.float32)
    ours = art_classifier(model, SHAPE, 10, CPU).class_gradient(x, label=label)
    stock = art_classifier(model, SHAPE, 10, CPU, per_sample_gradients=False).class_gradient(x, label=label)
    assert ours.shape == stock.shape == ((4, 10, *SHAPE) if label is None else (4, 1, *SHAPE))
    np.testing.assert_allclose(ours, stock, rtol=1e-5, atol=1e-7)


def test_training_mode_keeps_arts_path() -> None:
    """In training mode batch norm mixes the images of a batch, so the shortcut would be wrong: ART's loop runs."""
    x = np.random.default_rng(2).random((4, *SHAPE), dtype=np.float32)
    labels = np.array([1, 1, 5, 0])
    ours = art_classifier(sharp_ensemble(10), SHAPE, 10, CPU).class_gradient(x, label=labels, training_mode=True)
    stock = art_classifier(sharp_ensemble(10), SHAPE, 10, CPU, per_sample_gradients=False).class_gradient(
        x, label=labels, training_mode=True)
    np.testing.assert_allclose(ours, stock, rtol=1e-5, atol=1e-7)
    shortcut = art_classifier(sharp_ensemble(10), SHAPE, 10, CPU).class_gradient(x, label=labels)
    assert not np.allclose(ours, shortcut, rtol=1e-3, atol=1e-5)  # batch statistics change the gradients


def test_out_of_range_labels_are_rejected_as_art_does() -> None:
    classifier = art_classifier(sharp_ensemble(10), SHAPE, 10, CPU)
    with pytest.raises(ValueError, match="out of range"):
        classifier.class_gradient(np.zeros((2, *SHAPE), np.float32), label=np.array([1, 10]))


CW = AttackSettings(batch_size=100, cw_max_iter=4, cw_binary_search_steps=1, cw_learning_rate=0.3, seed=3)


@pytest.mark.parametrize("attack, param, num_classes", [("cw", 10.0, 10), ("cw", 10.0, 100), ("jsma", 0.03, 100)])
def test_cw_and_jsma_examples_equal_stock_art(monkeypatch, attack: str, param: float, num_classes: int) -> None:
    model = sharp_ensemble(num_classes)
    torch.manual_seed(1)
    x = torch.rand(5, *SHAPE)
    y = predict(model, x, CPU)  # start from correctly classified images, so that C&W has work to do
    ours = generate(model, x, y, attack, param, CW, CPU)
    stock_art(monkeypatch)
    stock = generate(model, x, y, attack, param, CW, CPU)
    assert (ours - x).flatten(1).norm(dim=1).gt(0).sum() >= 2  # the examples moved
    torch.testing.assert_close(ours, stock, rtol=0, atol=1e-5)


def test_cw_backward_passes_per_iteration_do_not_grow_with_classes(monkeypatch) -> None:
    """ART's C&W takes two class gradients per iteration; ours is one backward pass each, at any class count.
    Stock ART, counted the same way, takes one per distinct label (so the count can fail)."""
    x = torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(4))
    y = torch.arange(6)  # six distinct labels: stock ART's i_add alone takes six backward passes
    iterations = CW.cw_max_iter * CW.cw_binary_search_steps  # one batch; no early exit at initial_const 10
    counts = {}
    for num_classes in (10, 100, 200):
        counts[num_classes] = count_passes(sharp_ensemble(num_classes), x, y, "cw", 10.0, CW).backwards
    assert all(n <= 4 * iterations for n in counts.values()), counts
    assert counts[10] == counts[100] == counts[200] == 2 * iterations
    stock_art(monkeypatch)
    stock = count_passes(sharp_ensemble(100), x, y, "cw", 10.0, CW).backwards
    assert stock > 4 * iterations


def test_jsma_backward_passes_do_not_grow_with_classes(monkeypatch) -> None:
    """JSMA takes one class gradient per iteration: backward passes per iteration (per gradient forward)
    stay at one from 10 to 100 classes; stock ART takes one per distinct target."""
    x = torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(5))
    y = torch.arange(6)
    settings = AttackSettings(batch_size=100, seed=6)

    def per_iteration(num_classes: int) -> float:
        counter = count_passes(sharp_ensemble(num_classes), x, y, "jsma", 0.03, settings)
        assert counter.gradient_forwards > 0
        return counter.backwards / counter.gradient_forwards

    ours = {n: per_iteration(n) for n in (10, 100)}
    assert ours[100] <= 1.5 * ours[10] and ours[100] == 1.0, ours
    stock_art(monkeypatch)
    stock = {n: per_iteration(n) for n in (10, 100)}
    assert stock[100] > 1.5, stock
