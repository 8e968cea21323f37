"""The NeMo-Skills output layout: eval-results/<bench>/output[-rs<seed>].jsonl, its `-async`
stream (one finished sample per line with `_async_position`, for per-sample resume), `.done`,
and metrics.json. Final files are written to a temp name and renamed, never left partial."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Optional

POSITION_KEY = "_async_position"


def bench_dir(output_dir: Path, bench: str) -> Path:
    return Path(output_dir) / "eval-results" / bench


def output_name(seed: Optional[int]) -> str:
    return "output.jsonl" if seed is None else f"output-rs{seed}.jsonl"


def done_marker(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def async_path(path: Path) -> Path:
    return path.with_name(path.name + "-async")


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_jsonl_atomic(path: Path, rows: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_async(path: Path) -> dict[int, dict]:
    """Finished samples by position. A torn last line (crash mid-write) is ignored; a position
    written twice keeps the first record, so the final file never has duplicates."""
    done: dict[int, dict] = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get(POSITION_KEY), int):
                done.setdefault(rec[POSITION_KEY], rec)
    return done


class AsyncWriter:
    """Appends finished samples to `<output>-async`, one flushed line each."""

    def __init__(self, output: Path):
        self.path = async_path(output)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_torn_tail()
        self._f = open(self.path, "a", encoding="utf-8")

    def _repair_torn_tail(self) -> None:
        # A crash mid-line leaves no trailing newline; start our lines on a fresh one.
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    with open(self.path, "a", encoding="utf-8") as g:
                        g.write("\n")

    def append(self, position: int, row: dict) -> None:
        self._f.write(json.dumps({**row, POSITION_KEY: position}, ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def finalize(output: Path, n_rows: int, grades: Optional[dict[int, dict]] = None) -> list[dict]:
    """Reorder the async stream into `output` (input order) with each row's grader fields merged
    in, delete the stream, touch `.done`."""
    grades = grades or {}
    done = read_async(async_path(output))
    missing = [i for i in range(n_rows) if i not in done]
    if missing:
        raise RuntimeError(f"{output}: {len(missing)} samples are not finished (first: {missing[:5]})")
    rows = [{**{k: v for k, v in done[i].items() if k != POSITION_KEY}, **grades.get(i, {})} for i in range(n_rows)]
    write_jsonl_atomic(output, rows)
    async_path(output).unlink()
    done_marker(output).touch()
    return rows


_OUTPUT_RE = re.compile(r"^output(-rs(\d+))?\.jsonl$")


def find_outputs(directory: Path) -> list[tuple[Optional[int], Path]]:
    """Final output files of one benchmark folder as (seed, path), seeds ascending."""
    found = []
    for path in sorted(Path(directory).glob("output*.jsonl")):
        m = _OUTPUT_RE.match(path.name)
        if m:
            found.append((int(m.group(2)) if m.group(2) else None, path))
    seeds = [s for s, _ in found]
    if None in seeds and len(seeds) > 1:
        raise ValueError(f"{directory} has both output.jsonl and output-rs*.jsonl: the evaluation was done "
                         "multiple times with different sampling parameters; move one set away")
    return sorted(found, key=lambda sp: -1 if sp[0] is None else sp[0])


def write_metrics(directory: Path, metrics: dict) -> Path:
    path = Path(directory) / "metrics.json"
    write_text_atomic(path, json.dumps(metrics, indent=2) + "\n")
    return path
