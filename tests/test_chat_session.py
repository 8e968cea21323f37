"""ChatSession in-process: mode defaults, validation, history across turns and mode switches."""

from __future__ import annotations

import pytest

from chat.session import ChatError, ChatSession, ChatSettings


@pytest.mark.parametrize("mode,block,threshold", [("ar", 1, None), ("dlm", 8, 0.9),
                                                  ("linear_spec", 32, 0.0), ("linear_spec_lora", 32, 0.0)])
def test_mode_defaults_follow_upstream(mode, block, threshold):
    s = ChatSettings.for_mode(mode)
    assert (s.block_length, s.threshold) == (block, threshold)


@pytest.mark.parametrize("bad", [{"mode": "fast"}, {"block_length": 0}, {"threshold": 1.5},
                                 {"temperature": -1.0}, {"max_new_tokens": 0}])
def test_bad_settings_say_what_is_wrong(bad):
    mode = bad.pop("mode", "dlm")
    with pytest.raises(ChatError):
        ChatSettings.for_mode(mode, **bad)


@pytest.fixture(scope="module")
def bundle(tiny_ckpt):
    from xp.model import load_model

    return load_model(str(tiny_ckpt), dtype="fp32", device="cpu",
                      lora_path=str(tiny_ckpt / "linear_spec_lora"))


def test_history_carries_across_turns_and_modes(bundle):
    session = ChatSession(bundle, ChatSettings.for_mode("dlm", max_new_tokens=8))
    streamed = []
    first = session.send("Hi", on_text=streamed.append)
    assert "".join(streamed) == first.text
    assert len(first.token_pass) == len(first.tokens)
    session.set_mode("ar")
    assert session.settings.block_length == 1 and session.settings.max_new_tokens == 8
    second = session.send("Again")
    assert second.nfe == len(second.tokens)
    assert [m["role"] for m in session.messages] == ["user", "assistant", "user", "assistant"]
    # the second prompt contains the first exchange
    assert len(session.request(session.messages[:3]).prompt_ids) > len(session.request(session.messages[:1]).prompt_ids)
    session.reset()
    assert session.messages == []


def test_lora_mode_needs_an_adapter(tiny_ckpt):
    from xp.model import load_model

    plain = load_model(str(tiny_ckpt), dtype="fp32", device="cpu")
    with pytest.raises(ChatError, match="--lora-path"):
        ChatSession(plain, ChatSettings.for_mode("linear_spec_lora"))
