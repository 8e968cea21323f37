"""Offline staging, no network: a hub cache built from the tiny checkpoint serves a planned run with
HF_HUB_OFFLINE=1; the planner names what is missing and the command that stages it; data staged from the
raw copies equals `prepare_data --from-raw`."""
from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launchers_helpers import eval_dir_from, eval_sh, marker
from stage_helpers import COMMIT, REPO, build_hub_cache, closed_port

RAW = Path("/work/shared/data")
RAW_BENCHES = ["gsm8k", "math-500", "aime24", "aime25", "human-eval", "mbpp", "mmlu", "gpqa", "ifeval"]


@pytest.fixture
def hub_env(tmp_path, tiny_ckpt):
    """HF_HOME with the tiny checkpoint cached as repo REPO; the hub endpoint is a closed port, so any
    attempt to use the network fails loudly instead of hanging."""
    hf_home = tmp_path / "hf"
    build_hub_cache(tiny_ckpt, hf_home / "hub")
    return {"HF_HOME": str(hf_home), "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def _run_flags(tmp_path: Path, *extra: str) -> list[str]:
    return ["--mode", "linear_spec", "--model", REPO, "--lora", "--lora-path", str(tmp_path / "lora"),
            "--gpus", "0", "--executor", "local", "--benchmarks", "gsm8k:1", "--data-dir", str(tmp_path / "data"),
            "--out-dir", str(tmp_path / "out"), *extra]


def _env(hub_env: dict, **more: str) -> dict:
    return {**hub_env, **more}


def test_staged_run_loads_everything_offline_and_planner_reports_nothing_missing(tmp_path, hub_env):
    # staging from the cache alone (HF_HUB_OFFLINE=1): the model is there, the adapter is copied out of the
    # cached linear_spec_lora/, the data is prepared from the raw copies
    staged = eval_sh("--stage", *_run_flags(tmp_path, "--from-raw", str(RAW)), cwd=tmp_path,
                     env=_env(hub_env, HF_HUB_OFFLINE="1"))
    assert staged.returncode == 0, staged.stdout + staged.stderr
    assert f"model {REPO}: already there" in staged.stdout and "lora " in staged.stdout
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()

    dry = eval_sh(*_run_flags(tmp_path, "--dry-run"), cwd=tmp_path, env=_env(hub_env))
    assert dry.returncode == 0, dry.stderr
    assert "Staging: complete" in dry.stdout and "MISSING" not in dry.stdout
    assert "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1" in dry.stdout

    run = eval_sh(*_run_flags(tmp_path, "--limit", "2", "--tokens", "32"), cwd=tmp_path, env=_env(hub_env),
                  timeout=300)
    eval_dir = eval_dir_from(run.stdout)
    log = (eval_dir / "pipeline_group0.log").read_text() if (eval_dir / "pipeline_group0.log").exists() else ""
    assert marker(eval_dir, "COMPLETED", 0) is not None, run.stdout[-2000:] + run.stderr + log[-4000:]
    script = (eval_dir / "sbatch_group0.sh").read_text()
    assert script.index("export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1") < script.index("exec ")
    assert json.loads((eval_dir / "plan.json").read_text())["offline"] is True
    metrics = json.loads((eval_dir / "results/eval-results/gsm8k/metrics.json").read_text())
    assert metrics["gsm8k"]["pass@1"]["num_entries"] == 2


def test_loader_reads_model_tokenizer_and_adapter_from_the_cache_with_offline_flags(tmp_path, hub_env):
    snapshot = Path(hub_env["HF_HOME"]) / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    code = ("import sys; from xp.model import load_model; "
            f"b = load_model({REPO!r}, tokenizer={REPO!r}, dtype='fp32', lora_path=sys.argv[1]); "
            "print(b.path, b.has_lora, len(b.tokenizer))")
    env = {**os.environ, **_env(hub_env, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")}
    res = subprocess.run([sys.executable, "-c", code, str(snapshot / "linear_spec_lora")], env=env,
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert res.returncode == 0, res.stderr
    path, has_lora, vocab = res.stdout.split()
    assert Path(path) == snapshot and has_lora == "True" and int(vocab) > 0


@pytest.mark.parametrize("victim, why", [
    ("model.safetensors", "model.safetensors: missing"),
    ("tokenizer.json", "tokenizer.json: missing"),
    ("linear_spec_lora/adapter_model.safetensors", "linear_spec_lora/adapter_model.safetensors: missing"),
])
def test_removed_file_is_named_with_the_command_that_fetches_it(tmp_path, hub_env, victim, why):
    snapshot = Path(hub_env["HF_HOME"]) / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    (snapshot / victim).unlink()
    flags = ["--mode", "dlm", "--model", REPO, "--gpus", "0", "--executor", "local", "--benchmarks", "gsm8k:1",
             "--out-dir", str(tmp_path / "out"), "--dry-run"]
    res = eval_sh(*flags, cwd=tmp_path, env=_env(hub_env))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    at = next(i for i, l in enumerate(lines) if l.strip().startswith(f"MISSING  model {REPO}"))
    assert lines[at + 1].strip() == f"- {why}"
    assert lines[at + 2].strip() == f"stage it with: bash eval.sh --stage --mode dlm --model {REPO} --only model"
    assert "HF_HUB_OFFLINE" not in res.stdout.split("Staging:")[1].split("MISSING")[0]
    assert "export HF_HUB_OFFLINE" not in res.stdout


def test_truncated_and_partial_files_never_count_as_staged(tmp_path, hub_env):
    from launchers.staging_check import check_repo

    hub = Path(hub_env["HF_HOME"]) / "hub"
    folder = hub / f"models--{REPO.replace('/', '--')}"
    weights = folder / "snapshots" / COMMIT / "model.safetensors"
    blob = weights.resolve()
    data = blob.read_bytes()
    assert check_repo(hub, REPO, "model", "CMD").staged

    blob.write_bytes(data[: len(data) // 2])        # truncated in place: size disagrees with the listing
    item = check_repo(hub, REPO, "model", "CMD")
    assert item.problems == (f"model.safetensors: {len(data) // 2} bytes, the hub listing says {len(data)}",)

    (folder / "trees" / f"{COMMIT}.json").unlink()  # no listing: the safetensors header still tells
    assert "its header says" in check_repo(hub, REPO, "model", "CMD").problems[0]

    blob.rename(blob.with_name(blob.name + ".incomplete"))  # as an interrupted huggingface_hub download leaves it
    (folder / "trees").joinpath(f"{COMMIT}.json").write_text(json.dumps({"format_version": 1, "files": {
        "model.safetensors": {"size": len(data), "blob_id": "0" * 40, "lfs_sha256": blob.name,
                              "lfs_size": len(data)}}}))
    item = check_repo(hub, REPO, "model", "CMD")
    assert item.problems == (f"model.safetensors: partial download ({len(data) // 2} of {len(data)} bytes in "
                             f"{blob.name}.incomplete)",)


def test_data_staged_from_raw_equals_prepare_data_from_raw_and_reruns_are_noops(tmp_path):
    staged, prepared = tmp_path / "staged", tmp_path / "prepared"
    bench = ",".join(f"{b}:1" for b in RAW_BENCHES)
    res = eval_sh("--stage", "--mode", "dlm", "--model", "builtin:tiny", "--benchmarks", bench, "--data-dir",
                  str(staged), "--from-raw", str(RAW), "--only", "data", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    ref = subprocess.run([sys.executable, "-m", "xp.nemo_skills.prepare_data", *RAW_BENCHES, "--data-dir",
                          str(prepared), "--from-raw", str(RAW)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert ref.returncode == 0, ref.stderr
    files = sorted(p.relative_to(prepared) for p in prepared.rglob("*") if p.is_file())
    assert len(files) == len(RAW_BENCHES)
    assert sorted(p.relative_to(staged) for p in staged.rglob("*") if p.is_file()) == files
    match, mismatch, errors = filecmp.cmpfiles(staged, prepared, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors, (mismatch, errors)

    mtimes = {f: (staged / f).stat().st_mtime_ns for f in files}
    again = eval_sh("--stage", "--mode", "dlm", "--model", "builtin:tiny", "--benchmarks", bench, "--data-dir",
                    str(staged), "--from-raw", str(RAW), "--only", "data", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already there") == len(RAW_BENCHES) and "prepared" not in again.stdout
    assert {f: (staged / f).stat().st_mtime_ns for f in files} == mtimes


def test_benchmark_without_raw_copy_fails_alone_with_one_line(tmp_path):
    res = eval_sh("--stage", "--mode", "dlm", "--model", "builtin:tiny", "--benchmarks",
                  "gsm8k:1,livecodebench-cpp:1", "--data-dir", str(tmp_path / "d"), "--from-raw", str(RAW),
                  "--only", "data", cwd=tmp_path)
    assert res.returncode == 1
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("eval.sh --stage: error: livecodebench-cpp:"), res.stderr
    assert "MISSING  data livecodebench-cpp" in res.stdout and "ok       data gsm8k" in res.stdout
    assert not (tmp_path / "d" / "livecodebench-cpp").exists()


def test_rerun_on_a_machine_without_network_accepts_what_is_cached(tmp_path, hub_env):
    res = eval_sh("--stage", "--mode", "dlm", "--model", REPO, "--only", "model", cwd=tmp_path, env=_env(hub_env))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"model {REPO}: already there (7 files" in res.stdout and "the hub is unreachable" in res.stdout
    (Path(hub_env["HF_HOME"]) / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT /
     "config.json").unlink()
    res = eval_sh("--stage", "--mode", "dlm", "--model", REPO, "--only", "model", cwd=tmp_path, env=_env(hub_env))
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "cannot reach the Hugging Face hub" in res.stderr and "- config.json: missing" in res.stdout
