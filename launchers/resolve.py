"""Turns raw flag strings into validated Settings; every mistake is one UserError line."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

from launchers.config import PROJECT_DIR, BenchmarkRegistry, ModeTable
from launchers.errors import UserError
from launchers.naming import experiment_name
from launchers.settings import BenchSpec, Settings

_TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def to_int(flag: str, value: Any, minimum: int = 1) -> int:
    text = str(value).strip()
    if not re.fullmatch(r"[+]?\d+", text) or int(text) < minimum:
        kind = "a positive integer" if minimum >= 1 else "a non-negative integer"
        raise UserError(f"{flag} expects {kind}, got '{value}'")
    return int(text)


def to_float(flag: str, value: Any, minimum: float = 0.0) -> float:
    try:
        number = float(str(value))
    except ValueError:
        raise UserError(f"{flag} expects a number, got '{value}'") from None
    if number != number or number < minimum or number in (float("inf"),):
        raise UserError(f"{flag} expects a number >= {minimum:g}, got '{value}'")
    return number


def to_bool(flag: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise UserError(f"{flag} expects true or false, got '{value}'")


def parse_benchmarks(text: str, registry: BenchmarkRegistry) -> tuple[BenchSpec, ...]:
    """'gsm8k:1,mbpp:2' -> specs; a bare name takes the registry's default repeats (NeMo-Skills rule)."""
    if not text or not text.strip():
        raise UserError("--benchmarks is empty: give 'name:reps,...', e.g. gsm8k:1,mbpp:1")
    specs: list[BenchSpec] = []
    for raw in text.split(","):
        entry = raw.strip()
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?::(\d+))?", entry)
        if not match:
            raise UserError(f"--benchmarks: malformed entry '{entry}': use name:reps with reps a "
                            "non-negative integer, e.g. gsm8k:1")
        name = match.group(1)
        if name not in registry.names:
            raise UserError(f"--benchmarks: unknown benchmark '{name}'; known: {', '.join(registry.names)}")
        if any(s.name == name for s in specs):
            raise UserError(f"--benchmarks: '{name}' is listed twice; list each benchmark once")
        reps = int(match.group(2)) if match.group(2) is not None else registry.default_reps[name]
        specs.append(BenchSpec(name=name, reps=reps))
    return tuple(specs)


def resolve_settings(raw: Mapping[str, Any], env: Mapping[str, str], table: ModeTable,
                     registry: BenchmarkRegistry, cwd: Path, require_lora_dir: bool = True) -> Settings:
    """raw: flag values as given (None = not given). env: the process environment.
    require_lora_dir=False: `eval.sh --stage` fills a missing LoRA folder instead of rejecting it."""
    if not raw.get("mode"):
        raise UserError("--mode is required: one of " + ", ".join(table.modes))
    d = table.for_mode(raw["mode"])
    pick = lambda key: raw.get(key) if raw.get(key) is not None else d.get(key)  # noqa: E731
    gpus = to_int("--gpus", pick("gpus"), minimum=0)
    lora, lora_path, draft_only = _resolve_lora(raw, d, require_lora_dir)
    values = dict(
        mode=raw["mode"], model=str(pick("model")), tokenizer=pick("tokenizer") or None,
        engine=d["engine"], linear_speculation=bool(d["linear_speculation"]),
        lora=lora, lora_path=lora_path, draft_lora_only=draft_only,
        benchmarks=parse_benchmarks(raw.get("benchmarks") or ",".join(registry.default_suite), registry),
        tokens=to_int("--tokens", pick("tokens")), steps=to_int("--steps", pick("steps")),
        block_length=to_int("--block-length", pick("block_length")),
        threshold=_threshold(pick("threshold")),
        temperature=to_float("--temperature", pick("temperature")),
        max_thinking_tokens=to_int("--max-thinking-tokens", pick("max_thinking_tokens"), minimum=0),
        max_model_len=to_int("--max-model-len", pick("max_model_len")),
        max_pos_emb=None if pick("max_pos_emb") is None else to_int("--max-pos-emb", pick("max_pos_emb")),
        batch_size=to_int("--batch-size", pick("batch_size")),
        enable_thinking=to_bool("--enable-thinking", pick("enable_thinking")),
        eos_early_stop=not raw.get("no_eos_early_stop") and bool(d["eos_early_stop"]),
        gpus=gpus, cpu_workers=to_int("cpu_workers (configs/modes.yaml)", d["cpu_workers"]),
        partition=raw.get("partition") or env.get("SERVER_PARTITION") or d["partition"],
        account=raw.get("account") or env.get("ACCOUNT") or None,
        time=_slurm_time(raw.get("time") or env.get("SERVER_TIME") or str(d["time"])),
        executor=(executor := _executor(raw.get("executor") or d["executor"])),
        # an exported CONTAINER_IMAGE is for SLURM jobs; the local executor runs on this machine's Python
        container_image=raw.get("container_image") or (env.get("CONTAINER_IMAGE") if executor == "slurm" else None)
        or None,
        container_mounts=raw.get("container_mounts") or None,
        limit=None if raw.get("limit") is None else to_int("--limit", raw["limit"]),
        data_dir=_data_dir(raw.get("data_dir"), cwd),
        out_dir=_abspath(raw.get("out_dir") or env.get("OUT_DIR") or d["out_dir"], cwd),
        hf_home=_abspath(env.get("HF_HOME") or d["hf_home"], cwd),
        dtype=d["dtype_gpu"] if gpus > 0 else d["dtype_cpu"],
        readiness_timeout_s=to_float("readiness_timeout_s", d["readiness_timeout_s"]),
        stop_grace_s=to_float("stop_grace_s", d["stop_grace_s"]),
        slurm_cpus_per_gpu=None if d.get("slurm_cpus_per_gpu") is None
        else to_int("slurm_cpus_per_gpu (configs/modes.yaml)", d["slurm_cpus_per_gpu"]),
        slurm_mem=None if d.get("slurm_mem") is None else str(d["slurm_mem"]),
    )
    values["exp_name"] = raw.get("exp_name") or experiment_name(values)
    _check_exp_name(values["exp_name"])
    return Settings(**values)


