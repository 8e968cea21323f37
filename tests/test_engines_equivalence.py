"""Decoding modes that must agree token for token (greedy, fp32), alone and in batches.

Run: pytest tests/test_engines_equivalence.py
"""

from __future__ import annotations

import pytest

from model_helpers import one_thread, bigram_model, bundle_for
from xp.dlm_generate import GenerationRequest, get_engine
from xp.model import load_model
from xp.model.tiny import tiny_config

TEXTS = ["What is 2 + 3?", "Hello there, tell me a story about apples and books.", "x",
         "Solve the following math problem. Put the final answer in \\boxed{}."]

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def bundle(tiny_ckpt):
    return load_model(str(tiny_ckpt), dtype="fp32", lora_path=str(tiny_ckpt / "linear_spec_lora"))


@pytest.fixture(scope="module")
def prompts(bundle):
    return [tuple(bundle.tokenizer.encode(t)) for t in TEXTS]


@pytest.fixture(scope="module")
def ar_alone(bundle, prompts):
    """Greedy AR output of each prompt decoded alone (the reference), 48 tokens, no early stop."""
    engine = get_engine("ar_native", bundle)
    return [engine.generate([GenerationRequest(p, max_new_tokens=48, eos_early_stop=False)])[0] for p in prompts]


@pytest.mark.parametrize("block", [4, 8, 32])
@pytest.mark.parametrize("lora", [False, True], ids=["base", "lora"])
def test_greedy_linear_spec_equals_greedy_ar(bundle, prompts, ar_alone, block, lora):
    engine = get_engine("nemotron", bundle)
    reqs = [GenerationRequest(p, max_new_tokens=48, block_length=block, threshold=0.0, linear_speculation=True,
                              use_draft_lora=lora, eos_early_stop=False) for p in prompts]
    batched = engine.generate(reqs)
    alone = [engine.generate([r])[0] for r in reqs[:1]]
    for got, ref in zip(batched, ar_alone):
        assert got.tokens == ref.tokens
        # the prefill's token is not part of any cycle
        assert sum(got.acceptance_lengths) == 47 and got.nfe == 2 * len(got.acceptance_lengths)
    assert alone[0].tokens == ar_alone[0].tokens
    assert alone[0].acceptance_lengths == batched[0].acceptance_lengths and alone[0].nfe == batched[0].nfe


def test_iterative_draft_threshold_also_equals_ar(bundle, prompts, ar_alone):
    engine = get_engine("nemotron", bundle)
    res = engine.generate([GenerationRequest(p, max_new_tokens=48, block_length=8, threshold=0.05,
                                             linear_speculation=True, eos_early_stop=False) for p in prompts])
    for got, ref in zip(res, ar_alone):
        assert got.tokens == ref.tokens
        assert got.nfe > 2 * len(got.acceptance_lengths)     # several draft passes per cycle


def test_diffusion_with_block_length_one_equals_ar(bundle, prompts, ar_alone):
    engine = get_engine("nemotron", bundle)
    for threshold in (None, 0.9):
        res = engine.generate([GenerationRequest(p, max_new_tokens=48, block_length=1, threshold=threshold,
                                                 eos_early_stop=False) for p in prompts])
        for got, ref in zip(res, ar_alone):
            assert got.tokens == ref.tokens and got.nfe == ref.nfe == 48


@pytest.mark.parametrize("mode", ["ar", "dlm", "dlm-none", "spec"])
def test_every_row_of_a_batch_decodes_as_it_would_alone(bundle, prompts, mode):
    """Different prompt lengths, budgets and early stop per row; greedy fp32 rows equal their solo runs."""
    name = "ar_native" if mode == "ar" else "nemotron"
    engine = get_engine(name, bundle)
    kw = dict(block_length=8, threshold=None if mode == "dlm-none" else 0.3, linear_speculation=mode == "spec")
    reqs = [GenerationRequest(p, max_new_tokens=n, **kw) for p, n in zip(prompts, (40, 17, 64, 33))]
    batched = engine.generate(reqs)
    for req, got in zip(reqs, batched):
        solo = engine.generate([req])[0]
        assert (got.tokens, got.nfe, got.token_pass, got.finish_reason, got.acceptance_lengths) == \
               (solo.tokens, solo.nfe, solo.token_pass, solo.finish_reason, solo.acceptance_lengths)


def bigram_bundle():
    """vocab 48: mask 4, eos 2; chain 10->11->...->19->20, 20->20; masks predict 20."""
    config = tiny_config(vocab_size=48)
    successor = {v: v + 1 for v in range(10, 20)}
    successor.update({v: 10 + v % 7 for v in range(21, 48)})
    successor[20] = 20
    return bundle_for(bigram_model(config, successor, default=20))


def test_batched_speculation_accepts_different_lengths_in_the_same_cycle():
    bundle = bigram_bundle()
    engine = get_engine("nemotron", bundle)
    ar = get_engine("ar_native", bundle)
    prompts = [(30, 10), (5, 17), (40, 41, 19), (21,)]
    reqs = [GenerationRequest(p, max_new_tokens=30, block_length=8, threshold=0.0, linear_speculation=True)
            for p in prompts]
    res = engine.generate(reqs)
    for r, got in zip(reqs, res):
        assert got.tokens == ar.generate([r])[0].tokens
    # row 0 walks 11..20 one token per cycle, then accepts whole blocks; row 2 reaches 20 at once
    assert res[0].acceptance_lengths[:3] == [1, 1, 1] and res[2].acceptance_lengths[:2] == [8, 8]
    assert res[0].tokens[:11] == list(range(11, 21)) + [20]
    assert any(len({r.acceptance_lengths[c] for r in res}) > 1 for c in range(3))
