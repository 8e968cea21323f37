"""python -m xp.nemo_skills.prepare_data BENCH... --data-dir DIR [--from-raw RAWDIR]

Writes DIR/<bench>/<split>.jsonl for each benchmark. With --from-raw, reads local raw copies laid
out like the shared data folder (gsm8k/test.jsonl, humaneval/HumanEval.jsonl.gz, mmlu/test/*.csv...);
without it, downloads from the official sources (HF datasets / raw GitHub files).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Optional

from xp.nemo_skills import online
from xp.nemo_skills.data import data_file
from xp.nemo_skills.preparers import RawDataError, get_preparer, write_jsonl_atomic
from xp.nemo_skills.registry import BenchmarkSpec, RegistryError, load_registry


def prepare_one(spec: BenchmarkSpec, data_dir: Path, raw_dir: Optional[Path]) -> tuple[Path, int]:
    """Prepare one benchmark; returns (written file, row count)."""
    with tempfile.TemporaryDirectory(prefix=f"nld-{spec.name}-") as tmp:
        raw_rel = list(spec.raw)
        if raw_dir is None and raw_rel:  # no raw files (a generated benchmark): nothing to fetch
            raw_dir = Path(tmp)
            raw_rel = online.fetch(spec.name, spec.online, raw_dir) or raw_rel
        paths = [raw_dir / rel for rel in raw_rel]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise RawDataError(f"{spec.name}: raw file(s) not found: {', '.join(missing)} "
                               f"(expected under --from-raw the layout {', '.join(spec.raw)})")
        try:
            rows = get_preparer(spec.preparer)(paths)
        except (KeyError, ValueError, IndexError) as exc:
            if isinstance(exc, RawDataError):
                raise
            raise RawDataError(f"{spec.name}: raw data in {raw_dir} does not look like the expected files "
                               f"({type(exc).__name__}: {exc})") from None
    if not rows:
        raise RawDataError(f"{spec.name}: the raw files gave no rows")
    out = data_file(spec, data_dir)
    write_jsonl_atomic(out, rows)
    return out, len(rows)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xp.nemo_skills.prepare_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmarks", nargs="+", help="benchmark names (or 'all' for the whole registry)")
    parser.add_argument("--data-dir", required=True, help="output folder: DIR/<bench>/<split>.jsonl")
    parser.add_argument("--from-raw", default=None, help="local raw copies (layout of the shared data folder)")
    parser.add_argument("--registry", default=None, help="benchmark registry YAML (default configs/benchmarks.yaml)")
    args = parser.parse_args(argv)
    try:
        registry = load_registry(args.registry)
        names = list(registry.benchmarks) if args.benchmarks == ["all"] else args.benchmarks
        specs = [registry.get(n) for n in names]
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    raw_dir = Path(args.from_raw) if args.from_raw else None
    if raw_dir is not None and not raw_dir.is_dir():
        print(f"error: --from-raw {raw_dir} is not a folder", file=sys.stderr)
        return 2
    failed = 0
    for spec in specs:
        try:
            out, n = prepare_one(spec, Path(args.data_dir), raw_dir)
            print(f"{spec.name}: {n} rows -> {out}")
        except (RawDataError, online.OnlineFetchError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
