"""C&W L2 (Carlini and Wagner 2017) as ART's `CarliniL2Method` runs it, plus the reference implementation's early
abort: with `abort_early`, an image's binary-search step ends once its loss has stopped falling.

ART runs all `max_iter` iterations of every binary-search step and has no hook to stop; Carlini and Wagner's
own code (nn_robust_attacks, l2_attack.py) checks the loss every `max_iter // 10` iterations and stops the step
when it is above 0.9999 x the loss at the previous check. Here the check is per image (the reference checks the
batch's summed loss), so an image's example does not depend on which images share its batch, and an image
that stopped costs no more passes while the others go on. Without `abort_early` the loop is ART's, step for
step (the tanh change of variables, the binary search over the constant, the line search over learning rates
and ART's quirks), so the examples equal ART's to float rounding (tests/test_cw.py).
"""

from __future__ import annotations

import numpy as np
from art.attacks.evasion import CarliniL2Method
from art.config import ART_NUMPY_DTYPE
from art.utils import check_and_transform_label_format, get_labels_np_array, original_to_tanh, tanh_to_original

ABORT_RATIO = 0.9999  # the reference's test: stop when loss > 0.9999 x the loss at the previous check
CHECKS = 10           # checks per binary-search step: every max_iter // 10 iterations


def _column(values: np.ndarray, ndim: int) -> np.ndarray:
    """[N] values shaped [N, 1, ...] to broadcast over images of `ndim` dimensions."""
    return values.reshape((-1,) + (1,) * (ndim - 1))


