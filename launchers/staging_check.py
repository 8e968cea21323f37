"""Is everything a planned run needs already on disk? `check_staged(settings)` answers without the network.

Used by the planner (dry run and real submission) and by `eval.sh --stage` itself. Each item says
what is missing, exactly, and the command that stages it; jobs get HF_HUB_OFFLINE=1 and
HF_DATASETS_OFFLINE=1 only when every item is staged.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from launchers.config import PROJECT_DIR
from launchers.settings import Settings
from launchers.staging_hub import (file_problem, hub_cache, human, incomplete_blobs, is_hub_id, model_patterns,
                                   matching, partial_blob, read_listing, repo_folder, required_without_listing,
                                   snapshot_dir)

BUNDLED_LORA_DIR = PROJECT_DIR / "miscs" / "linear_spec_lora"
FETCH_LORA_SCRIPT = "bash scripts/fetch_bundled_lora.sh"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
LORA_STAMP = ".nld-staged.json"   # sizes and hashes of the adapter files, written by the stager
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@dataclass(frozen=True)
class Item:
    """One thing a run needs: staged when `problems` is empty."""

    kind: str                      # model | tokenizer | lora | data
    name: str                      # repo id, folder or benchmark
    where: str                     # where it is (or must be) on disk
    problems: tuple[str, ...] = ()
    command: str | None = None     # what stages it (None: nothing we can fetch)
    note: str = ""

    @property
    def staged(self) -> bool:
        return not self.problems


@dataclass
class StagingReport:
    items: list[Item] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(i.staged for i in self.items)

    @property
    def missing(self) -> list[Item]:
        return [i for i in self.items if not i.staged]

    def lines(self) -> list[str]:
        out = []
        for i in self.items:
            if i.staged:
                out.append(f"  ok       {i.kind} {i.name}: {i.where}" + (f" ({i.note})" if i.note else ""))
                continue
            out.append(f"  MISSING  {i.kind} {i.name}: {i.where}")
            out += [f"             - {p}" for p in i.problems]
            out.append(f"             stage it with: {i.command}" if i.command
                       else "             (a local path: nothing to download; fix the path)")
        verdict = ("complete: jobs run with HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1" if self.complete else
                   f"{len(self.missing)} item(s) not staged: jobs will need the network (or fail on offline nodes)")
        return [f"Staging: {verdict}", *out]


def check_staged(settings: Settings) -> StagingReport:
    s = settings
    cache = hub_cache(s.hf_home)
    report = StagingReport([_check_model(s, cache, "model", s.model)])
    if s.tokenizer and s.tokenizer != s.model:
        report.items.append(_check_model(s, cache, "tokenizer", s.tokenizer))
    if s.lora and s.lora_path:
        report.items.append(check_lora_dir(Path(s.lora_path), lora_command(s)))
    report.items += _check_data(s)
    return report


# ---- commands -------------------------------------------------------------------------------------
def stage_command(s: Settings, only: str | None = None, data_dir: str | None = None,
                  benchmarks: str | None = None) -> str:
    """`bash eval.sh --stage` with the flags of this run that matter for staging."""
    args = ["bash", "eval.sh", "--stage", "--mode", s.mode, "--model", s.model]
    if s.tokenizer:
        args += ["--tokenizer", s.tokenizer]
    if s.lora and s.lora_path:
        args += ["--lora", "--lora-path", s.lora_path]
    if only in (None, "data"):
        args += ["--benchmarks", benchmarks or ",".join(b.spec for b in s.benchmarks),
                 "--data-dir", data_dir or s.data_dir or "DIR"]
    if only:
        args += ["--only", only]
    return " ".join(shlex.quote(a) if a != "DIR" else a for a in args)


def lora_command(s: Settings) -> str:
    if s.lora_path and Path(s.lora_path) == BUNDLED_LORA_DIR:
        repo = s.model if is_hub_id(s.model) else None
        return FETCH_LORA_SCRIPT + (f" --model {shlex.quote(repo)}" if repo else "")
    return stage_command(s, "lora")


# ---- model / tokenizer ----------------------------------------------------------------------------
def _check_model(s: Settings, cache: Path, kind: str, name: str) -> Item:
    if name.startswith("builtin:"):
        return Item(kind, name, "built locally on first use", note="no download")
    if not is_hub_id(name):
        path = Path(name).expanduser()
        problems = local_checkpoint_problems(path, tokenizer_only=kind == "tokenizer")
        return Item(kind, name, str(path), tuple(problems), None, "local folder")
    return check_repo(cache, name, kind, stage_command(s, "model"))


def local_checkpoint_problems(path: Path, tokenizer_only: bool = False) -> list[str]:
    if not path.is_dir():
        return [f"folder {path} does not exist"]
    names = ["tokenizer_config.json"] if tokenizer_only else required_without_listing(path)
    return [f"{n}: {p}" for n in names if (p := file_problem(path / n, None))]


def check_repo(cache: Path, repo: str, kind: str, command: str, patterns: list[str] | None = None,
               fallback: list[str] | None = None) -> Item:
    """A hub repo in the cache: every file the loader asks for, present and of the right size.
    Without huggingface_hub's listing, `fallback` (default: a loadable checkpoint's files) is required."""
    snap = snapshot_dir(cache, repo)
    where = str(snap or repo_folder(cache, repo))
    if snap is None:
        partial = incomplete_blobs(cache, repo)
        why = f"not in the hub cache {cache} (no snapshot for 'main')"
        if partial:
            why += f"; {len(partial)} partial download(s) in blobs/ (rerun the stage command to resume)"
        return Item(kind, repo, where, (why,), command)
    listing = read_listing(cache, repo, snap.name)
    patterns = patterns or model_patterns()
    names = matching(listing, patterns) if listing else (fallback or required_without_listing(snap))
    problems = []
    for name in names:
        entry = listing.get(name) if listing else None
        why = file_problem(snap / name, entry)
        if why is None:
            continue
        part = partial_blob(cache, repo, entry) if why.startswith("missing") else None
        if part is not None:
            why = f"partial download ({part.stat().st_size} of {entry.size} bytes in {part.name})"
        problems.append(f"{name}: {why}")
    size = sum((snap / n).stat().st_size for n in names if (snap / n).exists())
    return Item(kind, repo, where, tuple(problems), command, f"{len(names)} files, {human(size)}")


# ---- LoRA adapter -----------------------------------------------------------------------------------
def check_lora_dir(path: Path, command: str) -> Item:
    if not path.is_dir():
        return Item("lora", "adapter", str(path), ("folder does not exist",), command)
    stamp = _read_stamp(path)
    problems = []
    for name in ADAPTER_FILES:
        f = path / name
        why = file_problem(f, None)
        if why is None and name in stamp and f.stat().st_size != stamp[name]["size"]:
            why = f"{f.stat().st_size} bytes, staged as {stamp[name]['size']}"
        if why:
            problems.append(f"{name}: {why}")
    size = sum((path / n).stat().st_size for n in ADAPTER_FILES if (path / n).exists())
    return Item("lora", "adapter", str(path), tuple(problems), command, human(size))


def _read_stamp(path: Path) -> dict:
    try:
        return json.loads((path / LORA_STAMP).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


# ---- benchmark data -----------------------------------------------------------------------------------
def data_root(s: Settings) -> Path:
    from xp.nemo_skills.data import resolve_data_dir

    return resolve_data_dir(s.data_dir)


def _check_data(s: Settings) -> list[Item]:
    from xp.nemo_skills.data import SAMPLE_DATA_DIR, data_file
    from xp.nemo_skills.registry import load_registry

    registry, root = load_registry(), data_root(s)
    items = []
    for bench in s.benchmarks:
        path = data_file(registry.get(bench.name), root)
        problems: tuple[str, ...] = ()
        if not path.is_file():
            problems = ("not prepared" + (" (the shipped sample has only a few benchmarks; stage into a --data-dir "
                                          "and pass the same --data-dir to the run)" if root == SAMPLE_DATA_DIR else ""),)
        elif path.stat().st_size == 0:
            problems = ("empty file",)
        note = human(path.stat().st_size) if path.is_file() else ""
        if note and root == SAMPLE_DATA_DIR:  # fine for a smoke run, wrong for a real score: say so
            rows = sum(1 for line in path.open() if line.strip())
            note += f"; the shipped sample ({rows} problems, not the full set): pass --data-dir for real runs"
        own_dir = str(root) if root != SAMPLE_DATA_DIR else None
        items.append(Item("data", bench.name, str(path), problems, stage_command(s, "data", own_dir, bench.spec), note))
    return items

