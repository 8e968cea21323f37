"""Fetching for staging: one clear line when the hub is unreachable, the repo missing or gated, the disk too
small or the connection cut; nothing partial ever looks complete; reruns resume and skip what is there.
The hub is either a closed port (no network) or FakeHub, a local stand-in for the real hub (unreachable here)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from launchers_helpers import ROOT, eval_sh
from stage_helpers import COMMIT, REPO, FakeHub, closed_port, repo_files

FETCH_SCRIPT = ROOT / "scripts" / "fetch_bundled_lora.sh"
STAGE_MODEL = ["--stage", "--mode", "dlm", "--model", REPO, "--only", "model"]


def _script(*args: str, env: dict, cwd: Path):
    import subprocess
    import sys

    full = {**os.environ, "NLD_PYTHON": sys.executable, **env}
    return subprocess.run(["bash", str(FETCH_SCRIPT), *args], env=full, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def _hf(tmp_path: Path, endpoint: str) -> dict:
    return {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


@pytest.fixture
def fake_hub(tiny_ckpt):
    hub = FakeHub(repo_files(tiny_ckpt))
    hub.url = hub.start()
    yield hub
    hub.stop()


def test_loader_patterns_are_the_ones_staging_fetches():
    from launchers.staging_hub import LOADER_PATTERNS
    from xp.model.loader import HUB_PATTERNS

    assert LOADER_PATTERNS == HUB_PATTERNS


def test_unreachable_hub_gives_one_line_and_leaves_nothing(tmp_path):
    env = _hf(tmp_path, f"http://127.0.0.1:{closed_port()}")
    res = eval_sh(*STAGE_MODEL, cwd=tmp_path, env=env)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"eval.sh --stage: error: cannot reach the Hugging Face hub at {env['HF_ENDPOINT']} ([Errno 111] Connection "
        "refused): stage on a machine with internet (the login node), or check HF_ENDPOINT / the proxy settings"]
    assert f"MISSING  model {REPO}" in res.stdout
    assert _files_under(tmp_path / "hf") == []

    script = _script("--model", REPO, "--dest", str(tmp_path / "lora"), env=env, cwd=tmp_path)
    assert script.returncode == 1
    lines = script.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fetch_bundled_lora.sh: error: cannot reach the Hugging Face hub")
    assert not (tmp_path / "lora").exists() and _files_under(tmp_path / "hf") == []


@pytest.mark.parametrize("status, says", [(404, f"{REPO} was not found on"), (403, f"{REPO} is a gated repo")])
def test_missing_or_gated_repo_gives_one_line(tmp_path, fake_hub, status, says):
    fake_hub.status = status
    env = _hf(tmp_path, fake_hub.url)
    res = eval_sh(*STAGE_MODEL, cwd=tmp_path, env=env)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1 and says in lines[0], res.stderr
    script = _script("--model", REPO, "--dest", str(tmp_path / "lora"), env=env, cwd=tmp_path)
    lines = script.stderr.strip().splitlines()
    assert script.returncode == 1 and len(lines) == 1 and says in lines[0], script.stderr
    assert not (tmp_path / "lora").exists()
    assert not list((tmp_path / "hf").rglob("snapshots/*/*"))


def test_stage_fetches_reports_sizes_and_a_rerun_fetches_nothing(tmp_path, fake_hub, tiny_ckpt):
    env = _hf(tmp_path, fake_hub.url)
    lora = tmp_path / "lora"
    flags = ["--stage", "--mode", "linear_spec", "--model", REPO, "--lora", "--lora-path", str(lora),
             "--only", "model,lora"]
    first = eval_sh(*flags, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"model {REPO} @ {COMMIT[:12]}: 0 file(s) already there (0 B), 7 to fetch" in first.stdout
    assert "    fetch model.safetensors (921.0 KB)" in first.stdout
    assert "Staging: complete" in first.stdout
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (lora / name).read_bytes() == (tiny_ckpt / "linear_spec_lora" / name).read_bytes()

    fake_hub.requests.clear()
    again = eval_sh(*flags, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert f"model {REPO} @ {COMMIT[:12]}: 7 file(s) already there" in again.stdout and "0 to fetch" in again.stdout
    assert f"lora {lora}: already there" in again.stdout
    assert not [r for r in fake_hub.requests if r.startswith("GET") and "/resolve/" in r]


def test_fetch_script_installs_the_adapter_atomically_with_a_stamp(tmp_path, fake_hub, tiny_ckpt):
    env = _hf(tmp_path, fake_hub.url)
    dest = tmp_path / "miscs" / "linear_spec_lora"
    res = _script("--model", REPO, "--dest", str(dest), env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(p.name for p in dest.iterdir()) == [".nld-staged.json", "adapter_config.json",
                                                     "adapter_model.safetensors"]
    stamp = json.loads((dest / ".nld-staged.json").read_text())
    want = (tiny_ckpt / "linear_spec_lora" / "adapter_model.safetensors").read_bytes()
    assert (dest / "adapter_model.safetensors").read_bytes() == want
    assert stamp["files"]["adapter_model.safetensors"]["size"] == len(want)
    assert stamp["source"] == f"{REPO}/linear_spec_lora@{COMMIT}"


def test_cut_download_is_never_complete_and_a_rerun_finishes_it(tmp_path, fake_hub):
    from launchers.staging_check import check_repo

    fake_hub.cut_after = 1000
    env = _hf(tmp_path, fake_hub.url)
    res = eval_sh(*STAGE_MODEL, cwd=tmp_path, env=env)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1 and "the connection dropped during the download" in lines[0], \
        res.stderr
    hub = tmp_path / "hf" / "hub"
    item = check_repo(hub, REPO, "model", "CMD")
    assert "model.safetensors: missing" in item.problems or any("partial download" in p for p in item.problems)
    snapshot = hub / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    assert not (snapshot / "model.safetensors").exists()

    fake_hub.cut_after = None
    res = eval_sh(*STAGE_MODEL, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 to fetch" in res.stdout and check_repo(hub, REPO, "model", "CMD").staged


def test_corrupt_download_is_caught_by_its_hash_and_removed(tmp_path, fake_hub):
    from launchers.staging_check import check_repo

    fake_hub.corrupt = {"tokenizer.json"}   # same size, wrong bytes: only the hash can tell
    env = _hf(tmp_path, fake_hub.url)
    res = eval_sh(*STAGE_MODEL, cwd=tmp_path, env=env)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert "corrupt download: tokenizer.json (hash" in lines[0] and "removed" in lines[0]
    hub = tmp_path / "hf" / "hub"
    assert check_repo(hub, REPO, "model", "CMD").problems == ("tokenizer.json: missing",)


def test_not_enough_disk_space_is_refused_before_downloading(tmp_path, fake_hub):
    fake_hub.claimed_sizes = {"model.safetensors": 1 << 60}   # an exabyte: no disk here has that much free
    env = _hf(tmp_path, fake_hub.url)
    res = eval_sh(*STAGE_MODEL, cwd=tmp_path, env=env)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"eval.sh --stage: error: not enough disk space in {tmp_path / 'hf' / 'hub'} for {REPO}")
    assert not [r for r in fake_hub.requests if r.startswith("GET") and "/resolve/" in r]
