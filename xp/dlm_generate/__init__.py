"""Decoding engines and their registry.

`get_engine(name, bundle)` returns an object with `generate(requests, on_commit=None)` (see
`types.py`). Names: `ar_native`, `nemotron` (diffusion; linear speculation per request) and
`nemotron_mixed`, plus the upstream aliases.
"""

from __future__ import annotations

from xp.dlm_generate.ar_native import ArNativeEngine
from xp.dlm_generate.nemotron import NemotronEngine, make_mixed_engine
from xp.dlm_generate.types import (CommitCallback, Engine, GenerationError, GenerationRequest,
                                   GenerationResult)

_FACTORIES = {"ar_native": ArNativeEngine, "nemotron": NemotronEngine, "nemotron_mixed": make_mixed_engine}
ALIASES = {"ar-native": "ar_native", "nemotron_native": "nemotron", "nemotron_diffusion": "nemotron",
           "mix_ar_dlm": "nemotron_mixed"}
ENGINE_NAMES: tuple[str, ...] = tuple(_FACTORIES) + tuple(ALIASES)


def canonical_engine_name(name: str) -> str:
    """The registered name for `name` or an alias; GenerationError listing valid names otherwise."""
    key = ALIASES.get(name, name)
    if key not in _FACTORIES:
        raise GenerationError(f"unknown engine {name!r}; valid engines: {', '.join(ENGINE_NAMES)}")
    return key


def get_engine(name: str, bundle) -> Engine:
    return _FACTORIES[canonical_engine_name(name)](bundle)


__all__ = ["ENGINE_NAMES", "ALIASES", "CommitCallback", "Engine", "GenerationError", "GenerationRequest",
           "GenerationResult", "canonical_engine_name", "get_engine"]
