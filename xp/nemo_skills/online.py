"""Fetch a benchmark's raw files from the official sources into a folder laid out like the raw copy.

Used by prepare_data when no --from-raw folder is given. Everything here needs the network
(HF hub or raw GitHub URLs); failures become one OnlineFetchError line that names the offline way.
"""

from __future__ import annotations

import csv
import json
import urllib.request
from pathlib import Path

URL_TIMEOUT_S = 60


class OnlineFetchError(RuntimeError):
    pass


def _download(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as resp:
        dest.write_bytes(resp.read())


def _hf(name: str, config: str | None = None, split: str | None = None):
    from datasets import load_dataset  # heavy import; only when actually fetching

    return load_dataset(name, config, split=split) if config else load_dataset(name, split=split)


def _write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(dict(row), default=str) + "\n")


def _mmlu(raw: Path) -> None:
    ds = _hf("cais/mmlu", "all", "test")
    by_subject: dict[str, list] = {}
    for row in ds:
        by_subject.setdefault(row["subject"], []).append([row["question"], *row["choices"], row["answer"]])
    for subject, rows in by_subject.items():
        path = raw / "mmlu" / "test" / f"{subject}_test.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)


def _gpqa(raw: Path) -> None:
    ds = _hf("Idavidrein/gpqa", "gpqa_diamond", "train")
    path = raw / "gpqa" / "gpqa_diamond.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=ds.column_names)
        writer.writeheader()
        writer.writerows(ds)


def _mbpp(raw: Path) -> None:
    rows = []
    for split in ("train", "test", "validation", "prompt"):
        rows.extend(_hf("google-research-datasets/mbpp", "full", split))
    _write_jsonl(raw / "mbpp" / "mbpp.jsonl", sorted(rows, key=lambda r: r["task_id"]))


def _aime25(raw: Path) -> None:
    for part in ("I", "II"):
        _write_jsonl(raw / "aime2025" / f"aime2025-{part}.jsonl", _hf("opencompass/AIME2025", f"AIME2025-{part}", "test"))


FETCHERS = {
    "gsm8k": lambda raw, url: _download(url, raw / "gsm8k" / "test.jsonl"),
    "ifeval": lambda raw, url: _download(url, raw / "ifeval" / "input_data.jsonl"),
    "math-500": lambda raw, url: _write_jsonl(raw / "math500" / "test.jsonl", _hf("HuggingFaceH4/MATH-500", None, "test")),
    # that set holds AIME 2022-2024: keep the 30 problems of 2024 (their AoPS urls name the year)
    "aime24": lambda raw, url: _write_jsonl(raw / "aime2024" / "test.jsonl",
                                            [r for r in _hf("AI-MO/aimo-validation-aime", None, "train")
                                             if "2024_AIME" in str(r.get("url", ""))]),
    "aime25": lambda raw, url: _aime25(raw),
    "human-eval": lambda raw, url: _write_jsonl(raw / "humaneval" / "HumanEval.jsonl", _hf("openai/openai_humaneval", None, "test")),
    "mbpp": lambda raw, url: _mbpp(raw),
    "mmlu": lambda raw, url: _mmlu(raw),
    "gpqa": lambda raw, url: _gpqa(raw),
    "livecodebench-cpp": lambda raw, url: _write_jsonl(raw / "livecodebench-cpp" / "test.jsonl",
                                                        _hf("nvidia/LiveCodeBench-CPP", None, "v6_2408_2505")),
}

# Where the online fetch writes, when it differs from the registry's raw path (uncompressed copies).
ONLINE_RAW_OVERRIDES = {"human-eval": ["humaneval/HumanEval.jsonl"], "gpqa": ["gpqa/gpqa_diamond.csv"]}


def fetch(bench: str, online: str, raw: Path) -> list[str] | None:
    """Download `bench` into `raw`; returns raw-relative paths to use instead of the registry's, or None."""
    if bench not in FETCHERS:
        raise OnlineFetchError(f"{bench}: no online source known; prepare it with --from-raw RAWDIR")
    try:
        FETCHERS[bench](raw, online)
    except Exception as exc:  # network, auth (gpqa is gated), missing package: one clear line
        raise OnlineFetchError(
            f"{bench}: could not fetch {online.split(' ')[0]} ({type(exc).__name__}: {str(exc)[:200]}). "
            f"Offline? Prepare from a local copy: python -m xp.nemo_skills.prepare_data {bench} "
            f"--data-dir DIR --from-raw RAWDIR") from None
    return ONLINE_RAW_OVERRIDES.get(bench)
