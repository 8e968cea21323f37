"""The elementwise pieces of a decoder layer, as plain PyTorch or compiled into fused kernels.

`EAGER_OPS` is the reference (and the CPU path). `compiled_ops()` wraps the same functions in
`torch.compile` for the CUDA fast path: each becomes one or two Triton kernels instead of 5-10
launches, which matters when a decode step is a few milliseconds of weight streaming. Inputs are
flattened to [tokens, ...] so only "one token" vs "many tokens" compile separately.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from xp.model.rope import apply_rope

log = logging.getLogger(__name__)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def add_rms_norm(x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add then norm: (x + delta, rms_norm(x + delta))."""
    x = x + delta
    return x, rms_norm(x, weight, eps)


def rope_qk(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
            q_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q [N, H, D], k [N, Hkv, D], cos/sin [N, 1, D], q_scale [N, 1, 1] -> rotated (and scaled) q, k."""
    return apply_rope(q, cos, sin) * q_scale, apply_rope(k, cos, sin)


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


@dataclass(frozen=True)
class Ops:
    rms_norm: Callable
    add_rms_norm: Callable
    rope_qk: Callable
    silu_mul: Callable


EAGER_OPS = Ops(rms_norm, add_rms_norm, rope_qk, silu_mul)


class _CompiledOrEager:
    """A compiled function that falls back to eager for good if compiling or running it fails."""

    def __init__(self, fn: Callable):
        self.eager = fn
        self.compiled = torch.compile(fn, dynamic=True, fullgraph=True)
        self.failed = False

    def __call__(self, *args):
        if not self.failed:
            try:
                return self.compiled(*args)
            except Exception as e:  # compiler unavailable or broken: stay correct, lose speed
                if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
                    raise
                log.warning("torch.compile of %s failed (%s: %s); using eager", self.eager.__name__,
                            type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                self.failed = True
        return self.eager(*args)


def compiled_ops() -> Ops:
    return Ops(*(_CompiledOrEager(f) for f in (rms_norm, add_rms_norm, rope_qk, silu_mul)))
