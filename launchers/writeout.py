"""Writes plan.json and the scripts of a new evaluation, and describes the settings for the user."""
from __future__ import annotations

from pathlib import Path

from launchers.fsutil import atomic_write_text
from launchers.naming import fmt_number
from launchers.plan import Plan, save_plan
from launchers.render import render_script, uses_container


def write_plan_files(plan: Plan) -> None:
    """plan.json first (status and reruns read it), then one script per group."""
    plan.eval_dir.mkdir(parents=True, exist_ok=True)
    Path(plan.settings.hf_home).mkdir(parents=True, exist_ok=True)  # a container mount source must exist
    save_plan(plan)
    for group in plan.groups:
        atomic_write_text(plan.path(f"sbatch_group{group.index}.sh"), render_script(plan, group), mode=0o755)


def describe_settings(plan: Plan) -> str:
    s = plan.settings
    thr = "(none)" if s.threshold is None else fmt_number(s.threshold)
    workers = (f"{s.gpus} GPU worker(s), one per GPU" if s.gpus > 0 else f"{s.cpu_workers} CPU worker(s) (--gpus 0)")
    rows = [
        ("Mode", s.mode), ("Model", s.model), ("Tokenizer", s.tokenizer or "(model default)"),
        ("Exp name", s.exp_name), ("Engine", s.engine), ("Linear speculation", str(s.linear_speculation).lower()),
        ("LoRA", s.lora_path if s.lora else "off"), ("Draft LoRA only", str(s.draft_lora_only).lower()),
        ("Tokens", s.tokens), ("Steps", s.steps), ("Block length", s.block_length), ("Threshold", thr),
        ("Temperature", fmt_number(s.temperature)), ("Max thinking tokens", s.max_thinking_tokens),
        ("Max model len", s.max_model_len), ("Max pos emb", s.max_pos_emb or "(model default)"),
        ("Batch size", s.batch_size), ("Enable thinking", str(s.enable_thinking).lower()),
        ("EOS early stop", str(s.eos_early_stop).lower()), ("Workers / job", workers), ("Dtype", s.dtype),
        ("Limit", s.limit or "(all problems)"), ("Data dir", s.data_dir or "(client default)"),
        ("Executor", s.executor), ("Partition", s.partition), ("Account", s.account or "(unset)"),
        ("Time", s.time), ("Container image", s.container_image or "(unset)"),
        ("Container mounts", s.container_mounts or "(auto)" if uses_container(plan) else "(no container)"),
        ("HF_HOME", s.hf_home), ("Output base", s.out_dir), ("Eval dir", str(plan.eval_dir)),
        ("Benchmarks", ", ".join(f"group {i}: {b.spec}" for i, b in enumerate(s.benchmarks))),
    ]
    width = max(len(k) for k, _ in rows) + 1
    bar = "=" * 64
    return "\n".join([bar, f"  nld-eval: mode {s.mode}", bar, *(f"  {k + ':':<{width}} {v}" for k, v in rows), bar])

