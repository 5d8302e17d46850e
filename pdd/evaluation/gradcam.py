"""Figure 1 ("Diversified Feature Learning"): Grad-CAM of every ensemble member on its own feature maps,
and the mean pairwise distance between the centres of the members' hottest pixels."""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from pdd.models import ResNetFeatures, VGGFeatures, build_features, eval_mode

THRESHOLD = 0.9  # the paper's: a map's hot pixels are those above 0.9 of its maximum


def candidate_layers(member: nn.Module) -> list[str]:
    """Names (submodule paths) of a member's convolutional stage outputs, input side first: every residual
    block of a ResNet, every ReLU (post-conv activation) of a VGG."""
    if isinstance(member, ResNetFeatures):
        return [f"layers.{i}" for i in range(len(member.layers))]
    if isinstance(member, VGGFeatures):
        return [f"layers.{i}" for i, m in enumerate(member.layers) if isinstance(m, nn.ReLU)]
    raise ValueError(f"no default Grad-CAM layer for {type(member).__name__}; pass `layer` explicitly")


def last_conv_layer(member: nn.Module) -> str:
    """The paper's choice: the last convolutional stage's output (last block of a ResNet, last ReLU of a VGG)."""
    return candidate_layers(member)[-1]


def default_layer(arch: str, image_size: int | tuple[int, int]) -> str:
    """The last stage output whose maps still measure >= 2 x 2 at this input size.

    At paper scale this is the last stage (ResNet-18 on 64x64 gives 8x8 maps at "layers.7"); on the demo's
    8x8 digits the last stage is 1x1 and every Grad-CAM map would be flat, so ResNet-18 falls back to the
    last block of stage 3 ("layers.5", 2x2) and VGG-16 to the last ReLU of its third block ("layers.22", 2x2).
    Sizes are measured by one forward pass of a width-1 member on a zero image.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    member = build_features(arch, width=1, in_channels=1).eval()
    names = candidate_layers(member)
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [member.get_submodule(n).register_forward_hook(
        lambda _m, _i, out, n=n: sizes.__setitem__(n, tuple(out.shape[-2:]))) for n in names]
    try:
        with torch.no_grad():
            member(torch.zeros(1, 1, h, w))
    finally:
        for hook in hooks:
            hook.remove()
    usable = [n for n in names if min(sizes[n]) >= 2]
    if not usable:
        raise ValueError(f"{arch} has no feature map of at least 2x2 on {h}x{w} inputs")
    return usable[-1]


def gradcam(ensemble: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: str | None = None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) of each member's own `target` logit on its maps at `layer`.

    Returns [K, B, H, W] (H, W of `x`): ReLU(sum_c mean_ij(dlogit/dA_c) * A_c), upsampled bilinearly and
    divided by each map's maximum (an all-zero map stays zero). `layer` is a submodule path inside every
    member (default: the last convolutional stage). Runs in eval mode (BatchNorm statistics, PDD off), so
    samples are independent and one backward pass serves the whole batch; parameters' .grad is untouched.
    """
    members = list(ensemble.members)
    names = [layer or last_conv_layer(m) for m in members]
    maps: dict[int, torch.Tensor] = {}
    hooks = [m.get_submodule(n).register_forward_hook(lambda _m, _i, out, k=k: maps.__setitem__(k, out))
             for k, (m, n) in enumerate(zip(members, names))]
    try:
        with eval_mode(ensemble), torch.enable_grad():
            # x requires grad so the maps do even before any parameter (or with frozen parameters)
            logits = ensemble(x.detach().requires_grad_())  # [K, B, L]
            if len(maps) != len(members):
                raise ValueError(f"layer {names[0]!r} was not called in every member's forward pass")
            index = target.to(logits.device).view(1, -1, 1).expand(logits.shape[0], -1, 1)
            score = logits.gather(2, index).sum()  # members and samples are independent: one backward
            acts = [maps[k] for k in range(len(members))]
            grads = torch.autograd.grad(score, acts)
    finally:
        for hook in hooks:
            hook.remove()
    act, grad = torch.stack([a.detach() for a in acts]), torch.stack(grads)  # [K, B, C, h, w]
    weights = grad.mean(dim=(3, 4), keepdim=True)
    cam = F.relu((weights * act).sum(dim=2))  # [K, B, h, w]
    k, b = cam.shape[:2]
    cam = F.interpolate(cam.reshape(k * b, 1, *cam.shape[2:]), size=x.shape[-2:], mode="bilinear",
                        align_corners=False).reshape(k, b, *x.shape[-2:])
    peak = cam.amax(dim=(2, 3), keepdim=True)
    return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))


def map_centres(maps: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """(row, column) centre [K, 2] of each map's pixels whose value exceeds `threshold`.

    A map with no such pixel uses the pixels at its maximum instead (for an all-zero map: every pixel, so
    the image centre), so a member whose map is cold still has a defined, neutral centre.
    """
    k, h, w = maps.shape
    hot = maps > threshold
    at_peak = maps == maps.amax(dim=(1, 2), keepdim=True)
    mask = torch.where(hot.flatten(1).any(dim=1).view(k, 1, 1), hot, at_peak).to(maps.dtype)
    rows = torch.arange(h, dtype=maps.dtype, device=maps.device).view(1, h, 1)
    cols = torch.arange(w, dtype=maps.dtype, device=maps.device).view(1, 1, w)
    count = mask.sum(dim=(1, 2))
    return torch.stack([(mask * rows).sum(dim=(1, 2)) / count, (mask * cols).sum(dim=(1, 2)) / count], dim=1)


def centre_distance(maps: torch.Tensor, threshold: float = THRESHOLD) -> float:
    """Mean Euclidean distance in pixels between the members' map centres over all pairs i < j (Figure 1)."""
    if maps.dim() != 3 or maps.shape[0] < 2:
        raise ValueError(f"expected maps [K, H, W] with K >= 2, got shape {tuple(maps.shape)}")
    centres = map_centres(maps.detach().double(), threshold)
    i, j = torch.triu_indices(len(centres), len(centres), offset=1)
    return float((centres[i] - centres[j]).norm(dim=1).mean())


def commonly_correct(ensembles: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor,
                     batch_size: int = 256) -> torch.Tensor:
    """Bool [N]: the images every ensemble's mean-softmax prediction classifies correctly."""
    ok = torch.ones(len(x), dtype=torch.bool)
    for model in ensembles.values():
        device = next(model.parameters()).device
        with eval_mode(model), torch.no_grad():
            pred = torch.cat([model.log_mean_prob(x[s:s + batch_size].to(device)).argmax(1).cpu()
                              for s in range(0, len(x), batch_size)])
        ok &= pred == y.cpu()
    return ok


def distances_over_images(ensembles: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor,
                          layer: str | None = None, threshold: float = THRESHOLD, batch_size: int = 64) -> pd.DataFrame:
    """One row (method, image, distance) per method and image that every ensemble classifies correctly;
    `image` is the index into `x`, Grad-CAM targets the true (= predicted) class."""
    keep = commonly_correct(ensembles, x, y).nonzero().flatten()
    rows = []
    for method, model in ensembles.items():
        device = next(model.parameters()).device
        for chunk in keep.split(batch_size):
            maps = gradcam(model, x[chunk].to(device), y[chunk].to(device), layer).cpu()
            rows += [{"method": method, "image": int(i), "distance": centre_distance(maps[:, b], threshold)}
                     for b, i in enumerate(chunk)]
    return pd.DataFrame(rows, columns=["method", "image", "distance"])

