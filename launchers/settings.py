"""Resolved settings of one evaluation: flags > environment > configs/modes.yaml."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class BenchSpec:
    """One `name:reps` entry of --benchmarks; it becomes one group (one job)."""

    name: str
    reps: int

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.reps}"


@dataclass(frozen=True)
class Settings:
    mode: str
    model: str
    tokenizer: str | None
    exp_name: str
    engine: str
    linear_speculation: bool
    lora: bool
    lora_path: str | None
    draft_lora_only: bool
    benchmarks: tuple[BenchSpec, ...]
    tokens: int
    steps: int
    block_length: int
    threshold: float | None
    temperature: float
    max_thinking_tokens: int
    max_model_len: int
    max_pos_emb: int | None
    batch_size: int
    enable_thinking: bool
    eos_early_stop: bool
    gpus: int
    cpu_workers: int
    partition: str
    account: str | None
    time: str
    executor: str
    container_image: str | None
    container_mounts: str | None
    limit: int | None
    data_dir: str | None
    out_dir: str
    hf_home: str
    dtype: str
    readiness_timeout_s: float
    stop_grace_s: float
    slurm_cpus_per_gpu: int | None = None
    slurm_mem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["benchmarks"] = [b.spec for b in self.benchmarks]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Settings":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["benchmarks"] = tuple(_spec_from_text(s) for s in data["benchmarks"])
        return cls(**values)

    @property
    def num_workers(self) -> int:
        return self.gpus if self.gpus > 0 else self.cpu_workers


def _spec_from_text(text: str) -> BenchSpec:
    name, _, reps = text.partition(":")
    return BenchSpec(name=name, reps=int(reps or 1))
