"""The official openai client through the real balancer and a real worker (tiny checkpoint, CPU,
fp32): answers equal the engine called directly with the same settings, streams included."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import openai
import pytest

from tests.api_helpers import chat_body, start_balancer, start_worker, wait_healthy

MODES = {   # request fields -> the GenerationRequest fields the engine is called with
    "dlm": ({"block_length": 4, "threshold": 0.9},
            {"block_length": 4, "threshold": 0.9}),
    "linear_spec": ({"block_length": 8, "threshold": 0.0, "linear_speculation": True},   # workers have LoRA
                    {"block_length": 8, "threshold": 0.0, "linear_speculation": True, "use_draft_lora": True}),
    "linear_spec_no_lora": ({"block_length": 8, "threshold": 0.0, "linear_speculation": True,
                             "draft_lora_only": False},
                            {"block_length": 8, "threshold": 0.0, "linear_speculation": True}),
    "ar": ({"generation_algorithm": "ar_native", "block_length": 1, "threshold": None},
           {"block_length": 1, "threshold": None}),
}


@pytest.fixture
def cluster(api_cluster):
    return api_cluster


@pytest.fixture
def client(cluster):
    return openai.OpenAI(base_url=cluster.balancer.url + "/v1", api_key="EMPTY", max_retries=0)


@pytest.fixture(scope="module")
def bundle(tiny_ckpt):
    from xp.model import load_model
    return load_model(str(tiny_ckpt), dtype="fp32", device="cpu", lora_path=str(tiny_ckpt / "linear_spec_lora"))


def direct(bundle, prompt_ids, engine="nemotron", max_new_tokens=16, **fields):
    """The engine called in-process: (text with special tokens kept, tokens, result)."""
    from xp.dlm_generate import get_engine
    from xp.dlm_generate.types import GenerationRequest
    request = GenerationRequest(prompt_ids=tuple(prompt_ids), max_new_tokens=max_new_tokens, **fields)
    result = get_engine(engine, bundle).generate([request])[0]
    tokens = list(result.tokens)
    if tokens and tokens[-1] == bundle.eos_token_id:
        tokens = tokens[:-1]
    return bundle.tokenizer.decode(tokens, skip_special_tokens=False), result


def chat_ids(bundle, content, enable_thinking=False):
    text = bundle.tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                add_generation_prompt=True, enable_thinking=enable_thinking)
    return bundle.tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("mode", list(MODES))
def test_chat_equals_direct_engine_call(client, bundle, mode):
    body_fields, engine_fields = MODES[mode]
    engine = body_fields.get("generation_algorithm", "nemotron")
    question = f"What is 12 + {len(mode)}?"
    reply = client.chat.completions.create(
        model="whatever-name", messages=[{"role": "user", "content": question}], max_tokens=16,
        temperature=0, extra_body={**body_fields, "skip_special_tokens": False})
    expected, result = direct(bundle, chat_ids(bundle, question), engine, 16, **engine_fields)
    assert reply.choices[0].message.content == expected
    assert reply.choices[0].finish_reason == result.finish_reason
    assert reply.usage.completion_tokens == len(result.tokens)
    assert reply.usage.prompt_tokens == len(chat_ids(bundle, question))
    assert reply.usage.model_extra["nfe"] == result.nfe > 0


def test_completion_equals_direct_engine_call(client, bundle):
    prompt = "<s>[INST]Count to five.[/INST]"
    reply = client.completions.create(model="m", prompt=prompt, max_tokens=8, temperature=0,
                                      extra_body={"block_length": 4, "skip_special_tokens": False})
    ids = bundle.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    expected, result = direct(bundle, ids, "nemotron", 8, block_length=4, threshold=0.9)
    assert reply.choices[0].text == expected
    assert reply.usage.completion_tokens == len(result.tokens)
    assert reply.usage.model_extra["nfe"] == result.nfe


def test_chat_stream_concatenates_to_the_whole_answer(client):
    messages = [{"role": "user", "content": "Tell me a story."}]
    whole = client.chat.completions.create(model="m", messages=messages, max_tokens=12)
    pieces, finish, usage = [], None, None
    for chunk in client.chat.completions.create(model="m", messages=messages, max_tokens=12, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == whole.choices[0].finish_reason
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_completion_stream_concatenates_to_the_whole_answer(client):
    whole = client.completions.create(model="m", prompt="Once upon a time", max_tokens=8)
    text = "".join(c.choices[0].text for c in client.completions.create(
        model="m", prompt="Once upon a time", max_tokens=8, stream=True) if c.choices)
    assert text == whole.choices[0].text


def test_stream_chunks_carry_pass_indices_and_nfe(cluster):
    body = chat_body("Stream with passes", max_tokens=12, stream=True, **MODES["linear_spec"][0])
    events = []
    with httpx.stream("POST", cluster.balancer.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    final = chunks[-1]
    middle = [c for c in chunks if c.get("nld") and c["nld"]["pass"]]
    assert middle, "no chunk carried committed tokens"
    passes = [p for c in middle for p in c["nld"]["pass"]]
    assert len(passes) == final["usage"]["completion_tokens"]
    assert passes == sorted(passes)
    assert final["nld"]["nfe"] == final["usage"]["nfe"] >= middle[-1]["nld"]["nfe"]
    per_commit = [a for c in middle for a in c["nld"]["acceptance_lengths"]]
    assert sum(per_commit) == final["usage"]["completion_tokens"]
    cycles = final["nld"]["acceptance_lengths"]   # the engine's own list (speculation cycles only)
    assert cycles and min(cycles) >= 1 and sum(cycles) <= final["usage"]["completion_tokens"]
    assert len(final["nld"]["token_pass"]) == final["usage"]["completion_tokens"]


def test_stop_string_cuts_the_text(client):
    messages = [{"role": "user", "content": "Say something long."}]
    full = client.chat.completions.create(model="m", messages=messages, max_tokens=16).choices[0].message.content
    assert len(full) >= 6, f"answer too short to pick a stop string from: {full!r}"
    stop = full[3:5]
    reply = client.chat.completions.create(model="m", messages=messages, max_tokens=16, stop=[stop])
    assert reply.choices[0].message.content == full[:full.find(stop)]
    assert reply.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="m", messages=messages, max_tokens=16, stop=stop, stream=True) if c.choices)
    assert streamed == full[:full.find(stop)]


def test_token_budgets(client):
    messages = [{"role": "user", "content": "Budget"}]
    default = client.chat.completions.create(model="m", messages=messages, max_tokens=None)
    assert 0 < default.usage.completion_tokens <= 12   # the workers' --max-tokens
    newer = client.chat.completions.create(model="m", messages=messages, max_completion_tokens=4,
                                           extra_body={"eos_early_stop": False})
    assert newer.usage.completion_tokens == 4
    assert newer.choices[0].finish_reason == "length"


def test_seeded_sampling_repeats(client):
    kwargs = dict(model="m", messages=[{"role": "user", "content": "Roll dice"}], max_tokens=12,
                  temperature=1.0, seed=1234)
    first = client.chat.completions.create(**kwargs).choices[0].message.content
    assert client.chat.completions.create(**kwargs).choices[0].message.content == first


def test_nemo_skills_vllm_request_shape(cluster, bundle):
    """What NeMo-Skills' vllm client sends: max_tokens null, unknown sampling keys, extra_body keys."""
    body = chat_body("Hello", max_tokens=None, temperature=0.0, top_p=0.95, seed=0, stop=None, logprobs=None,
                     top_logprobs=None, n=1, frequency_penalty=0, presence_penalty=0, stream=False, tools=None,
                     min_p=0.0, repetition_penalty=1.0, spaces_between_special_tokens=False, top_k=-1,
                     chat_template_kwargs={"enable_thinking": True}, block_length=4, threshold=0.9,
                     steps=8192, max_thinking_tokens=6, linear_speculation=False, draft_lora_only=False)
    r = httpx.post(cluster.balancer.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["choices"][0]["finish_reason"] in ("stop", "length")
    assert {"prompt_tokens", "completion_tokens", "nfe"} <= set(data["usage"])
    # chat_template_kwargs reach the template: thinking on opens a <think> block in the prompt
    assert data["usage"]["prompt_tokens"] == len(chat_ids(bundle, "Hello", enable_thinking=True))
    off = httpx.post(cluster.balancer.url + "/v1/chat/completions", timeout=60,
                     json=chat_body("Hello", max_tokens=4, enable_thinking=False)).json()
    assert off["usage"]["prompt_tokens"] == len(chat_ids(bundle, "Hello")) < data["usage"]["prompt_tokens"]


def test_models_health_probe_and_page(client, cluster, tiny_ckpt):
    assert [m.id for m in client.models.list().data] == [str(tiny_ckpt)]
    for proc in (cluster.balancer, cluster.workers[0]):
        assert httpx.get(proc.url + "/health").status_code == 200
        assert httpx.put(proc.url + "/").status_code == 200      # NeMo-Skills' curl -X PUT wait
        page = httpx.get(proc.url + "/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_nfe_log_has_one_line_per_batch(cluster, client):
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "log me"}], max_tokens=8,
                                   extra_body=MODES["linear_spec"][0])
    keys = {"time", "worker", "request_ids", "batch_size", "prompt_tokens", "completion_tokens", "nfe",
            "acceptance_lengths", "seconds", "settings"}
    lines = []
    for worker in cluster.workers:
        for line in worker.nfe_lines():
            assert keys <= set(line)
            assert line["worker"] == worker.name
            assert line["batch_size"] == len(line["request_ids"]) == len(line["nfe"])
            lines.append(line)
    assert any(line["acceptance_lengths"] for line in lines)   # the linear-spec request


