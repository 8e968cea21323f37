"""Experiment and eval-dir names (the upstream rule, so results land where users expect)."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, Mapping


def fmt_number(value: float | int) -> str:
    """0 -> '0', 0.9 -> '0.9', 1.0 -> '1': stable text for names."""
    return f"{float(value):g}"


def experiment_name(v: Mapping[str, Any]) -> str:
    """<model with / as __>_<mode>_tok<T>_blk<B>_temp<t>[_lora_<dir>][_draft_only][_thr<x>]

    A ':' (as in builtin:tiny) becomes '_' too: it separates paths in container mounts and PYTHONPATH."""
    name = f"{v['model'].replace('/', '__').replace(':', '_')}_{v['mode']}_tok{v['tokens']}_blk{v['block_length']}"
    name += f"_temp{fmt_number(v['temperature'])}"
    if v.get("lora") and v.get("lora_path"):
        name += f"_lora_{Path(v['lora_path']).name}"
        if v.get("draft_lora_only"):
            name += "_draft_only"
    if v.get("threshold") is not None:
        name += f"_thr{fmt_number(v['threshold'])}"
    return name


def eval_dir(out_dir: str, exp_name: str, now: _dt.datetime | None = None) -> Path:
    """$OUT_DIR/<exp>/hf_base/eval_<YYYYmmdd_HHMMSS>; a suffix keeps two runs in one second apart."""
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d_%H%M%S")
    base = Path(out_dir) / exp_name / "hf_base"
    candidate, n = base / f"eval_{stamp}", 2
    while candidate.exists():
        candidate, n = base / f"eval_{stamp}_{n}", n + 1
    return candidate
