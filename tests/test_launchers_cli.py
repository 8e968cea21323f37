"""eval.sh front end: flags, defaults from configs/modes.yaml, one-line validation errors, --dry-run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from launchers_helpers import ROOT, eval_sh

TINY = ["--model", "builtin:tiny", "--gpus", "0"]

MISTAKES = [
    (["--mode", "diffusion"], "unknown --mode 'diffusion'"),
    (["--mode", "dlm", "--bogus-flag"], "unknown option '--bogus-flag'"),
    (["--model", "x"], "--mode is required"),
    (["--mode"], "--mode: expected one argument"),
    (["--mode", "dlm", "--benchmarks", "gsm8k:x"], "malformed entry 'gsm8k:x'"),
    (["--mode", "dlm", "--benchmarks", "gsm8k:1:2"], "malformed entry"),
    (["--mode", "dlm", "--benchmarks", "gsm8k,,mbpp"], "malformed entry ''"),
    (["--mode", "dlm", "--benchmarks", "nosuchbench:1"], "unknown benchmark 'nosuchbench'"),
    (["--mode", "dlm", "--benchmarks", "gsm8k:1,gsm8k:2"], "listed twice"),
    (["--mode", "dlm", "--tokens", "lots"], "--tokens expects a positive integer, got 'lots'"),
    (["--mode", "dlm", "--gpus", "-1"], "--gpus expects a non-negative integer"),
    (["--mode", "dlm", "--temperature", "hot"], "--temperature expects a number, got 'hot'"),
    (["--mode", "dlm", "--threshold", "1.5"], "--threshold expects a number between 0 and 1"),
    (["--mode", "dlm", "--limit", "0"], "--limit expects a positive integer"),
    (["--mode", "dlm", "--batch-size", "2.5"], "--batch-size expects a positive integer"),
    (["--mode", "dlm", "--time", "four hours"], "--time expects a SLURM time"),
    (["--mode", "dlm", "--executor", "cloud"], "--executor must be slurm, local or auto"),
    (["--mode", "dlm", "--enable-thinking", "maybe"], "--enable-thinking expects true or false"),
    (["--mode", "linear_spec", "--lora", "--lora-path", "/nonexistent/adapter"], "LoRA directory not found"),
    (["--mode", "dlm", "--lora"], "--lora applies only to --mode linear_spec"),
    (["--mode", "dlm", "--executor", "slurm", "--account", "acct"], "no container image"),
    (["--mode", "dlm", "--executor", "slurm", "--container-image", "/nonexistent/img.sqsh", "--account", "a"],
     "container image file not found"),
    (["--mode", "dlm", "--executor", "slurm", "--container-image", "none"], "no SLURM account"),
    (["--mode", "dlm", "--executor", "local", "--container-image", "img.sqsh"], "needs SLURM with pyxis"),
    (["--mode", "dlm", "--data-dir", "/nonexistent/data"], "--data-dir: directory not found"),
    (["--status", "/nonexistent/evaldir"], "no plan.json in /nonexistent/evaldir"),
    (["--status", "/tmp", "--mode", "dlm"], "take no other flags"),
]


@pytest.mark.parametrize("args,message", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_each_mistake_is_one_line_and_nonzero(tmp_path, args, message):
    res = eval_sh(*args, cwd=tmp_path)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("eval.sh: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in res.stdout + res.stderr
    assert list(tmp_path.iterdir()) == [], "a rejected command must not create anything"


def test_help_lists_every_flag_with_examples(tmp_path):
    res = eval_sh("--help", cwd=tmp_path)
    assert res.returncode == 0
    flags = ("--mode --model --tokenizer --exp-name --lora --no-lora --lora-path --draft-lora-only --benchmarks "
             "--tokens --steps --block-length --threshold --temperature --max-thinking-tokens --max-model-len "
             "--max-pos-emb --batch-size --enable-thinking --no-eos-early-stop --gpus --partition --account "
             "--time --out-dir --dry-run --help --executor --container-image --container-mounts --limit "
             "--data-dir --status --rerun-failed").split()
    missing = [f for f in flags if f not in res.stdout]
    assert not missing, missing
    assert "Examples:" in res.stdout and "bash eval.sh --mode dlm" in res.stdout


def _dry(tmp_path: Path, *args: str, env: dict | None = None) -> str:
    res = eval_sh(*args, "--dry-run", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert list(tmp_path.iterdir()) == [], "--dry-run must not write anything"
    return res.stdout


def _setting(out: str, key: str) -> str:
    line = next(l for l in out.splitlines() if l.strip().startswith(key + ":"))
    return line.split(":", 1)[1].strip()


@pytest.mark.parametrize("mode", ["dlm", "ar", "linear_spec"])
def test_defaults_come_from_modes_yaml(tmp_path, mode):
    table = yaml.safe_load((ROOT / "configs" / "modes.yaml").read_text())
    want = {**table["shared"], **table["modes"][mode]}
    out = _dry(tmp_path, "--mode", mode, "--executor", "local")
    assert _setting(out, "Block length") == str(want["block_length"])
    assert _setting(out, "Max model len") == str(want["max_model_len"])
    assert _setting(out, "Engine") == want["engine"]
    assert _setting(out, "Tokens") == str(want["tokens"])
    assert _setting(out, "Model") == want["model"]
    thr = "(none)" if want["threshold"] is None else f"{float(want['threshold']):g}"
    assert _setting(out, "Threshold") == thr
    groups = _setting(out, "Benchmarks")
    assert groups.count("group ") == 10 and "group 9: livecodebench-cpp" in groups


def test_experiment_name_rule(tmp_path):
    out = _dry(tmp_path, "--mode", "dlm", "--model", "org/My-Model", "--tokens", "512", "--executor", "local")
    assert _setting(out, "Exp name") == "org__My-Model_dlm_tok512_blk8_temp0_thr0.9"
    out = _dry(tmp_path, "--mode", "ar", "--model", "org/M", "--temperature", "0.7", "--executor", "local")
    assert _setting(out, "Exp name") == "org__M_ar_tok8192_blk1_temp0.7"
    lora = tmp_path.parent / f"{tmp_path.name}_adapter"
    lora.mkdir()
    out = _dry(tmp_path, "--mode", "linear_spec", "--model", "org/M", "--lora", "--lora-path", str(lora),
               "--draft-lora-only", "true", "--executor", "local")
    assert _setting(out, "Exp name") == f"org__M_linear_spec_tok8192_blk32_temp0_lora_{lora.name}_draft_only_thr0"
    out = _dry(tmp_path, "--mode", "dlm", "--exp-name", "mine", "--out-dir", "/x/out", "--executor", "local")
    assert _setting(out, "Eval dir").startswith("/x/out/mine/hf_base/eval_")


def test_dry_run_prints_every_script_with_container_options(tmp_path):
    env = {"CONTAINER_IMAGE": "nvcr.io#nvidia/pytorch:24.05-py3", "ACCOUNT": "myacct", "OUT_DIR": "/shared/out"}
    out = _dry(tmp_path, "--mode", "dlm", *TINY, "--benchmarks", "gsm8k:1,math-500:2", "--executor", "slurm",
               "--container-mounts", "/data:/data", "--partition", "gpu", "--time", "01:00:00", env=env)
    scripts = out.split("----- ")[1:]
    assert len(scripts) == 2
    for n, script in enumerate(scripts):
        assert f"sbatch_group{n}.sh -----" in script
        assert "#SBATCH --nodes=1" in script and '#SBATCH --account="myacct"' in script
        assert '#SBATCH --partition="gpu"' in script and "#SBATCH --time=01:00:00" in script
        assert f'pipeline_group{n}.log"' in script and "gpus-per-node" not in script  # --gpus 0
        assert '--container-image="nvcr.io#nvidia/pytorch:24.05-py3"' in script
        assert '--container-mounts="/data:/data,' in script and "--no-container-mount-home" in script
        assert f"-m launchers.job --plan /shared/out/" in script and f"--group {n}" in script
    assert "--benchmarks math-500:2" in scripts[1]
    assert "[dry-run] nothing was written and nothing was submitted." in out


def test_gpu_jobs_request_gpus_per_node(tmp_path):
    out = _dry(tmp_path, "--mode", "ar", "--gpus", "4", "--benchmarks", "gsm8k:1", "--executor", "local")
    assert "#SBATCH --gpus-per-node=4" in out and "--device cuda --dtype bf16" in out
    assert "#SBATCH --cpus-per-task=32" in out and "#SBATCH --mem=0" in out  # 8 CPUs per GPU, whole memory


def test_plan_round_trip(tmp_path):
    """plan.json carries every resolved setting; loading it gives the same settings back."""
    from launchers.config import load_benchmarks, load_modes
    from launchers.naming import eval_dir
    from launchers.plan import load_plan, new_plan, save_plan
    from launchers.resolve import resolve_settings
    from launchers.cli import parse

    raw = parse(["--mode", "linear_spec", "--benchmarks", "gsm8k:2,mbpp", "--limit", "3", "--gpus", "0"])
    s = resolve_settings(raw, {"OUT_DIR": str(tmp_path)}, load_modes(), load_benchmarks(), tmp_path)
    plan = new_plan(s, eval_dir(s.out_dir, s.exp_name))
    save_plan(plan)
    again = load_plan(plan.eval_dir)
    assert again.settings == s and [g.bench.spec for g in again.groups] == ["gsm8k:2", "mbpp:0"]
    assert json.loads((plan.eval_dir / "plan.json").read_text())["groups"][1]["script"] == "sbatch_group1.sh"


@pytest.mark.parametrize("bench,metrics,want", [
    ("gsm8k", {"pass@1": {"symbolic_correct": 40.0, "no_answer": 10.0, "tpf": 2.5}}, (40.0, 2.5)),
    ("human-eval", {"pass@1": {"passing_base_tests": 30.0, "passing_plus_tests": 20.0, "tpf": 1.5}}, (30.0, 1.5)),
    ("ifeval", {"pass@1": {"prompt_strict_accuracy": 50.0, "average_score": 55.0}}, (55.0, None)),
    ("mbpp", {"pass@2": {"passing_base_tests": 9.0}, "pass@1": {"passing_base_tests": 7.0, "tpf": 3.0}}, (7.0, 3.0)),
])
def test_status_reads_the_headline_metric(tmp_path, bench, metrics, want):
    from launchers.status import primary_metric, read_metrics
    path = tmp_path / "eval-results" / bench / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({bench: metrics}))
    assert read_metrics(tmp_path, bench, primary_metric(bench)) == want
    assert read_metrics(tmp_path, "math-500", primary_metric("math-500")) == (None, None)  # not run yet
