"""The command lines a group's job runs: workers, balancer, eval client (one place, also shown by --dry-run)."""
from __future__ import annotations

from pathlib import Path

from launchers.naming import fmt_number
from launchers.plan import Group, Plan

HOST = "127.0.0.1"


def nfe_log(plan: Plan, group: Group) -> Path:
    return plan.path(f"nfe_group{group.index}") / "nfe_log.jsonl"


def worker_cmd(plan: Plan, group: Group, worker: int, port: int) -> list[str]:
    s = plan.settings
    cmd = [plan.python, "-m", "xp.dlm_api.worker", "--model", s.model, "--host", HOST, "--port", str(port),
           "--engine", s.engine, "--batch-size", str(s.batch_size),
           "--device", "cuda" if s.gpus > 0 else "cpu", "--dtype", s.dtype,
           "--nfe-log", str(nfe_log(plan, group)), "--max-model-len", str(s.max_model_len),
           "--worker-id", f"g{group.index}w{worker}"]
    if s.tokenizer:
        cmd += ["--tokenizer", s.tokenizer]
    if s.lora_path:
        cmd += ["--lora-path", s.lora_path]
    cmd += ["--temperature", fmt_number(s.temperature)]
    if not s.eos_early_stop:
        cmd += ["--no-eos-early-stop"]
    if s.enable_thinking:
        cmd += ["--enable-thinking"]
    return cmd + _decoding_flags(plan)


def balancer_cmd(plan: Plan, worker_ports: list[int], port: int) -> list[str]:
    workers = ",".join(f"{HOST}:{p}" for p in worker_ports)
    return [plan.python, "-m", "xp.dlm_api.balancer", "--workers", workers, "--host", HOST, "--port", str(port)]


def client_cmd(plan: Plan, group: Group, balancer_port: int) -> list[str]:
    s = plan.settings
    # Two batches' worth of requests per worker: with exactly workers x batch in flight, a worker
    # starts its next batch before the client has refilled it and batches run half full
    # (mean 4.2 of 8 measured on 4 GPUs; 8.0 of 8 with this depth, docs/performance.md).
    in_flight = 2 * s.num_workers * s.batch_size
    cmd = [plan.python, "-m", "xp.nemo_skills.eval_dlm", "--server", f"http://{HOST}:{balancer_port}",
           "--benchmarks", group.bench.spec, "--output-dir", str(plan.path("results")),
           "--concurrency", str(in_flight), "--temperature", fmt_number(s.temperature),
           "--model", s.model, "--mode", s.mode]
    if s.data_dir:
        cmd += ["--data-dir", s.data_dir]
    if s.limit is not None:
        cmd += ["--limit", str(s.limit)]
    if s.enable_thinking:
        cmd += ["--enable-thinking"]
    return cmd + _decoding_flags(plan)


def _decoding_flags(plan: Plan) -> list[str]:
    """Decoding knobs both the worker (as defaults) and the client (per request) accept."""
    s = plan.settings
    flags = ["--max-tokens", str(s.tokens), "--block-length", str(s.block_length),
             "--max-thinking-tokens", str(s.max_thinking_tokens)]
    if s.threshold is not None:
        flags += ["--threshold", fmt_number(s.threshold)]
    if s.linear_speculation:
        flags += ["--linear-speculation"]
    if s.lora and s.draft_lora_only:
        flags += ["--draft-lora-only"]
    return flags


def worker_devices(gpus: int, visible: str | None) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES value per worker: the i-th allocated GPU, or None for CPU workers."""
    if gpus <= 0:
        return []
    allocated = [d for d in (visible or "").split(",") if d.strip()]
    if len(allocated) < gpus:
        allocated = [str(i) for i in range(gpus)]
    return allocated[:gpus]
