"""Find and read prepared benchmark data (DIR/<bench>/<split>.jsonl)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from xp.nemo_skills.registry import BenchmarkSpec

SAMPLE_DATA_DIR = Path(__file__).resolve().parent / "sample_data"


class MissingDataError(FileNotFoundError):
    """Prepared data is absent; the message names the benchmark and the command that prepares it."""


def resolve_data_dir(data_dir: Optional[str | Path]) -> Path:
    """--data-dir, else $NLD_DATA_DIR, else the small sample shipped with the package."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("NLD_DATA_DIR")
    return Path(env).expanduser() if env else SAMPLE_DATA_DIR


def data_file(spec: BenchmarkSpec, data_dir: Path) -> Path:
    return data_dir / spec.name / f"{spec.split}.jsonl"


def load_rows(spec: BenchmarkSpec, data_dir: Path, limit: Optional[int] = None) -> list[dict]:
    path = data_file(spec, data_dir)
    if not path.is_file():
        hint = " (the shipped sample covers only a few benchmarks)" if data_dir == SAMPLE_DATA_DIR else ""
        raise MissingDataError(
            f"no prepared data for '{spec.name}' at {path}{hint}; prepare it with: "
            f"python -m xp.nemo_skills.prepare_data {spec.name} --data-dir {data_dir if data_dir != SAMPLE_DATA_DIR else 'DIR'}"
            f" [--from-raw RAWDIR]")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise MissingDataError(f"{path}:{lineno} is not valid JSON; re-run prepare_data for '{spec.name}'") from None
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise MissingDataError(f"{path} is empty; re-run prepare_data for '{spec.name}'")
    return rows
