"""`--client nemo-skills`: run NeMo-Skills' own generate and summarize modules against our server,
into the same layout (DIR/eval-results/<bench>/output[-rs<seed>].jsonl, .done, metrics.json).

Needs the `nemo_skills` package (NeMo-Skills is not on PyPI: install it from its git repository,
e.g. in the container image). The benchmark arguments come from NeMo-Skills' own dataset modules
(GENERATION_ARGS / EVAL_ARGS), the data from our prepared data dir. Diffusion knobs travel as
`++inference.extra_body.*`, which reach the server as top-level JSON fields.
"""

from __future__ import annotations

import importlib
import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional

from xp.nemo_skills import results
from xp.nemo_skills.data import data_file
from xp.nemo_skills.http_client import HttpSettings
from xp.nemo_skills.registry import BenchmarkRun
from xp.nemo_skills.runner import DecodingSettings


class NemoSkillsMissing(RuntimeError):
    pass


def _bench_args(bench: str) -> list[str]:
    module = importlib.import_module(f"nemo_skills.dataset.{bench}")
    text = " ".join(getattr(module, name, "") for name in ("GENERATION_ARGS", "EVAL_ARGS"))
    return shlex.split(text)


def generate_command(run: BenchmarkRun, seed: Optional[int], data_dir: Path, output: Path, hs: HttpSettings,
                     dec: DecodingSettings, concurrency: int, limit: Optional[int]) -> list[str]:
    base = hs.server.rstrip("/")
    base = base if base.endswith("/v1") else base + "/v1"
    cmd = [sys.executable, "-m", "nemo_skills.inference.generate",
           f"++input_file={data_file(run.spec, data_dir)}", f"++output_file={output}", "++skip_filled=True",
           "++server.server_type=vllm", f"++server.base_url={base}", f"++server.model={hs.model}",
           f"++max_concurrent_requests={concurrency}", *_bench_args(run.spec.name)]
    temperature = dec.temperature if dec.temperature is not None else (0.0 if seed is None else 0.7)
    cmd.append(f"++inference.temperature={temperature}")
    if seed is not None:
        cmd += [f"++inference.random_seed={seed}", "++inference.top_p=0.95", "++inference.top_k=-1"]
    if dec.max_tokens:
        cmd.append(f"++inference.tokens_to_generate={dec.max_tokens}")
    if limit:
        cmd.append(f"++max_samples={limit}")
    extra = {"block_length": dec.block_length, "threshold": dec.threshold,
             "max_thinking_tokens": dec.max_thinking_tokens,
             "linear_speculation": dec.linear_speculation or None, "draft_lora_only": dec.draft_lora_only or None}
    cmd += [f"++inference.extra_body.{k}={v}" for k, v in extra.items() if v is not None]
    if dec.enable_thinking:
        cmd.append("++inference.extra_body.chat_template_kwargs.enable_thinking=true")
    return cmd


def run_nemo_skills(runs: list[BenchmarkRun], data_dir: Path, output_dir: Path, hs: HttpSettings,
                    dec: DecodingSettings, concurrency: int, limit: Optional[int]) -> int:
    if importlib.util.find_spec("nemo_skills") is None:
        raise NemoSkillsMissing("--client nemo-skills needs the nemo_skills package, which is not importable here; "
                                "install NeMo-Skills from its git repository (it is not on PyPI) or use the "
                                "default --client native")
    failed = 0
    for run in runs:
        bdir = results.bench_dir(output_dir, run.spec.name)
        bdir.mkdir(parents=True, exist_ok=True)
        for seed in run.seeds:
            output = bdir / results.output_name(seed)
            if results.done_marker(output).exists():
                continue
            cmd = generate_command(run, seed, data_dir, output, hs, dec, concurrency, limit)
            if subprocess.run(cmd).returncode != 0:
                failed += 1
                break
            results.done_marker(output).touch()
        else:
            summarize = [sys.executable, "-m", "nemo_skills.pipeline.summarize_results", str(bdir.parent),
                         "--benchmarks", run.spec.name, "--save_metrics_path", str(bdir / "metrics.json")]
            failed += subprocess.run(summarize).returncode != 0
    return 1 if failed else 0
