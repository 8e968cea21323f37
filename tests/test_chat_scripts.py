"""The chat scripts, run as a user runs them, on the tiny checkpoint (real model and engine code)."""

from __future__ import annotations

import io
import shutil

import pytest

from chat_helpers import parse_stats, reply_text, run_script, run_scripts

from chat.cli import run_single_turn

MESSAGE = "What is 7 times 8?\n"
COMMON = ["--device", "cpu", "--max-new-tokens", "16"]


@pytest.fixture(scope="module")
def single_turn(tiny_ckpt):
    """stdout of each single-turn script answering the same message (run once per module)."""
    modes = ("ar", "dlm", "linear_spec", "linear_spec_lora")
    procs = run_scripts([(f"chat_{m}.py", ["--model", str(tiny_ckpt), *COMMON], MESSAGE) for m in modes])
    for mode, proc in zip(modes, procs):
        assert proc.returncode == 0, f"chat_{mode}.py failed:\n{proc.stderr}"
    return {mode: proc.stdout for mode, proc in zip(modes, procs)}


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


def single_turn_in_process(mode, argv, stdin, monkeypatch, capsys):
    """The same entry point as chat_<mode>.py, in this process (error paths need no subprocess)."""
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = run_single_turn(mode, "test", argv)
    return rc, capsys.readouterr()


def test_empty_stdin_is_a_clear_error(tiny_ckpt, monkeypatch, capsys):
    rc, out = single_turn_in_process("dlm", ["--model", str(tiny_ckpt), *COMMON], "  \n", monkeypatch, capsys)
    assert rc == 2
    assert out.err.strip().splitlines()[-1].startswith("error: no message on stdin")


def test_lora_mode_without_adapter_is_a_clear_error(tiny_ckpt, tmp_path, monkeypatch, capsys):
    bare = tmp_path / "no_lora"
    shutil.copytree(tiny_ckpt, bare, ignore=shutil.ignore_patterns("linear_spec_lora"))
    rc, out = single_turn_in_process("linear_spec_lora", ["--model", str(bare), *COMMON], MESSAGE,
                                     monkeypatch, capsys)
    assert rc == 2
    assert out.err.startswith("error: mode 'linear_spec_lora' needs a draft LoRA adapter")
    assert "--lora-path" in out.err


@pytest.mark.parametrize("flag,value", [("--model", "/nowhere/at/all"), ("--lora-path", "/nowhere/lora")])
def test_missing_paths_are_clear_errors(tiny_ckpt, flag, value, monkeypatch, capsys):
    argv = ["--model", str(tiny_ckpt), *COMMON, flag, value]
    rc, out = single_turn_in_process("linear_spec", argv, MESSAGE, monkeypatch, capsys)
    assert rc == 2
    lines = out.err.strip().splitlines()
    assert lines[-1].startswith("error:") and value in lines[-1]


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
