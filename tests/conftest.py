"""Shared fixtures (add yours below; never rewrite others')."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A tiny random-weight checkpoint in the real format, with a LoRA adapter in `linear_spec_lora/`.

    Built once per test session (seed 0). Load it with
    `load_model(str(tiny_ckpt), dtype="fp32", lora_path=str(tiny_ckpt / "linear_spec_lora"))`.
    """
    from xp.model.tiny import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", with_lora=True, seed=0)


@pytest.fixture(scope="session")
def api_cluster(tiny_ckpt, tmp_path_factory):
    """Two real workers and a balancer on 127.0.0.1, shared by the test_api_* modules (see
    tests/api_helpers.py for their flags)."""
    from tests.api_helpers import shared_cluster

    yield from shared_cluster(tiny_ckpt, tmp_path_factory)
