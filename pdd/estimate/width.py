"""Width scaling: the FLOPs an operator run on narrow models would have at the real widths."""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from pdd import data
from pdd.models import Ensemble, EnsembleSpec

NARROW_FROM = 16  # narrower configs are measured as they are: a narrower run gains little


class WidthDependent(ValueError):
    """An operator's FLOPs cannot be scaled from the narrow widths: the measurement runs at the real widths."""


ATEN = torch.ops.aten
CONVOLUTIONS = (ATEN.convolution, ATEN._convolution, ATEN.convolution_backward)


def parameter_shapes(dataset: str, arch: str, width: int) -> list[tuple[int, ...]]:
    """The shapes of an ensemble member's convolution and linear weights (built on the meta device: no memory,
    no initialisation), in a fixed order."""
    info = data.info(dataset)
    with torch.device("meta"):
        model = Ensemble(EnsembleSpec(arch, 2, info.num_classes, info.in_channels, width))
    return [tuple(w.shape) for w in [*model.members[0].parameters(), model.heads[0].weight] if w.dim() >= 2]


class WidthScale:
    """The FLOPs an operator run on narrow models would have on the real ones.

    Every counted operator is a convolution or a matrix product (forward, backward, or of a second-order
    backward) whose FLOPs are proportional to the product of one weight-shaped tensor's dimensions (a layer's
    weight, its gradient, or a product shaped like it) times dimensions that do not depend on the width
    (images, spatial size, class scores). So real FLOPs = narrow FLOPs x prod(real shape) / prod(narrow shape),
    the shapes paired through `shapes` (every narrow weight shape -> its real one; a matrix also transposed, a
    convolution's first two dimensions also swapped). Which tensor: a convolution's weight slot; where that is
    not a weight (the weight gradient of a strided convolution's double backward: a convolution whose output is
    [C_in, C_out, k', k'] with k' >= k), its output's two channel dimensions through `channels`; a matrix
    product's operand or output of a weight's shape, and if none is (ADP's Gram matrix of class scores), its
    FLOPs unchanged. A convolution on neither raises WidthDependent."""

    def __init__(self, shapes: dict[tuple[int, ...], tuple[int, ...]], channels: dict[int, int]):
        self.shapes, self.channels = shapes, channels

    @classmethod
    def between(cls, narrow: list[tuple[int, ...]], real: list[tuple[int, ...]]) -> WidthScale | None:
        """The scale from paired weight shapes, or None where a narrow shape or channel count would stand for
        two real ones (e.g. at width 1 with 1-channel images: the first and an inner 3x3 convolution)."""
        shapes: dict[tuple, tuple] = {}
        channels: dict[int, int] = {}
        for small, big in zip(narrow, real):
            pairs = [(small, big)]
            if len(small) == 2:
                pairs.append((small[::-1], big[::-1]))
            if len(small) == 4:
                pairs.append(((small[1], small[0], *small[2:]), (big[1], big[0], *big[2:])))
            for a, b in pairs:
                if shapes.setdefault(a, b) != b:
                    return None
            for a, b in zip(small[:2], big[:2]):
                if channels.setdefault(a, b) != b:
                    return None
        return cls(shapes, channels)

    def _ratio(self, small: tuple[int, ...], big: tuple[int, ...], flops: int) -> int | float:
        scaled = Fraction(flops) * math.prod(big) / math.prod(small)
        return int(scaled) if scaled.denominator == 1 else float(scaled)

    def __call__(self, func, args: tuple, out: object, flops: int) -> int | float:
        outs = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(o, torch.Tensor)]
        if func._overloadpacket in CONVOLUTIONS:
            weight = tuple(args[2 if func._overloadpacket is ATEN.convolution_backward else 1].shape)
            if weight in self.shapes:
                return self._ratio(weight, self.shapes[weight], flops)
            pair = tuple(outs[0].shape[:2]) if outs and outs[0].dim() == 4 else ()
            if len(pair) == 2 and all(c in self.channels for c in pair):
                return self._ratio(pair, tuple(self.channels[c] for c in pair), flops)
            shapes = [tuple(t.shape) for t in [*args, *outs] if isinstance(t, torch.Tensor)]
            raise WidthDependent(f"{func} on no weight-shaped tensor: {shapes}")
        for tensor in [*(a for a in reversed(args) if isinstance(a, torch.Tensor)), *outs]:
            shape = tuple(tensor.shape)
            if shape in self.shapes:
                return self._ratio(shape, self.shapes[shape], flops)
        return flops
