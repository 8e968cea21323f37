"""The Triton decoding kernels (xp/model/kernels.py), checked on CPU under Triton's interpreter.

Each check (tests/kernels_helpers.py) runs in its own process with TRITON_INTERPRET=1, so the rest
of the suite keeps the plain PyTorch path. On a GPU the same kernels are compared with PyTorch by
bench/kernels.py and by the CUDA tests of tests/test_engine_speed.py.

Run: pytest tests/test_kernels.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xp.model import kernels
from xp.model.tiny import random_model, tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("check", ["attention", "rope_write_kv", "skinny_linear", "model_kernel_path",
                                   "model_skinny_shapes"])
def test_kernel_under_the_triton_interpreter(check):
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run([sys.executable, "tests/kernels_helpers.py", check], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr


def test_kernels_are_importable_and_off_for_plain_cpu_tensors():
    assert kernels.triton is not None, "triton is a test dependency: the interpreter checks need it"
    assert not kernels.available(torch.zeros(1))   # no interpreter in this process: CPU keeps PyTorch


def test_fused_projections_give_the_same_logits():
    """q/k/v fused and gate/up interleaved (the CUDA fast path's weights) change no output on CPU."""
    model = random_model(tiny_config(), seed=1).eval()
    ids = torch.randint(10, 900, (2, 7), generator=torch.Generator().manual_seed(0))
    before = model(ids, model.new_cache(2, 16), "causal")
    model.fuse_projections()
    mlp = model.encoder.layers[0].mlp
    assert torch.equal(mlp.gate_up_weight[0::2], mlp.gate_proj.weight)   # interleaved rows, views
    assert mlp.gate_proj.weight.data_ptr() == mlp.gate_up_weight.data_ptr()
    after = model(ids, model.new_cache(2, 16), "causal")
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
