"""In-process pieces of the worker with the real tiny model: the batcher's grouping and the
stream text (stop strings across chunk boundaries)."""

from __future__ import annotations

import asyncio
import json

import pytest

from xp.dlm_api.batcher import Batcher
from xp.dlm_api.errors import APIError
from xp.dlm_api.nfe_log import NfeLog
from xp.dlm_api.text import Detokenizer, StreamText
from xp.dlm_generate import get_engine
from xp.dlm_generate.types import GenerationRequest


@pytest.fixture(scope="module")
def bundle(tiny_ckpt):
    from xp.model import load_model
    return load_model(str(tiny_ckpt), dtype="fp32", device="cpu")


def test_batcher_groups_by_decoding_settings(bundle, tmp_path):
    log_path = tmp_path / "nfe.jsonl"
    engine = get_engine("nemotron", bundle)

    async def run():
        batcher = Batcher(batch_size=3, gather_seconds=0.2, nfe_log=NfeLog(str(log_path), "unit"))
        batcher.start()
        requests = [GenerationRequest(prompt_ids=(1, 7, 40 + i, 8), max_new_tokens=4, block_length=4,
                                      threshold=0.9 if i % 2 else None, request_id=f"r{i}") for i in range(6)]
        results = await asyncio.gather(*(batcher.submit(engine, r) for r in requests))
        await batcher.stop()
        return requests, results

    requests, results = asyncio.run(run())
    assert all(len(r.tokens) == 4 for r in results)
    lines = [json.loads(x) for x in log_path.read_text().splitlines()]
    assert sorted(len(x["request_ids"]) for x in lines) == [3, 3]
    for line in lines:   # each batch holds one threshold only
        thresholds = {next(r.threshold for r in requests if r.request_id == rid) for rid in line["request_ids"]}
        assert len(thresholds) == 1 and line["settings"]["threshold"] in thresholds


def test_batcher_isolates_a_bad_request(bundle, tmp_path):
    engine = get_engine("nemotron", bundle)

    async def run():
        batcher = Batcher(batch_size=4, gather_seconds=0.2, nfe_log=NfeLog(None, "unit"))
        batcher.start()
        good = GenerationRequest(prompt_ids=(1, 7, 40, 8), max_new_tokens=4, block_length=4)
        bad = GenerationRequest(prompt_ids=(1, 7, 41, 8), max_new_tokens=4, block_length=4, use_draft_lora=True)
        out = await asyncio.gather(batcher.submit(engine, good), batcher.submit(engine, bad),
                                   return_exceptions=True)
        await batcher.stop()
        return out

    good, bad = asyncio.run(run())
    assert len(good.tokens) == 4
    assert isinstance(bad, APIError) and bad.status == 400


def stream_all(detok: Detokenizer, token_chunks: list[list[int]]) -> tuple[str, bool]:
    stream = StreamText(detok)
    text = "".join(stream.add(chunk) for chunk in token_chunks)
    tail, stopped = stream.finish([t for c in token_chunks for t in c])
    return text + tail, stopped


def test_stream_text_holds_back_a_stop_string_split_over_chunks(bundle):
    tok = bundle.tokenizer
    ids = tok("alpha beta gamma delta", add_special_tokens=False)["input_ids"]
    chunks = [[t] for t in ids]          # one token per commit: the stop string spans commits
    detok = Detokenizer(tok, frozenset(), ["gamma"], frozenset())
    text, stopped = stream_all(detok, chunks)
    assert stopped and text == tok.decode(ids).split("gamma")[0]
    plain = Detokenizer(tok, frozenset(), [], frozenset())
    assert stream_all(plain, chunks) == (tok.decode(ids), False)


def test_stream_text_never_sends_half_a_character(bundle):
    tok = bundle.tokenizer
    ids = tok("naïve café ☕ done", add_special_tokens=False)["input_ids"]
    detok = Detokenizer(tok, frozenset(), [], frozenset())
    stream = StreamText(detok)
    pieces = [stream.add([t]) for t in ids]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) + stream.finish(ids)[0] == tok.decode(ids)