def test_api_key_and_clean_sigterm(tiny_ckpt, tmp_path):
    worker = start_worker(tiny_ckpt, tmp_path, "keyed", "--api-key", "s3cret", "--max-tokens", "4")
    balancer = None
    try:
        wait_healthy(worker)          # /health stays open without the key
        balancer = start_balancer([worker], tmp_path, "--api-key", "outer", "--worker-api-key", "s3cret")
        wait_healthy(balancer)
        messages = [{"role": "user", "content": "hi"}]
        for url, key in ((balancer.url, "wrong"), (worker.url, "outer"), (worker.url, None)):
            r = httpx.post(url + "/v1/chat/completions", json=chat_body("hi"),
                           headers={"Authorization": f"Bearer {key}"} if key else {})
            assert r.status_code == 401 and r.json()["error"]["type"] == "AuthenticationError"
        good = openai.OpenAI(base_url=balancer.url + "/v1", api_key="outer", max_retries=0)
        assert good.chat.completions.create(model="m", messages=messages).usage.completion_tokens > 0
        assert good.models.list().data
        direct_client = openai.OpenAI(base_url=worker.url + "/v1", api_key="s3cret", max_retries=0)
        assert direct_client.chat.completions.create(model="m", messages=messages).usage.completion_tokens > 0
        with pytest.raises(openai.BadRequestError, match="--lora-path"):   # this worker has no adapter
            direct_client.chat.completions.create(model="m", messages=messages,
                                                  extra_body={"draft_lora_only": True})
        # SIGTERM while a request runs: that request still gets its answer, then the worker exits 0
        answers = []
        long_body = chat_body("long one", max_tokens=96, eos_early_stop=False, generation_algorithm="ar_native")
        runner = threading.Thread(target=lambda: answers.append(httpx.post(
            worker.url + "/v1/chat/completions", json=long_body, timeout=120,
            headers={"Authorization": "Bearer s3cret"})))
        runner.start()
        deadline = time.monotonic() + 60
        while not httpx.get(worker.url + "/health").json().get("busy"):
            assert time.monotonic() < deadline and runner.is_alive(), "the long request never started"
            time.sleep(0.01)
        worker.popen.send_signal(signal.SIGTERM)
        runner.join()
        assert answers[0].status_code == 200 and answers[0].json()["usage"]["completion_tokens"] == 96
        assert worker.popen.wait(timeout=60) == 0, worker.output()
    finally:
        codes = [(p.stop(signal.SIGTERM), p) for p in (balancer, worker) if p is not None]
    for code, proc in codes:   # SIGTERM is a clean stop: exit status 0
        assert code == 0, proc.output()


