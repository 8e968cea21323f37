"""Stage everything a run needs before any job starts: `bash eval.sh --stage <run flags>`.

    python -m launchers.stage --mode M [--model ID] [--tokenizer ID] [--lora [--lora-path DIR]]
        [--benchmarks LIST] --data-dir DIR [--from-raw RAWDIR] [--only model,lora,data]
        [--verify] [--refresh-data] [--dry-run]

Downloads the model snapshot (weights, config, tokenizer files, the adapter subfolder) into the HF
cache under HF_HOME, copies the LoRA adapter into --lora-path, and prepares every benchmark's data
into --data-dir (from the official sources, or from local raw copies with --from-raw). Prints what
is already there, what it fetched and the sizes. Safe to rerun: finished parts are skipped and
interrupted downloads resume. `--dry-run` only reports what is missing.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from launchers.config import load_benchmarks, load_modes
from launchers.errors import UserError
from launchers.settings import Settings
from launchers.staging_check import StagingReport, check_staged, lora_command, stage_command
from launchers.staging_fetch import StageError, fetch_repo, os_error_line
from launchers.staging_hub import DEFAULT_LORA_REPO, LORA_SUBFOLDER, human, hub_cache, is_hub_id, model_patterns
from launchers.staging_lora import stage_adapter

STEPS = ("model", "lora", "data")
PROG = "eval.sh --stage"


def own_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, add_help=False, allow_abbrev=False)
    p.add_argument("--from-raw", default=None)
    p.add_argument("--only", default=",".join(STEPS))
    p.add_argument("--verify", action="store_true")
    p.add_argument("--refresh-data", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if "-h" in argv or "--help" in argv:
            print(__doc__)
            return 0
        opts, rest = own_parser().parse_known_args(argv)
        only = _steps(opts.only)
        from launchers.cli import parse
        raw = parse(rest)
        settings = resolve_for_staging(raw, "data" in only)
        raw_dir = _raw_dir(opts.from_raw)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if raw["dry_run"]:
        report = _report(settings, only)
        print("\n".join(report.lines()))
        return 0 if report.complete else 1
    try:
        return Stager(settings, only, raw_dir, opts.verify, opts.refresh_data).run()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _steps(text: str) -> tuple[str, ...]:
    steps = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in steps if s not in STEPS]
    if bad or not steps:
        raise UserError(f"--only takes a comma list of {', '.join(STEPS)}, got '{text}'")
    return steps


def _raw_dir(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"--from-raw: folder not found: {path}")
    return path


def resolve_for_staging(raw: dict, needs_data_dir: bool) -> Settings:
    """The run's settings, except that the folders staging fills need not exist yet."""
    from launchers.resolve import resolve_settings

    raw = dict(raw)
    if not raw.get("data_dir") and os.environ.get("NLD_DATA_DIR"):
        raw["data_dir"] = os.environ["NLD_DATA_DIR"]
    if raw.get("data_dir"):
        try:
            Path(raw["data_dir"]).expanduser().mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--data-dir {raw['data_dir']}: {exc.strerror or exc}") from None
    elif needs_data_dir:
        raise UserError("staging data needs --data-dir DIR (where the prepared benchmarks go; pass the same "
                        "--data-dir to the run), or add --only model,lora")
    return resolve_settings(raw, os.environ, load_modes(), load_benchmarks(), Path.cwd(), require_lora_dir=False)


def _report(s: Settings, only: tuple[str, ...]) -> StagingReport:
    kinds = {"model": ("model", "tokenizer"), "lora": ("lora",), "data": ("data",)}
    wanted = {k for step in only for k in kinds[step]}
    report = check_staged(s)
    return StagingReport([i for i in report.items if i.kind in wanted])


