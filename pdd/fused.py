"""The K members of an ensemble run as ONE network: grouped convolutions (groups = K, K*C channels), BatchNorm
over K*C channels (exactly K independent BatchNorms) and one batched head, built on every call from the
members' own parameters, so gradients, optimisers and checkpoints stay per member.

Channel block k of every activation belongs to member k, so the pooled features come out as PDD's [B, K*C]
(member k owns columns k*C..(k+1)*C-1) with no reshuffle. The members' forward hooks do not fire here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pdd.precision import autocast_enabled


def conv(convs: Sequence[nn.Conv2d], h: torch.Tensor, groups: int) -> torch.Tensor:
    """The K members' convolutions as one: their weights stacked along the output channels, `groups` = K when
    `h` holds K channel blocks (one per member), 1 when all members read the same input."""
    c = convs[0]
    weight = torch.cat([m.weight for m in convs])
    return F.conv2d(h, weight, None, c.stride, c.padding, c.dilation, groups)


def batch_norm(norms: Sequence[nn.BatchNorm2d], h: torch.Tensor, training: bool) -> torch.Tensor:
    """The K members' BatchNorms as one over K*C channels (per-channel statistics: each member's own), in
    fp32 under autocast; in training the members' running statistics are updated as their own modules would."""
    n = norms[0]
    mean = torch.cat([m.running_mean for m in norms])
    var = torch.cat([m.running_var for m in norms])
    weight = torch.cat([m.weight for m in norms])
    bias = torch.cat([m.bias for m in norms])
    if autocast_enabled(h.device.type):
        with torch.autocast(h.device.type, enabled=False):
            out = F.batch_norm(h.float(), mean, var, weight, bias, training, n.momentum, n.eps)
    else:
        out = F.batch_norm(h, mean, var, weight, bias, training, n.momentum, n.eps)
    if training:
        with torch.no_grad():
            size = n.num_features
            torch._foreach_copy_([m.running_mean for m in norms], list(mean.split(size)))
            torch._foreach_copy_([m.running_var for m in norms], list(var.split(size)))
            torch._foreach_add_([m.num_batches_tracked for m in norms], 1)
    return out


def _block(blocks: Sequence[nn.Module], h: torch.Tensor, k: int, training: bool) -> torch.Tensor:
    """K BasicBlocks as one (pdd.models.BasicBlock)."""
    out = F.relu(batch_norm([b.bn1 for b in blocks], conv([b.conv1 for b in blocks], h, k), training))
    out = batch_norm([b.bn2 for b in blocks], conv([b.conv2 for b in blocks], out, k), training)
    if len(blocks[0].shortcut):
        h = batch_norm([b.shortcut[1] for b in blocks], conv([b.shortcut[0] for b in blocks], h, k), training)
    return F.relu(out + h)


def _stacked_input(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The first layer's input and groups: x [B, C, H, W] shared by all members (groups 1), or [K, B, C, H, W]
    one input per member laid out as K channel blocks [B, K*C, H, W] (groups K)."""
    if x.dim() == 5:
        k, b = x.shape[:2]
        return x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:]), k
    return x, 1


def resnet_features(members: Sequence[nn.Module], x: torch.Tensor, training: bool) -> torch.Tensor:
    """Pooled features [B, K*C] of K `ResNetFeatures` members run as one network."""
    k = len(members)
    h, groups = _stacked_input(x)
    stems = [m.stem for m in members]
    h = F.relu(batch_norm([s[1] for s in stems], conv([s[0] for s in stems], h, groups), training))
    for blocks in zip(*(m.layers for m in members), strict=True):
        h = _block(blocks, h, k, training)
    return F.adaptive_avg_pool2d(h, 1).flatten(1)


def _vgg_run(members: Sequence[nn.Module], x: torch.Tensor, training: bool,
             stop: int | None = None) -> tuple[torch.Tensor, bool]:
    """K `VGGFeatures` members run as one network on x: (the last maps [B, K*C, H, W], False), or with `stop`
    (BatchNorm outputs counted from 0) that BatchNorm's output and True once it is reached."""
    k, index = len(members), 0
    h, groups = _stacked_input(x)
    for layers in zip(*(m.layers for m in members), strict=True):
        first = layers[0]
        if isinstance(first, nn.Conv2d):
            h, groups = conv(layers, h, groups), k
        elif isinstance(first, nn.BatchNorm2d):
            h = batch_norm(layers, h, training)
            if index == stop:
                return h, True
            index += 1
        else:  # ReLU, MaxPool2d: per channel, so the same module serves all K blocks
            h = first(h)
    return h, False


def vgg_features(members: Sequence[nn.Module], x: torch.Tensor, training: bool) -> torch.Tensor:
    """Pooled features [B, K*C] of K `VGGFeatures` members run as one network."""
    return F.adaptive_avg_pool2d(_vgg_run(members, x, training)[0], 1).flatten(1)


def heads(linears: Sequence[nn.Linear], features: torch.Tensor) -> torch.Tensor:
    """The K members' linear heads as one batched matmul: features [B, K*C] -> member logits [K, B, L]."""
    k = len(linears)
    b = features.shape[0]
    f = features.view(b, k, -1).transpose(0, 1)                                   # [K, B, C]
    weight = torch.stack([m.weight for m in linears]).transpose(1, 2)            # [K, C, L]
    bias = torch.stack([m.bias for m in linears]).unsqueeze(1)                   # [K, 1, L]
    return torch.baddbmm(bias, f, weight)


def _per_member(h: torch.Tensor, k: int) -> torch.Tensor:
    """[B, K*C, ...] (channel block k is member k's) -> [K, B, C, ...]."""
    return h.view(h.shape[0], k, -1, *h.shape[2:]).transpose(0, 1)


def resnet_feature_at(members: Sequence[nn.Module], linears: Sequence[nn.Linear], xs: torch.Tensor, layer: int,
                      training: bool) -> torch.Tensor:
    """Every member's DVERGE feature at `layer` (pdd.models.Ensemble.member_feature's numbering) from its own
    input xs [K, B, ...], as one network: [K, B, ...]; only the layers up to `layer` are computed."""
    k = len(members)
    h, groups = _stacked_input(xs)
    stems = [m.stem for m in members]
    h = batch_norm([s[1] for s in stems], conv([s[0] for s in stems], h, groups), training)
    if layer == 0:
        return _per_member(h, k)
    h, index = F.relu(h), 1
    for blocks in zip(*(m.layers for m in members), strict=True):
        mid = batch_norm([b.bn1 for b in blocks], conv([b.conv1 for b in blocks], h, k), training)
        if layer == index:
            return _per_member(mid, k)
        out = batch_norm([b.bn2 for b in blocks], conv([b.conv2 for b in blocks], F.relu(mid), k), training)
        if len(blocks[0].shortcut):
            h = batch_norm([b.shortcut[1] for b in blocks], conv([b.shortcut[0] for b in blocks], h, k), training)
        out = out + h
        if layer == index + 1:
            return _per_member(out, k)
        h, index = F.relu(out), index + 2
    return heads(linears, F.adaptive_avg_pool2d(h, 1).flatten(1))


def vgg_feature_at(members: Sequence[nn.Module], linears: Sequence[nn.Linear], xs: torch.Tensor, layer: int,
                   training: bool) -> torch.Tensor:
    """`resnet_feature_at` for VGG members: each BatchNorm's output, the last index the logits."""
    h, reached = _vgg_run(members, xs, training, stop=layer)
    return _per_member(h, len(members)) if reached else heads(linears, F.adaptive_avg_pool2d(h, 1).flatten(1))
