"""The chat scripts, run as a user runs them, on the tiny checkpoint (real model and engine code)."""

from __future__ import annotations

import shutil

import pytest

from chat_helpers import parse_stats, reply_text, run_script

MESSAGE = "What is 7 times 8?\n"
COMMON = ["--device", "cpu", "--max-new-tokens", "16"]


@pytest.fixture(scope="module")
def single_turn(tiny_ckpt):
    """stdout of each single-turn script answering the same message (run once per module)."""
    outputs = {}
    for mode in ("ar", "dlm", "linear_spec", "linear_spec_lora"):
        proc = run_script(f"chat_{mode}.py", ["--model", str(tiny_ckpt), *COMMON], MESSAGE)
        assert proc.returncode == 0, f"chat_{mode}.py failed:\n{proc.stderr}"
        outputs[mode] = proc.stdout
    return outputs


@pytest.mark.parametrize("mode", ["ar", "dlm", "linear_spec", "linear_spec_lora"])
def test_single_turn_prints_reply_nfe_and_tpf(single_turn, mode):
    stats = parse_stats(single_turn[mode])
    assert len(stats) == 1, single_turn[mode]
    s = stats[0]
    assert s.mode == mode
    assert s.tokens > 0 and s.nfe > 0
    assert s.tpf == pytest.approx(s.tokens / s.nfe, abs=0.006)
    assert reply_text(single_turn[mode]), "the reply text is missing"


def test_ar_commits_one_token_per_forward(single_turn):
    s = parse_stats(single_turn["ar"])[0]
    assert s.nfe == s.tokens and s.tpf == 1.0


def test_greedy_speculation_reproduces_ar(single_turn):
    """Verify-only emission: greedy linear speculation (with or without the draft LoRA) is AR."""
    ar = reply_text(single_turn["ar"])
    assert reply_text(single_turn["linear_spec"]) == ar
    assert reply_text(single_turn["linear_spec_lora"]) == ar


def test_empty_stdin_is_a_clear_error(tiny_ckpt):
    proc = run_script("chat_dlm.py", ["--model", str(tiny_ckpt), *COMMON], "")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no message on stdin")
    assert "Traceback" not in proc.stderr


def test_lora_mode_without_adapter_is_a_clear_error(tiny_ckpt, tmp_path):
    bare = tmp_path / "no_lora"
    shutil.copytree(tiny_ckpt, bare, ignore=shutil.ignore_patterns("linear_spec_lora"))
    proc = run_script("chat_linear_spec_lora.py", ["--model", str(bare), *COMMON], MESSAGE)
    assert proc.returncode == 2
    assert "--lora-path" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_model_dir_is_a_clear_error(tmp_path):
    proc = run_script("chat_ar.py", ["--model", str(tmp_path / "nowhere"), *COMMON], MESSAGE)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error:")
    assert "Traceback" not in proc.stderr


def test_multi_turn_session_switches_modes(tiny_ckpt):
    script = "\n".join([
        "Hello there",
        "/mode ar",
        "And now?",
        "/mode linear_spec",
        "/set block_length 4",
        "/show",
        "Once more",
        "/mode bogus",
        "/mode linear_spec_lora",
        "Last one",
        "/reset",
        "/quit",
        "never answered",
    ]) + "\n"
    proc = run_script("chat.py", ["--model", str(tiny_ckpt), *COMMON], script)
    assert proc.returncode == 0, proc.stderr
    stats = parse_stats(proc.stdout)
    assert [s.mode for s in stats] == ["dlm", "ar", "linear_spec", "linear_spec_lora"]
    assert all(s.tokens > 0 and s.nfe > 0 for s in stats)
    assert stats[1].tpf == 1.0
    assert "block_length=4" in proc.stdout and "4 messages" in proc.stdout
    assert "error: unknown mode 'bogus'" in proc.stderr
    assert "(history cleared)" in proc.stdout
    assert proc.stdout.count("assistant [") == 4