class Stager:
    def __init__(self, settings: Settings, only: tuple[str, ...], raw_dir: Path | None, verify: bool,
                 refresh_data: bool):
        self.s, self.only, self.raw_dir = settings, only, raw_dir
        self.verify, self.refresh_data = verify, refresh_data
        self.cache = hub_cache(settings.hf_home)
        self.errors: list[str] = []
        self.hub_down = False

    def run(self) -> int:
        s = self.s
        print(f"Staging for --mode {s.mode}: HF cache {self.cache}"
              + (f", data dir {s.data_dir}" if "data" in self.only else "")
              + (f", raw copies {self.raw_dir}" if self.raw_dir and "data" in self.only else ""), flush=True)
        for step in self.only:
            for label, uses_hub, task in self._tasks(step):
                self._attempt(label, uses_hub, task)
        report = _report(s, self.only)
        print("\n".join(report.lines()))
        if self.errors or not report.complete:
            return 1
        print("All staged. Run the evaluation with the same flags, without --stage.")
        return 0

    def _attempt(self, label: str, uses_hub: bool, task: Callable[[], None]) -> None:
        if uses_hub and self.hub_down:
            print(f"{label}: skipped (the hub is unreachable)")
            return
        try:
            task()
        except StageError as exc:
            self._error(str(exc))
            self.hub_down = self.hub_down or exc.network
        except OSError as exc:
            self._error(os_error_line(exc, Path(exc.filename) if exc.filename else self.cache))

    def _error(self, line: str) -> None:
        self.errors.append(line)
        print(f"{PROG}: error: {line}", file=sys.stderr, flush=True)

    def _tasks(self, step: str) -> list[tuple[str, bool, Callable[[], None]]]:
        s = self.s
        if step == "model":
            repos = [(k, n) for k, n in (("model", s.model), ("tokenizer", s.tokenizer)) if n]
            repos = [(k, n) for i, (k, n) in enumerate(repos) if n not in [m for _, m in repos[:i]]]
            return [(f"{kind} {name}", is_hub_id(name), self._model_task(kind, name)) for kind, name in repos]
        if step == "lora":
            return [("lora", True, self._lora)] if s.lora and s.lora_path else []
        return [(f"data {b.name}", False, lambda b=b: self._data(b.name)) for b in s.benchmarks]

    def _model_task(self, kind: str, name: str) -> Callable[[], None]:
        def task() -> None:
            if is_hub_id(name):
                fetch_repo(self.cache, name, model_patterns(), kind, stage_command(self.s, "model"), _log,
                           verify_all=self.verify)
            elif name.startswith("builtin:"):
                print(f"{kind} {name}: built locally on first use, nothing to fetch")
            elif not Path(name).expanduser().is_dir():
                raise StageError(f"{kind} {name} is neither a folder nor a hub id (org/name): fix --{kind}")
            else:
                print(f"{kind} {name}: local folder, nothing to fetch")
        return task

    def _lora(self) -> None:
        repo = self.s.model if is_hub_id(self.s.model) else DEFAULT_LORA_REPO
        stage_adapter(self.cache, repo, LORA_SUBFOLDER, Path(self.s.lora_path), _log, lora_command(self.s))

    def _data(self, bench: str) -> None:
        from xp.nemo_skills import online
        from xp.nemo_skills.data import data_file
        from xp.nemo_skills.prepare_data import prepare_one
        from xp.nemo_skills.preparers import RawDataError
        from xp.nemo_skills.registry import load_registry

        spec, root = load_registry().get(bench), Path(self.s.data_dir)
        out = data_file(spec, root)
        if out.is_file() and out.stat().st_size > 0 and not self.refresh_data:
            print(f"data {bench}: already there ({_rows(out)} rows, {human(out.stat().st_size)}) {out}")
            return
        source = str(self.raw_dir) if self.raw_dir else "the official source"
        try:
            path, rows = prepare_one(spec, root, self.raw_dir)
        except (RawDataError, online.OnlineFetchError) as exc:
            raise StageError(str(exc)) from None
        print(f"data {bench}: prepared {rows} rows ({human(path.stat().st_size)}) from {source} -> {path}")


def _log(line: str) -> None:
    print(line, flush=True)


def _rows(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


if __name__ == "__main__":
    sys.exit(main())
