"""The paper's white-box attacks through ART on log(mean softmax), and their scoring.

Robust accuracy is reported both ways: over the images the model classifies correctly before the
attack (the paper's convention, official code) and over all attacked images.
"""

from __future__ import annotations

import functools
import random
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from pdd.evaluation.art_attacks import BUILDERS
from pdd.evaluation.records import image_fields, pack_flags
from pdd.models import Ensemble, LogMeanProb
from pdd.settings.attacks import ATTACKS, Attack, AttackSettings, check_attack  # noqa: F401 (re-exported)


def image_indices(size: int, num_images: int | None, seed: int = 0) -> torch.Tensor:
    """Indices (sorted) of the fixed random subset of `num_images` of `size` images (all when None)."""
    n = size if num_images is None else min(num_images, size)
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def select_images(dataset: Dataset, num_images: int | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random subset of `num_images` images (all when None) as tensors x [N, C, H, W], y [N]."""
    order = image_indices(len(dataset), num_images, seed)
    xs, ys = zip(*(dataset[int(i)] for i in order))
    return torch.stack(xs), torch.as_tensor(ys, dtype=torch.long)


def protocol_images(dataset: Dataset, num_images: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """`select_images`, and which images they are by index (`records.image_fields`) for the records, so that
    results on the same images can be paired (the CLI and the API both record them)."""
    x, y = select_images(dataset, num_images, seed)
    return x, y, image_fields(image_indices(len(dataset), num_images, seed), len(dataset))


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 500) -> torch.Tensor:
    """Class predictions [N] of an ensemble (mean softmax) for images x on the CPU."""
    model.eval()
    out = [model.log_mean_prob(chunk.to(device)).argmax(1).cpu() for chunk in x.split(batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


@functools.cache
def _per_sample_classifier_class() -> type:
    """ART's PyTorchClassifier with a one-backward-pass `class_gradient` for per-sample labels (built lazily:
    importing ART is slow)."""
    from art.estimators.classification import PyTorchClassifier

    class PerSampleGradientClassifier(PyTorchClassifier):
        """PyTorchClassifier whose `class_gradient(x, label=<one label per sample>)` takes one backward pass.

        ART's own version backpropagates once per distinct label in the batch (C&W calls it twice per
        iteration, JSMA once), so its cost grows with the number of classes. Here the gradient of
        sum_b output[b, label[b]] w.r.t. x is taken once: row b of it is d output[b, label[b]] / d x[b]
        because, in eval mode, each image's output depends only on that image (batch norm uses its running
        statistics, PDD's dropout is the identity). Other calls (label None or an int, training_mode=True,
        RNNs, labels ART rejects) take ART's path unchanged.
        """

        def class_gradient(self, x: np.ndarray, label: int | list[int] | np.ndarray | None = None,
                           training_mode: bool = False, **kwargs) -> np.ndarray:
            """Per-sample label gradients [N, 1, *input] as ART returns them; see the class docstring."""
            labels = np.asarray(label) if isinstance(label, (list, np.ndarray)) else None
            if (labels is None or training_mode or self.is_rnn or labels.ndim != 1 or len(labels) != len(x)
                    or len(x) == 0 or not np.issubdtype(labels.dtype, np.integer)
                    or labels.min() < 0 or labels.max() >= self.nb_classes):
                return super().class_gradient(x, label=label, training_mode=training_mode, **kwargs)
            self._model.train(mode=False)
            # Preprocessing exactly as ART's class_gradient applies it.
            if self.all_framework_preprocessing:
                x_grad = torch.from_numpy(x).to(self._device)
                if self._layer_idx_gradients < 0:
                    x_grad.requires_grad = True
                x_input, _ = self._apply_preprocessing(x_grad, y=None, fit=False, no_grad=False)
            else:
                x_preprocessed, _ = self._apply_preprocessing(x, y=None, fit=False, no_grad=True)
                x_grad = torch.from_numpy(x_preprocessed).to(self._device)
                if self._layer_idx_gradients < 0:
                    x_grad.requires_grad = True
                x_input = x_grad
            model_outputs = self._model(x_input)
            input_grad = model_outputs[self._layer_idx_gradients] if self._layer_idx_gradients >= 0 else x_grad
            preds = model_outputs[-1]
            index = torch.from_numpy(labels.astype(np.int64)).to(preds.device)
            selected = preds.gather(1, index[:, None]).sum()
            (grads,) = torch.autograd.grad(selected, input_grad)
            grads = grads.cpu().numpy()[:, None]
            if not self.all_framework_preprocessing:
                grads = self._apply_preprocessing_gradient(x, grads)
            return grads

    return PerSampleGradientClassifier


def art_classifier(model: Ensemble, input_shape: tuple[int, ...], num_classes: int, device: torch.device,
                   per_sample_gradients: bool = True):
    """ART's PyTorchClassifier around log(mean softmax); CE on log-probabilities is their NLL.

    With `per_sample_gradients` (the default) it is the subclass whose per-sample-label `class_gradient`
    takes one backward pass instead of one per distinct label (C&W, JSMA); False gives stock ART (benchmarks).
    """
    from art.estimators.classification import PyTorchClassifier

    if device.type == "cuda":
        torch.cuda.set_device(device)
    cls = _per_sample_classifier_class() if per_sample_gradients else PyTorchClassifier
    return cls(
        LogMeanProb(model.eval()), loss=nn.CrossEntropyLoss(), input_shape=input_shape, nb_classes=num_classes,
        clip_values=(0.0, 1.0), device_type="gpu" if device.type == "cuda" else "cpu",
    )


def build_attack(name: str, param: float, classifier, settings: AttackSettings):
    """The ART attack object for `name` at parameter `param` (eps, JSMA's gamma or C&W's initial constant)."""
    check_attack(name)
    if name not in BUILDERS:
        raise ValueError(f"attack {name!r} takes no parameter")
    return BUILDERS[name](param, classifier, settings)


def jsma_targets(labels: torch.Tensor, num_classes: int, seed: int) -> np.ndarray:
    """Random target classes != true label, from a fixed seed, one-hot [N, L] (ART's JSMA is targeted)."""
    rng = np.random.default_rng(seed)
    targets = (labels.numpy() + rng.integers(1, num_classes, size=len(labels))) % num_classes
    return np.eye(num_classes, dtype=np.float32)[targets]


def art_generate(model: Ensemble, x: torch.Tensor, labels: np.ndarray, make_attack, seed: int,
                 device: torch.device) -> torch.Tensor:
    """Run the ART attack `make_attack(classifier)` on x with one-hot `labels` (targets for a targeted
    attack), seeded, and return the examples clipped to [0, 1]. Seeded: numpy's, torch's and Python's random
    numbers (ART's L2 Square draws from Python's `random` too)."""
    classifier = art_classifier(model, tuple(x.shape[1:]), model.spec.num_classes, device)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    x_adv = make_attack(classifier).generate(x.numpy().astype(np.float32), y=labels)
    return torch.from_numpy(np.clip(x_adv, 0.0, 1.0)).float()


def one_hot(y: torch.Tensor, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[y.numpy()]


def generate(model: Ensemble, x: torch.Tensor, y: torch.Tensor, attack: str, param: float,
             settings: AttackSettings, device: torch.device, only: torch.Tensor | None = None) -> torch.Tensor:
    """Adversarial examples [N, C, H, W] in [0, 1] crafted white-box on `model` ('none' returns x).

    `only` (bool [N]): craft on those images alone, the others are returned as x (no passes spent on them).
    JSMA's targets are drawn over all N images first, so an image's target does not depend on `only`."""
    check_attack(attack)
    x_adv = x.clone()
    if attack == "none" or param == 0:
        return x_adv
    num_classes = model.spec.num_classes
    targeted = check_attack(attack).targeted
    labels = jsma_targets(y, num_classes, settings.seed) if targeted else one_hot(y, num_classes)
    index = torch.arange(len(y)) if only is None else only.cpu().nonzero().flatten()
    if len(index) == 0:
        return x_adv
    x_adv[index] = art_generate(model, x[index], labels[index.numpy()],
                                lambda clf: build_attack(attack, param, clf, settings), settings.seed, device)
    return x_adv


def score(y: torch.Tensor, clean_pred: torch.Tensor, adv_pred: torch.Tensor) -> dict:
    """Both accuracy conventions with their counts; percentages; and per image, packed (`pack_flags`), whether
    it is classified correctly before the attack (`clean_flags`) and also after it (`robust_flags`), so two
    ensembles scored on the same images can be compared image by image (McNemar)."""
    correct = clean_pred == y
    robust = correct & (adv_pred == y)
    n, n_correct = len(y), int(correct.sum())
    return {
        "n_images": n,
        "n_clean_correct": n_correct,
        "n_robust": int(robust.sum()),
        "n_adv_correct": int((adv_pred == y).sum()),
        "clean_accuracy": 100.0 * n_correct / n,
        "accuracy_on_correct": 100.0 * int(robust.sum()) / max(n_correct, 1),
        "accuracy_all": 100.0 * int((adv_pred == y).sum()) / n,
        "clean_flags": pack_flags(correct),
        "robust_flags": pack_flags(robust),
    }


def perturbation_norms(x: torch.Tensor, x_adv: torch.Tensor) -> dict:
    """Largest L-inf and L2 perturbation over the images (to check the attack's budget)."""
    delta = (x_adv - x).flatten(1)
    return {"max_linf": float(delta.abs().amax()) if len(delta) else 0.0,
            "max_l2": float(delta.norm(dim=1).amax()) if len(delta) else 0.0}


def run_attack(target: Ensemble, x: torch.Tensor, y: torch.Tensor, attack: str, param: float,
               settings: AttackSettings, device: torch.device, surrogate: Ensemble | None = None) -> dict:
    """Craft on `surrogate` (white-box when None: on `target`) and score on `target`.

    Only the images `target` classifies correctly are crafted on and scored again (the paper's convention: a
    misclassified image is its own adversarial example, distance 0); the others keep x. `accuracy_on_correct`
    and the flags are those of crafting on every image; `accuracy_all` counts a misclassified image as not robust
    (an attack run on it could, rarely, have pushed it onto its true class)."""
    clean_pred = predict(target, x, device, settings.batch_size)
    correct = clean_pred == y
    start = time.perf_counter()
    x_adv = generate(surrogate if surrogate is not None else target, x, y, attack, param, settings, device,
                     only=correct)
    seconds = time.perf_counter() - start  # crafting only, as before
    adv_pred = clean_pred.clone()
    adv_pred[correct] = predict(target, x_adv[correct], device, settings.batch_size)
    result = score(y, clean_pred, adv_pred)
    result.update(perturbation_norms(x, x_adv), seconds=seconds, images_per_second=len(y) / max(seconds, 1e-9))
    return result
