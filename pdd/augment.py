"""Random crop (zero padding) and horizontal flip for a whole batch at once, on its device."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Per image: a random HxW crop of the zero-padded image and a flip with probability 1/2; x [B, C, H, W]."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (b, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = dx + torch.arange(w, device=x.device)
    flip = torch.rand(b, 1, device=x.device) < 0.5
    cols = torch.where(flip, cols.flip(1), cols).view(b, 1, 1, w)
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    channel = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[batch, channel, rows, cols]
