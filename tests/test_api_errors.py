"""Malformed requests get a 4xx with an OpenAI-style error body, from the worker directly and through
the balancer, and the next valid request still succeeds."""

from __future__ import annotations

import httpx
import pytest

from tests.api_helpers import BODY_LIMIT, MAX_MODEL_LEN, chat_body

CHAT, TEXT = "/v1/chat/completions", "/v1/completions"

# (name, method, path, json body or raw bytes, expected status)
MALFORMED = [
    ("bad json", "POST", CHAT, b'{"messages": [', 400),
    ("body not an object", "POST", CHAT, b'[1, 2, 3]', 400),
    ("messages missing", "POST", CHAT, {"model": "m"}, 400),
    ("messages not a list", "POST", CHAT, {"messages": "hello"}, 400),
    ("messages empty", "POST", CHAT, {"messages": []}, 400),
    ("unknown role", "POST", CHAT, {"messages": [{"role": "wizard", "content": "hi"}]}, 400),
    ("image content part", "POST", CHAT,
     {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400),
    ("max_tokens zero", "POST", CHAT, chat_body("hi", max_tokens=0), 400),
    ("max_tokens negative", "POST", CHAT, chat_body("hi", max_completion_tokens=-3), 400),
    ("max_tokens not a number", "POST", CHAT, chat_body("hi", max_tokens="ten"), 400),
    ("temperature negative", "POST", CHAT, chat_body("hi", temperature=-0.5), 400),
    ("seed not an integer", "POST", CHAT, chat_body("hi", seed="abc"), 400),
    ("stop of wrong type", "POST", CHAT, chat_body("hi", stop=5), 400),
    ("n above one", "POST", CHAT, chat_body("hi", n=2), 400),
    ("stream not a boolean", "POST", CHAT, chat_body("hi", stream="maybe"), 400),
    ("threshold above one", "POST", CHAT, chat_body("hi", threshold=1.5), 400),
    ("block_length zero", "POST", CHAT, chat_body("hi", block_length=0), 400),
    ("unknown engine", "POST", CHAT, chat_body("hi", generation_algorithm="warp_drive"), 400),
    ("linear_speculation not a boolean", "POST", CHAT, chat_body("hi", linear_speculation="often"), 400),
    ("max_thinking_tokens negative", "POST", CHAT, chat_body("hi", max_thinking_tokens=-1), 400),
    ("prompt over model length", "POST", CHAT, chat_body("word " * 200), 400),
    ("prompt + max_tokens over model length", "POST", CHAT, chat_body("hi", max_tokens=MAX_MODEL_LEN), 400),
    ("completion without prompt", "POST", TEXT, {"model": "m", "max_tokens": 4}, 400),
    ("completion token id outside vocab", "POST", TEXT, {"prompt": [1, 2, 10 ** 7], "max_tokens": 4}, 400),
    ("body too large", "POST", CHAT, chat_body("x" * (BODY_LIMIT + 10)), 413),
    ("wrong method", "GET", CHAT, None, 405),
    ("unknown endpoint", "POST", "/v1/embeddings", {"input": "hi"}, 404),
]


@pytest.fixture
def cluster(api_cluster):
    return api_cluster


@pytest.mark.parametrize("target", ["worker", "balancer"])
def test_each_malformed_request_gets_a_4xx_and_the_server_keeps_serving(cluster, target):
    url = cluster.workers[0].url if target == "worker" else cluster.balancer.url
    with httpx.Client(base_url=url, timeout=60) as client:
        for name, method, path, body, status in MALFORMED:
            kwargs = {"content": body, "headers": {"content-type": "application/json"}} \
                if isinstance(body, bytes) else ({"json": body} if body is not None else {})
            r = client.request(method, path, **kwargs)
            assert r.status_code == status, f"{name}: {r.status_code} {r.text}"
            error = r.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}, name
            assert error["message"] and "\n" not in error["message"] and "Traceback" not in error["message"]
            ok = client.post(CHAT, json=chat_body("still there?", max_tokens=4))
            assert ok.status_code == 200, f"after {name}: {ok.text}"
            assert ok.json()["usage"]["completion_tokens"] > 0
    for worker in cluster.workers:
        assert worker.popen.poll() is None
        assert "Traceback" not in worker.output()


def test_error_messages_say_what_to_change(cluster):
    url = cluster.workers[0].url + CHAT
    long = httpx.post(url, json=chat_body("word " * 200)).json()["error"]
    assert f"maximum context length is {MAX_MODEL_LEN}" in long["message"]
    assert long["code"] == "context_length_exceeded"
    engine = httpx.post(url, json=chat_body("hi", generation_algorithm="warp_drive")).json()["error"]
    assert "nemotron" in engine["message"] and engine["param"] == "generation_algorithm"
    tokens = httpx.post(url, json=chat_body("hi", max_tokens=0)).json()["error"]
    assert tokens["param"] == "max_tokens" and "greater than 0" in tokens["message"]