def _resolve_lora(raw: Mapping[str, Any], d: Mapping[str, Any],
                  require_dir: bool = True) -> tuple[bool, str | None, bool]:
    lora = bool(raw.get("lora"))
    draft_only = to_bool("--draft-lora-only", raw["draft_lora_only"] if raw.get("draft_lora_only")
                         is not None else d["draft_lora_only"])
    if not lora:
        return False, None, False
    if raw["mode"] != "linear_spec":
        raise UserError(f"--lora applies only to --mode linear_spec (got --mode {raw['mode']}); drop --lora")
    path = Path(raw.get("lora_path") or d["lora_path"]).expanduser()
    path = path if path.is_absolute() else (PROJECT_DIR / path if not raw.get("lora_path") else path.resolve())
    if not path.is_dir() and require_dir:
        fetch = "bash scripts/fetch_bundled_lora.sh" if not raw.get("lora_path") else "bash eval.sh --stage ..."
        raise UserError(f"--lora: LoRA directory not found: {path} (pass --lora-path DIR with the adapter, "
                        f"or fetch it: {fetch})")
    return True, str(path.resolve()), draft_only


def _threshold(value: Any) -> float | None:
    if value is None or str(value).strip().lower() in ("", "none", "null"):
        return None
    number = to_float("--threshold", value)
    if number > 1:
        raise UserError(f"--threshold expects a number between 0 and 1, got '{value}'")
    return number


def _slurm_time(value: str) -> str:
    if not _TIME_RE.fullmatch(value.strip()):
        raise UserError(f"--time expects a SLURM time like 04:00:00, 90 or 1-00:00:00, got '{value}'")
    return value.strip()


def _executor(value: str) -> str:
    if value not in ("slurm", "local", "auto"):
        raise UserError(f"--executor must be slurm, local or auto, got '{value}'")
    if value == "auto":
        return "slurm" if shutil.which("sbatch") else "local"
    return value


def _abspath(value: str, cwd: Path) -> str:
    path = Path(os.path.expanduser(str(value)))
    return str(path if path.is_absolute() else (cwd / path).resolve())


def _data_dir(value: str | None, cwd: Path) -> str | None:
    if not value:
        return None
    path = Path(_abspath(value, cwd))
    if not path.is_dir():
        raise UserError(f"--data-dir: directory not found: {path}")
    return str(path)


def _check_exp_name(name: str) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise UserError(f"--exp-name must be a plain name without '/', got '{name}'")
