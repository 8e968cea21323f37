"""The HTTP eval client against a real test server (EchoGoldServer, see nemo_skills_helpers):
output layout, request fields, retries, refused requests, a dead server, and per-sample resume
after a kill. End-to-end runs against the real worker are in the pipeline tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nemo_skills_helpers import REPO, EchoGoldServer, free_port, gold_answer_by_prompt
from xp.nemo_skills.data import SAMPLE_DATA_DIR, load_rows
from xp.nemo_skills.eval_dlm import main as eval_main
from xp.nemo_skills.registry import load_registry

TIMING = ("generation_start_time", "generation_end_time", "generation_time")


def gsm8k_server(limit=20, **kw) -> EchoGoldServer:
    rows = load_rows(load_registry().get("gsm8k"), SAMPLE_DATA_DIR, limit)
    answers = gold_answer_by_prompt(rows, "generic/math", lambda r: f"Thus \\boxed{{{r['expected_answer']}}}")
    return EchoGoldServer(lambda user: answers.get(user, "I do not know"), **kw)


def read(path):
    return [json.loads(line) for line in open(path)]


def test_layout_fields_and_metrics(tmp_path):
    he_rows = load_rows(load_registry().get("human-eval"), SAMPLE_DATA_DIR, 6)
    code = gold_answer_by_prompt(he_rows, "generic/codegen", lambda r: f"```python\n{r['prompt']}{r['canonical_solution']}```")
    math_rows = load_rows(load_registry().get("gsm8k"), SAMPLE_DATA_DIR, 6)
    maths = gold_answer_by_prompt(math_rows, "generic/math", lambda r: f"The answer: \\boxed{{{r['expected_answer']}}}")
    with EchoGoldServer(lambda u: code.get(u) or maths.get(u, "?")) as srv:
        rc = eval_main(["--server", srv.url, "--benchmarks", "gsm8k:2,human-eval", "--output-dir", str(tmp_path),
                        "--limit", "6", "--block-length", "8", "--threshold", "0.9", "--max-tokens", "64",
                        "--concurrency", "3"])
    assert rc == 0
    g = tmp_path / "eval-results" / "gsm8k"
    assert sorted(p.name for p in g.iterdir()) == ["generation_settings.json", "metrics.json", "output-rs0.jsonl",
                                                   "output-rs0.jsonl.done", "output-rs1.jsonl", "output-rs1.jsonl.done"]
    rows = read(g / "output-rs0.jsonl")
    assert [r["problem"] for r in rows] == [r["problem"] for r in math_rows]  # input order, all input fields
    for r in rows:
        assert set(r) >= {"problem", "expected_answer", "reference_solution", "generation", "num_generated_tokens",
                          "nfe", "finish_reason", *TIMING, "predicted_answer", "symbolic_correct"}
        assert r["symbolic_correct"] is True and "_async_position" not in r
    metrics = json.load(open(g / "metrics.json"))["gsm8k"]
    assert metrics["pass@1[avg-of-2]"]["symbolic_correct"] == 100.0 and metrics["majority@2"]["symbolic_correct"] == 100.0
    assert metrics["pass@2"]["tpf"] == 1.5 and metrics["pass@1"]["average_nfe"] == 2.0
    he = tmp_path / "eval-results" / "human-eval"
    assert (he / "output.jsonl.done").exists()
    assert json.load(open(he / "metrics.json"))["human-eval"]["pass@1"]["passing_base_tests"] == 100.0
    bodies = [b for b in srv.bodies if b["messages"][-1]["content"] in maths]
    assert {b["seed"] for b in bodies} == {0, 1} and {b["temperature"] for b in bodies} == {0.7}
    assert all(b["block_length"] == 8 and b["threshold"] == 0.9 and b["max_tokens"] == 64 for b in srv.bodies)
    he_bodies = [b for b in srv.bodies if b["messages"][-1]["content"] in code]
    assert all("seed" not in b and b["temperature"] == 0.0 for b in he_bodies)


def test_retries_recover_without_duplicates(tmp_path):
    with gsm8k_server(fail_first=2) as srv:
        rc = eval_main(["--server", srv.url + "/v1", "--benchmarks", "gsm8k:0", "--output-dir", str(tmp_path),
                        "--limit", "5", "--max-retries", "3"])
    assert rc == 0
    assert set(srv.attempts.values()) == {3} and set(srv.successes.values()) == {1}
    assert len(read(tmp_path / "eval-results" / "gsm8k" / "output.jsonl")) == 5


@pytest.mark.parametrize("health,argv,expected", [({"batch_size": 3}, [], 3), (None, ["--concurrency", "2"], 2)])
def test_concurrency_is_bounded_by_workers_x_batch(tmp_path, capsys, health, argv, expected):
    with gsm8k_server(delay_s=0.3, health=health) as srv:
        assert eval_main(["--server", srv.url, "--benchmarks", "gsm8k", "--output-dir", str(tmp_path),
                          "--limit", "12", *argv]) == 0
    assert srv.max_inflight == expected
    if health:
        assert "concurrency 3 (workers x batch size from /health)" in capsys.readouterr().err


def test_refused_request_is_recorded_not_fatal(tmp_path):
    with gsm8k_server(reject=lambda user: "Janet" in user) as srv:
        assert eval_main(["--server", srv.url, "--benchmarks", "gsm8k", "--output-dir", str(tmp_path), "--limit", "3"]) == 0
    rows = read(tmp_path / "eval-results" / "gsm8k" / "output.jsonl")
    assert rows[0]["error"].startswith("HTTP 400") and rows[0]["generation"] == "" and not rows[0]["symbolic_correct"]
    assert all("error" not in r and r["symbolic_correct"] for r in rows[1:])


def test_dead_server_fails_cleanly(tmp_path, capsys):
    rc = eval_main(["--server", f"http://127.0.0.1:{free_port()}", "--benchmarks", "gsm8k", "--output-dir",
                    str(tmp_path), "--limit", "2", "--max-retries", "1"])
    assert rc == 1
    out = tmp_path / "eval-results" / "gsm8k"
    assert not (out / "output.jsonl").exists() and not (out / "output.jsonl.done").exists()
    assert "gsm8k failed" in capsys.readouterr().err


@pytest.mark.parametrize("argv,msg", [(["--limit", "0"], "--limit must be a positive"),
                                      (["--threshold", "2"], "--threshold must be in"),
                                      (["--benchmarks", "nope"], "unknown benchmark 'nope'")])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, argv, msg):
    assert eval_main(["--server", "http://127.0.0.1:9", "--output-dir", str(tmp_path), *argv]) == 2
    assert msg in capsys.readouterr().err


def test_nemo_skills_client_missing_is_a_clear_error(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("nemo_skills") is not None:
        pytest.skip("nemo_skills is installed here; this checks the error users get without it")
    rc = eval_main(["--server", "http://127.0.0.1:9", "--output-dir", str(tmp_path), "--client", "nemo-skills",
                    "--benchmarks", "gsm8k"])
    assert rc == 2 and "nemo_skills package" in capsys.readouterr().err


def _client(url, out, limit=20):
    cmd = [sys.executable, "-m", "xp.nemo_skills.eval_dlm", "--server", url, "--benchmarks", "gsm8k:0",
           "--output-dir", str(out), "--limit", str(limit), "--concurrency", "2"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def test_killed_run_resumes_to_the_same_file(tmp_path):
    with gsm8k_server(delay_s=0.4) as srv:
        straight = _client(srv.url, tmp_path / "straight")
        assert straight.wait(120) == 0, straight.stderr.read().decode()
        srv.successes.clear()
        out = tmp_path / "resumed" / "eval-results" / "gsm8k"
        proc = _client(srv.url, tmp_path / "resumed")
        async_file = out / "output.jsonl-async"
        deadline = time.time() + 120
        while time.time() < deadline and (not async_file.exists() or len(async_file.read_text().splitlines()) < 6):
            assert proc.poll() is None, "the client finished before it could be killed"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done_before = {json.loads(line)["_async_position"] for line in async_file.read_text().splitlines()
                       if line.endswith("}")}
        assert 6 <= len(done_before) < 20 and not (out / "output.jsonl").exists()
        before = dict(srv.successes)
        again = _client(srv.url, tmp_path / "resumed")
        assert again.wait(120) == 0, again.stderr.read().decode()
    resumed = read(out / "output.jsonl")
    reference = read(tmp_path / "straight" / "eval-results" / "gsm8k" / "output.jsonl")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(resumed) == strip(reference)
    assert len({r["problem"] for r in resumed}) == 20
    assert not async_file.exists() and (out / "output.jsonl.done").exists()
    # samples finished before the kill were not asked for again
    rows = load_rows(load_registry().get("gsm8k"), SAMPLE_DATA_DIR, 20)
    from xp.nemo_skills.prompts import build_messages

    for pos in done_before:
        user = build_messages("generic/math", rows[pos])[-1]["content"]
        assert srv.successes[user] == before[user]


def test_hostile_code_does_not_harm_the_client(tmp_path):
    """Generated code that loops forever or eats memory is graded wrong in its sandbox; the client
    finishes the benchmark normally."""
    import yaml

    doc = yaml.safe_load((REPO / "configs" / "benchmarks.yaml").read_text())
    doc["benchmarks"]["human-eval"]["grader_args"] = {"timeout_s": 2, "memory_mb": 512}
    registry = tmp_path / "benchmarks.yaml"
    registry.write_text(yaml.safe_dump(doc))
    rows = load_rows(load_registry().get("human-eval"), SAMPLE_DATA_DIR, 3)
    bodies = ["{canonical}", "    while True:\n        pass\n", "    x = bytearray(1 << 40)\n"]
    texts = [f"```python\n{r['prompt']}{b.format(canonical=r['canonical_solution'])}```" for r, b in zip(rows, bodies)]
    answers = gold_answer_by_prompt(rows, "generic/codegen", lambda r: texts[rows.index(r)])
    start = time.monotonic()
    with EchoGoldServer(lambda u: answers[u]) as srv:
        rc = eval_main(["--server", srv.url, "--benchmarks", "human-eval", "--output-dir", str(tmp_path / "out"),
                        "--limit", "3", "--registry", str(registry)])
    assert rc == 0 and time.monotonic() - start < 60
    graded = read(tmp_path / "out" / "eval-results" / "human-eval" / "output.jsonl")
    assert [g["is_correct"] for g in graded] == [True, False, False]
    assert graded[1]["test_status"] == "timeout"


def test_finished_output_is_reused_and_a_different_limit_is_noted(tmp_path, capsys):
    with gsm8k_server() as srv:
        argv = ["--server", srv.url, "--benchmarks", "gsm8k", "--output-dir", str(tmp_path)]
        assert eval_main([*argv, "--limit", "3"]) == 0
        first = sum(srv.successes.values())
        assert eval_main([*argv, "--limit", "3"]) == 0 and sum(srv.successes.values()) == first
        assert eval_main([*argv, "--limit", "5"]) == 0 and sum(srv.successes.values()) == first
    assert "finished with 3 rows but 5 were asked for" in capsys.readouterr().err


def test_nemo_skills_generate_command_composition(tmp_path, monkeypatch):
    """NeMo-Skills cannot be installed here (not on PyPI); a STUB of its dataset module (only the
    GENERATION_ARGS constant) checks how our --client nemo-skills composes the generate command."""
    stub = tmp_path / "stub" / "nemo_skills" / "dataset" / "gsm8k"
    stub.mkdir(parents=True)
    for d in (stub.parent.parent, stub.parent):
        (d / "__init__.py").write_text("")
    (stub / "__init__.py").write_text('GENERATION_ARGS = "++prompt_config=generic/math ++eval_type=math"\n')
    monkeypatch.syspath_prepend(str(tmp_path / "stub"))
    from xp.nemo_skills.http_client import HttpSettings
    from xp.nemo_skills.ns_client import generate_command
    from xp.nemo_skills.registry import parse_benchmarks
    from xp.nemo_skills.runner import DecodingSettings

    run = parse_benchmarks("gsm8k:2", load_registry())[0]
    try:
        cmd = generate_command(run, 1, SAMPLE_DATA_DIR, tmp_path / "output-rs1.jsonl", HttpSettings("http://h:5000"),
                               DecodingSettings(block_length=8, threshold=0.9, max_tokens=64), 16, None)
    finally:  # forget the stub so nothing else mistakes it for an installed NeMo-Skills
        for name in [m for m in sys.modules if m == "nemo_skills" or m.startswith("nemo_skills.")]:
            del sys.modules[name]
    assert cmd[1:3] == ["-m", "nemo_skills.inference.generate"]
    assert f"++input_file={SAMPLE_DATA_DIR / 'gsm8k' / 'test.jsonl'}" in cmd
    assert {"++server.server_type=vllm", "++server.base_url=http://h:5000/v1", "++prompt_config=generic/math",
            "++eval_type=math", "++inference.random_seed=1", "++inference.temperature=0.7",
            "++inference.tokens_to_generate=64", "++inference.extra_body.block_length=8",
            "++inference.extra_body.threshold=0.9", "++max_concurrent_requests=16", "++skip_filled=True"} <= set(cmd)