def test_stream_client_that_leaves_early_causes_no_error(cluster):
    body = chat_body("Leave early", max_tokens=12, stream=True, block_length=1, generation_algorithm="ar_native")
    with httpx.stream("POST", cluster.balancer.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        next(r.iter_lines())          # the first event, then hang up
    deadline = time.monotonic() + 20
    while any(w["outstanding"] for w in httpx.get(cluster.balancer.url + "/health").json()["workers"]):
        assert time.monotonic() < deadline, "the balancer still counts the abandoned stream"
        time.sleep(0.1)
    ok = httpx.post(cluster.balancer.url + "/v1/chat/completions", json=chat_body("next", max_tokens=4), timeout=60)
    assert ok.status_code == 200
    log = cluster.balancer.output()
    assert "Traceback" not in log and "Exception in ASGI" not in log


def test_never_more_tokens_than_asked_even_below_one_block(client):
    messages = [{"role": "user", "content": "Tiny budget"}]
    reply = client.chat.completions.create(model="m", messages=messages, max_tokens=2,
                                           extra_body={"block_length": 8, "eos_early_stop": False})
    assert reply.usage.completion_tokens == 2 and reply.choices[0].finish_reason == "length"
    chunks = list(client.chat.completions.create(model="m", messages=messages, max_tokens=2, stream=True,
                                                 extra_body={"block_length": 8, "eos_early_stop": False}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 2
