"""pytest plugin for the GPU run: `load_model` defaults to CUDA and bf16 (NLD_TEST_DTYPE to change).

    PYTHONPATH=.:tests pytest -p engine_speed_gpu_plugin tests/test_engines_equivalence.py

Lets the engines' greedy-equality tests run unchanged on the device in bf16 (bench/engine.py's
companion); in-memory test models stay on the CPU.
"""

from __future__ import annotations

import os

import xp.model
import xp.model.loader

_load_model = xp.model.loader.load_model


def load_model(*args, **kwargs):
    kwargs["device"] = "cuda"
    kwargs["dtype"] = os.environ.get("NLD_TEST_DTYPE", "bf16")
    return _load_model(*args, **kwargs)


xp.model.load_model = load_model
xp.model.loader.load_model = load_model
