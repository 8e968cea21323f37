"""evaluate.py on the tiny checkpoint: gsm8k --limit 5 in each mode writes the NeMo-Skills layout
and prints the summary line; bad input is a one-line error."""

from __future__ import annotations

import json
import sys

import pytest

from nemo_skills_helpers import REPO

sys.path.insert(0, str(REPO))
import evaluate  # noqa: E402  (the top-level script)


@pytest.mark.parametrize("mode", ["ar", "dlm", "linear_spec"])
def test_gsm8k_limit5_each_mode(tiny_ckpt, tmp_path, capsys, mode):
    argv = ["--model", str(tiny_ckpt), "--mode", mode, "--tasks", "gsm8k", "--limit", "5", "--max-new-tokens", "16",
            "--device", "cpu", "--dtype", "fp32", "--batch-size", "2", "--output-dir", str(tmp_path)]
    if mode == "linear_spec":
        argv += ["--lora", str(tiny_ckpt / "linear_spec_lora")]
    assert evaluate.main(argv) == 0
    printed = capsys.readouterr().out
    summary = [line for line in printed.splitlines() if line.startswith("gsm8k acc=")]
    assert len(summary) == 1 and "avg_tok=" in summary[0] and "avg_nfe=" in summary[0] and "TPF=" in summary[0]
    assert summary[0].endswith("(5 problems)")
    out = tmp_path / "eval-results" / "gsm8k"
    assert (out / "output.jsonl.done").exists() and not (out / "output.jsonl-async").exists()
    rows = [json.loads(line) for line in open(out / "output.jsonl")]
    assert len(rows) == 5
    for r in rows:
        assert 0 < r["num_generated_tokens"] <= 16 and r["nfe"] >= 1
        assert {"problem", "expected_answer", "generation", "finish_reason", "predicted_answer", "symbolic_correct",
                "generation_start_time", "generation_end_time"} <= set(r)
        if mode == "ar":
            assert r["nfe"] == r["num_generated_tokens"]
    metrics = json.load(open(out / "metrics.json"))["gsm8k"]["pass@1"]
    assert metrics["num_entries"] == 5 and "average_nfe" in metrics and "tpf" in metrics
    settings = json.load(open(out / "generation_settings.json"))
    assert settings["block_length"] == {"ar": 1, "dlm": 8, "linear_spec": 32}[mode]
    assert settings["threshold"] == {"ar": None, "dlm": 0.9, "linear_spec": 0.0}[mode]
    # a rerun finds the finished output and only recomputes metrics
    assert evaluate.main(argv) == 0
    assert [json.loads(line) for line in open(out / "output.jsonl")] == rows


def test_bad_input_is_a_clear_error(tiny_ckpt, tmp_path, capsys):
    assert evaluate.main(["--model", str(tiny_ckpt), "--tasks", "gsm8k", "--limit", "0"]) == 2
    assert "--limit must be a positive integer" in capsys.readouterr().err
    assert evaluate.main(["--model", str(tiny_ckpt), "--lora", str(tmp_path / "nope")]) != 0
    assert "does not exist" in capsys.readouterr().err
    rc = evaluate.main(["--model", str(tiny_ckpt), "--tasks", "mmlu", "--device", "cpu", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "prepare_data mmlu" in err and "Traceback" not in err
    assert evaluate.main(["--model", str(tmp_path / "no-model"), "--device", "cpu"]) == 1
    assert capsys.readouterr().err.startswith("error:")
