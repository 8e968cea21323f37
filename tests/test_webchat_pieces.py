"""Per-token texts sent to the chat page (final stream chunk, `nld.token_text`) spell the reply."""

from __future__ import annotations

import random

import pytest

from xp.dlm_api.text import Detokenizer, hidden_special_ids


@pytest.fixture(scope="module")
def tokenizer(tiny_ckpt):
    from xp.model import load_model

    return load_model(str(tiny_ckpt), dtype="fp32", device="cpu").tokenizer


@pytest.mark.parametrize("seed", range(20))
def test_pieces_concatenate_to_the_decoded_text(tokenizer, seed):
    rng = random.Random(seed)
    tokens = [rng.randrange(3, tokenizer.vocab_size) for _ in range(120)]
    detok = Detokenizer(tokenizer, frozenset(), (), hidden_special_ids(tokenizer))
    pieces = detok.pieces(tokens)
    assert len(pieces) == len(tokens)
    assert "".join(pieces) == detok.decode(tokens)


def test_pieces_after_eos_are_empty(tokenizer):
    eos = tokenizer.eos_token_id
    detok = Detokenizer(tokenizer, frozenset({eos}), (), hidden_special_ids(tokenizer))
    text_ids = tokenizer.encode(" hello world", add_special_tokens=False)
    pieces = detok.pieces(text_ids + [eos, *text_ids])
    assert "".join(pieces) == detok.decode(text_ids)
    assert pieces[len(text_ids):] == [""] * (len(text_ids) + 1)


def test_multibyte_characters_land_on_the_completing_token(tokenizer):
    detok = Detokenizer(tokenizer, frozenset(), (), hidden_special_ids(tokenizer))
    ids = tokenizer.encode(" héllo 日本語", add_special_tokens=False)
    pieces = detok.pieces(ids)
    assert "".join(pieces) == " héllo 日本語"
    assert "\ufffd" not in "".join(pieces)
    assert {"é", "日", "本", "語"} <= set(pieces)