class CarliniL2(CarliniL2Method):
    """ART's `CarliniL2Method` (same parameters and loss) whose loop can stop a converged step (`abort_early`)."""

    attack_params = CarliniL2Method.attack_params + ["abort_early"]

    def __init__(self, classifier, abort_early: bool = False, **kwargs) -> None:
        super().__init__(classifier, **kwargs)
        self.abort_early = abort_early

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
        """Adversarial examples of x (float32, in the classifier's clip range); y: one-hot true labels (targets
        when targeted), the classifier's predictions when None, as in ART."""
        if self.targeted and y is None:
            raise ValueError("Target labels `y` need to be provided for a targeted attack.")
        if y is None:
            y = get_labels_np_array(self.estimator.predict(x, batch_size=self.batch_size))
        y = check_and_transform_label_format(y, nb_classes=self.estimator.nb_classes)
        x_adv = x.astype(ART_NUMPY_DTYPE)
        clip_min, clip_max = self.estimator.clip_values if self.estimator.clip_values is not None else (
            np.amin(x), np.amax(x))
        for start in range(0, len(x_adv), self.batch_size):
            batch = slice(start, start + self.batch_size)
            x_adv[batch] = self._attack_batch(x_adv[batch], y[batch], clip_min, clip_max)
        return x_adv

    def _attack_batch(self, x: np.ndarray, y: np.ndarray, clip_min: float, clip_max: float) -> np.ndarray:
        """The binary search over the constant c for one batch: the smallest-L2 successful example per image."""
        n = len(x)
        x_tanh = original_to_tanh(x, clip_min, clip_max, self._tanh_smoother)
        c = self.initial_const * np.ones(n)
        c_low = np.zeros(n)
        c_double = np.ones(n, dtype=bool)
        best_l2 = np.inf * np.ones(n)
        best_x = x.copy()
        for _ in range(self.binary_search_steps):
            if not np.any(c < self._c_upper_bound):
                break
            success, overall, l2dist, x_adv = self._descend(x, x_tanh, y, c, best_l2, best_x, clip_min, clip_max)
            improved = success & (l2dist < best_l2)
            best_l2[improved] = l2dist[improved]
            best_x[improved] = x_adv[improved]
            # ART's update: halve towards the lower bound on success, else double (first) or step up halfway;
            # ART's lower bound becomes the NEW constant (its `c_old` aliases `c_current`): kept, to match it.
            c_double[overall] = False
            c[overall] = (c_low + c)[overall] / 2
            c[~overall & c_double] *= 2
            c[~overall & ~c_double] += (c - c_low)[~overall & ~c_double] / 2
            c_low[~overall] = c[~overall]
        return best_x

    def _descend(self, x: np.ndarray, x_tanh: np.ndarray, y: np.ndarray, c: np.ndarray, best_l2: np.ndarray,
                 best_x: np.ndarray, clip_min: float, clip_max: float) -> tuple[np.ndarray, ...]:
        """One binary-search step: up to `max_iter` line-searched gradient steps in tanh space at constants c.
        Updates best_l2 / best_x in place; returns the last success flags, success at any iteration, the L2
        distances and the examples."""
        n = len(x)
        learning_rate = self.learning_rate * np.ones(n)
        x_adv, x_adv_tanh = x.copy(), x_tanh.copy()
        z_logits, l2dist, loss = self._loss(x, x_adv, y, c)
        success = loss - l2dist <= 0
        overall = success
        running = np.ones(n, dtype=bool)       # not stopped by the early abort
        checked = np.inf * np.ones(n)          # each image's loss at the previous check
        every = max(1, self.max_iter // CHECKS)
        for i_iter in range(self.max_iter):
            improved = success & (l2dist < best_l2)
            best_l2[improved] = l2dist[improved]
            best_x[improved] = x_adv[improved]
            if self.abort_early and i_iter % every == 0:
                running &= ~(loss > ABORT_RATIO * checked)
                checked = loss.copy()
            active = (c < self._c_upper_bound) & (learning_rate > 0) & running
            if not active.any():
                break
            direction = -self._loss_gradient(z_logits[active], y[active], x[active], x_adv[active],
                                             x_adv_tanh[active], c[active], clip_min, clip_max)
            best_lr = self._line_search(x, x_adv_tanh, y, c, active, direction, learning_rate, loss, l2dist,
                                        clip_min, clip_max)
            update = best_lr[active] > 0
            if update.any():
                chosen = active.copy()
                chosen[active] = update
                x_adv_tanh[chosen] = x_adv_tanh[chosen] + _column(best_lr[chosen], x.ndim) * direction[update]
                x_adv[chosen] = tanh_to_original(x_adv_tanh[chosen], clip_min, clip_max)
                z_logits[chosen], l2dist[chosen], loss[chosen] = self._loss(x[chosen], x_adv[chosen], y[chosen],
                                                                            c[chosen])
                success = loss - l2dist <= 0
                overall = overall | success
        return success, overall, l2dist, x_adv

    def _line_search(self, x: np.ndarray, x_adv_tanh: np.ndarray, y: np.ndarray, c: np.ndarray, active: np.ndarray,
                     direction: np.ndarray, learning_rate: np.ndarray, loss: np.ndarray, l2dist: np.ndarray,
                     clip_min: float, clip_max: float) -> np.ndarray:
        """ART's line search: halve each active image's learning rate until a step lowers its loss, then double it
        while that lowers it further (an image halved once). Updates learning_rate, loss and l2dist in place as ART
        does (loss keeps the last trial's value); returns the best learning rate per image (0: no step helped)."""
        prev_loss, best_loss = loss.copy(), loss.copy()
        best_lr = np.zeros(len(x))
        halving = np.zeros(len(x))

        def trial(chosen: np.ndarray, along: np.ndarray) -> None:
            new_tanh = x_adv_tanh[chosen] + _column(learning_rate[chosen], x.ndim) * along
            new_x = tanh_to_original(new_tanh, clip_min, clip_max)
            _, l2dist[chosen], loss[chosen] = self._loss(x[chosen], new_x, y[chosen], c[chosen])
            lower = loss < best_loss
            best_lr[lower] = learning_rate[lower]
            best_loss[lower] = loss[lower]

        for _ in range(self.max_halving):
            do_halving = loss[active] >= prev_loss[active]
            if not do_halving.any():
                break
            chosen = active.copy()
            chosen[active] = do_halving
            trial(chosen, direction[do_halving])
            learning_rate[chosen] /= 2
            halving[chosen] += 1
        learning_rate[active] *= 2
        for _ in range(self.max_doubling):
            do_doubling = (halving[active] == 1) & (loss[active] <= best_loss[active])
            if not do_doubling.any():
                break
            chosen = active.copy()
            chosen[active] = do_doubling
            learning_rate[chosen] *= 2
            trial(chosen, direction[do_doubling])
        learning_rate[halving == 1] /= 2
        return best_lr
