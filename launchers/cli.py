"""eval.sh's Python side: flags -> settings -> plan -> scripts -> submit (or --status / --rerun-failed)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from launchers import executors, rerun
from launchers.config import load_benchmarks, load_modes
from launchers.errors import UserError
from launchers.helptext import help_text
from launchers.naming import eval_dir as make_eval_dir
from launchers.plan import Plan, load_plan, new_plan
from launchers.preflight import check_submission
from launchers.render import render_script
from launchers.status import format_table, statuses
from launchers.writeout import describe_settings, write_plan_files

VALUE_FLAGS = ("mode", "model", "tokenizer", "exp-name", "lora-path", "benchmarks", "tokens", "steps",
               "block-length", "threshold", "temperature", "max-thinking-tokens", "max-model-len",
               "max-pos-emb", "batch-size", "gpus", "partition", "account", "time", "out-dir", "executor",
               "container-image", "container-mounts", "limit", "data-dir", "status", "rerun-failed",
               "sweep")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage + exit 2; we want one line
        raise UserError(message.replace("argument ", "") + " (see: bash eval.sh --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="eval.sh", add_help=False, allow_abbrev=False)
    for flag in VALUE_FLAGS:
        p.add_argument(f"--{flag}", dest=flag.replace("-", "_"), metavar="VALUE")
    p.add_argument("--lora", dest="lora", action="store_true", default=None)
    p.add_argument("--no-lora", dest="lora", action="store_false")
    p.add_argument("--draft-lora-only", nargs="?", const="true", default=None)
    p.add_argument("--enable-thinking", nargs="?", const="true", default=None)
    p.add_argument("--no-eos-early-stop", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("-h", "--help", action="store_true")
    return p


def parse(argv: Sequence[str]) -> dict[str, Any]:
    args, extra = build_parser().parse_known_args(list(argv))
    if extra:
        raise UserError(f"unknown option '{extra[0]}' (see: bash eval.sh --help)")
    return vars(args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--stage" in argv:  # staging has its own module and options (launchers/stage.py)
        from launchers.stage import main as stage_main
        return stage_main([a for a in argv if a != "--stage"])
    if "--report" in argv:  # the report has its own module and options (launchers/report.py)
        from launchers.report import main as report_main
        return report_main([a for a in argv if a != "--report"], prog="eval.sh")
    try:
        return _dispatch(parse(argv))
    except UserError as exc:
        print(f"eval.sh: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eval.sh: interrupted", file=sys.stderr)
        return 130


def _dispatch(raw: dict[str, Any]) -> int:
    if raw["help"]:
        print(help_text(load_modes(), load_benchmarks()))
        return 0
    if raw["status"] or raw["rerun_failed"]:
        return _maintenance(raw)
    if raw["sweep"] is not None:  # one experiment per grid point (launchers/sweep.py)
        from launchers.sweep import run_sweep
        return run_sweep(raw)
    return _new_evaluation(raw)


def _maintenance(raw: dict[str, Any]) -> int:
    given = [k for k, v in raw.items() if v not in (None, False) and k not in ("status", "rerun_failed", "dry_run")]
    if given or (raw["status"] and raw["rerun_failed"]):
        raise UserError("--status DIR and --rerun-failed DIR take no other flags (settings come from plan.json)"
                        + (f"; drop --{given[0].replace('_', '-')}" if given else ""))
    from launchers.sweep_index import is_sweep_dir  # a sweep dir: every point (launchers/sweep_status.py)
    if is_sweep_dir(raw["status"] or raw["rerun_failed"]):
        from launchers.sweep_status import sweep_rerun, sweep_status
        return sweep_status(raw["status"]) if raw["status"] else sweep_rerun(raw["rerun_failed"], raw["dry_run"])
    if raw["status"]:
        plan = load_plan(raw["status"])
        print(format_table(plan, statuses(plan)))
        return 0
    return rerun.rerun_failed(load_plan(raw["rerun_failed"]), dry_run=raw["dry_run"])


def _new_evaluation(raw: dict[str, Any]) -> int:
    from launchers.resolve import resolve_settings
    settings = resolve_settings(raw, os.environ, load_modes(), load_benchmarks(), Path.cwd())
    if not raw["dry_run"]:
        check_submission(settings)
    from launchers.staging_check import check_staged
    staging = check_staged(settings)
    plan = new_plan(settings, make_eval_dir(settings.out_dir, settings.exp_name), offline=staging.complete)
    print(describe_settings(plan))
    print("\n".join(staging.lines()))
    if raw["dry_run"]:
        _print_scripts(plan)
        print("[dry-run] nothing was written and nothing was submitted.")
        return 0
    write_plan_files(plan)
    executors.launch(plan, list(plan.groups))
    _print_next_steps(plan)
    return 0


def _print_scripts(plan: Plan) -> None:
    for group in plan.groups:
        print(f"----- {plan.path(f'sbatch_group{group.index}.sh')} -----")
        print(render_script(plan, group))


def _print_next_steps(plan: Plan) -> None:
    if plan.settings.executor == "local":
        print(format_table(plan, statuses(plan)))
        return
    print(f"follow progress:   bash eval.sh --status {plan.eval_dir}")
    print(f"rerun failures:    bash eval.sh --rerun-failed {plan.eval_dir}")
