"""Engine behaviour: NFE conventions, budgets, EOS stop, thinking budget, sampling, callbacks, errors.

Most tests use an exact bigram model (tests/model_helpers.py) so the expected tokens are known.
Run: pytest tests/test_engines_behaviour.py
"""

from __future__ import annotations

import pytest

from model_helpers import bigram_model, bundle_for, one_thread
from xp.dlm_generate import ENGINE_NAMES, GenerationError, GenerationRequest, get_engine
from xp.model.tiny import random_model, tiny_config

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)

EOS, MASK, END_THINK = 2, 4, 6
MODES = {  # name -> (engine, request settings)
    "ar": ("ar_native", {}),
    "dlm": ("nemotron", dict(block_length=4, threshold=0.9)),
    "dlm-none": ("nemotron", dict(block_length=4, threshold=None)),
    "spec": ("nemotron", dict(block_length=4, threshold=0.0, linear_speculation=True)),
}


def chain_bundle(default: int = 20, **kw):
    """vocab 48: 10->...->19->EOS; 30->...->47->30 (a cycle); 29-></think>->30; masks predict `default`."""
    successor = {v: v + 1 for v in range(10, 19)}
    successor[19] = EOS
    successor.update({v: v + 1 for v in range(30, 47)})
    successor[47] = 30
    successor[29], successor[END_THINK] = END_THINK, 30
    return bundle_for(bigram_model(tiny_config(vocab_size=48), successor, default=default), **kw)


def run(bundle, mode, prompt, **kw):
    name, settings = MODES[mode]
    return get_engine(name, bundle).generate([GenerationRequest(tuple(prompt), **{**settings, **kw})])[0]


def test_engine_registry_names_and_aliases():
    bundle = chain_bundle()
    assert set(ENGINE_NAMES) >= {"ar_native", "nemotron", "nemotron_mixed", "ar-native", "nemotron_native",
                                 "nemotron_diffusion", "mix_ar_dlm"}
    assert get_engine("ar-native", bundle).name == "ar_native"
    assert get_engine("mix_ar_dlm", bundle).name == "nemotron"
    with pytest.raises(GenerationError, match="unknown engine 'llada'.*ar_native"):
        get_engine("llada", bundle)


@pytest.mark.parametrize("mode", list(MODES))
def test_eos_stops_each_mode(mode):
    bundle = chain_bundle()
    res = run(bundle, mode, [12], max_new_tokens=32)
    if mode.startswith("dlm"):   # masks draft 20, 20 -> 20; the block is [13, 20, 20, 20] then seeds continue
        assert res.finish_reason == "length" and len(res.tokens) == 32
    else:
        assert res.tokens == [13, 14, 15, 16, 17, 18, 19, EOS] and res.finish_reason == "stop"
    nostop = run(bundle, mode, [12], max_new_tokens=16, eos_early_stop=False)
    assert len(nostop.tokens) == 16 and nostop.finish_reason == "length"


def test_diffusion_eos_stop_truncates_after_the_first_eos():
    bundle = chain_bundle(default=EOS)          # every mask is denoised to EOS
    res = run(bundle, "dlm", [12], max_new_tokens=32, threshold=0.0)
    assert res.tokens == [13, EOS] and res.finish_reason == "stop"
    assert res.nfe == 2                         # one denoise pass + the commit pass


def test_nfe_conventions():
    bundle = chain_bundle()
    ar = run(bundle, "ar", [30], max_new_tokens=24)
    assert ar.nfe == 24 == len(ar.tokens) and ar.token_pass == list(range(24)) and ar.prefill_nfe == 1
    # diffusion: (denoise passes + 1) per block; thr 0 commits every mask at once, None one per pass
    for threshold, per_block in ((0.0, 2), (None, 4)):
        res = run(bundle, "dlm", [30], max_new_tokens=24, threshold=threshold)
        assert len(res.tokens) == 24 and res.nfe == 6 * per_block
        assert max(res.token_pass) == res.nfe - 2   # the last commit pass produced no emitted token
    # speculation on a cycle the verifier agrees with after the first block: draft + verify per cycle
    spec = run(bundle, "spec", [30], max_new_tokens=24)
    assert spec.tokens == ar.tokens
    assert spec.nfe == 2 * len(spec.acceptance_lengths) and sum(spec.acceptance_lengths) == 23


def test_diffusion_rounds_max_tokens_down_to_blocks():
    bundle = chain_bundle()
    assert len(run(bundle, "dlm", [30], max_new_tokens=11, eos_early_stop=False).tokens) == 8
    assert len(run(bundle, "dlm", [30], max_new_tokens=3, eos_early_stop=False).tokens) == 4   # one block


def test_diffusion_token_pass_groups_parallel_commits():
    bundle = chain_bundle()
    res = run(bundle, "dlm", [30], max_new_tokens=8, threshold=0.0)
    # block 0: seed from prefill (pass 0), masks by denoise pass 0, commit pass 1 seeds block 1
    assert res.token_pass == [0, 0, 0, 0, 1, 2, 2, 2]


@pytest.mark.parametrize("mode", list(MODES))
def test_thinking_budget_forces_end_think_at_the_budget(mode):
    bundle = chain_bundle()
    res = run(bundle, mode, [30], max_new_tokens=12, max_thinking_tokens=5, eos_early_stop=False)
    assert res.tokens[5] == END_THINK and END_THINK not in res.tokens[:5]
    # no forcing once </think> was produced before the budget (29 -> </think> -> 30 -> ...)
    res2 = run(bundle, mode, [29], max_new_tokens=12, max_thinking_tokens=3, eos_early_stop=False)
    assert res2.tokens[0] == END_THINK and res2.tokens.count(END_THINK) == 1
    res3 = run(bundle, mode, [30], max_new_tokens=12, max_thinking_tokens=0, eos_early_stop=False)
    assert res3.tokens[0] == END_THINK and res3.tokens.count(END_THINK) == 1


def test_thinking_budget_keeps_speculation_equal_to_ar(tiny_ckpt):
    from xp.model import load_model

    bundle = load_model(str(tiny_ckpt), dtype="fp32")
    prompt = tuple(bundle.tokenizer.encode("Think about it."))
    ar = get_engine("ar_native", bundle)
    spec = get_engine("nemotron", bundle)
    for budget in (0, 3, 7):
        a = ar.generate([GenerationRequest(prompt, max_new_tokens=20, max_thinking_tokens=budget)])[0]
        s = spec.generate([GenerationRequest(prompt, max_new_tokens=20, max_thinking_tokens=budget,
                                             block_length=8, threshold=0.0, linear_speculation=True)])[0]
        assert a.tokens == s.tokens and a.tokens[budget] == bundle.end_think_token_id


@pytest.mark.parametrize("mode", list(MODES))
def test_mask_token_is_never_emitted(mode):
    bundle = chain_bundle(default=MASK)          # the model's favourite token at masks is the mask itself
    res = run(bundle, mode, [40], max_new_tokens=16, eos_early_stop=False)
    assert MASK not in res.tokens and len(res.tokens) == 16


@pytest.mark.parametrize("mode", list(MODES))
def test_sampling_is_seeded_per_request(mode):
    bundle = bundle_for(random_model(tiny_config(), seed=5))
    name, settings = MODES[mode]
    engine = get_engine(name, bundle)
    req = GenerationRequest((5, 9, 14), max_new_tokens=16, temperature=1.0, seed=11, eos_early_stop=False,
                            **settings)
    other = GenerationRequest((7, 8), max_new_tokens=12, temperature=1.0, seed=3, eos_early_stop=False,
                              **settings)
    first = engine.generate([req])[0].tokens
    assert engine.generate([other, req])[1].tokens == first       # same tokens inside a batch
    reseeded = GenerationRequest(**{**req.__dict__, "seed": 12})
    assert engine.generate([reseeded])[0].tokens != first


@pytest.mark.parametrize("mode", list(MODES))
def test_on_commit_streams_every_token_in_order(mode):
    bundle = chain_bundle()
    name, settings = MODES[mode]
    calls = []
    reqs = [GenerationRequest((30,), max_new_tokens=12, **settings),
            GenerationRequest((12,), max_new_tokens=12, **settings)]
    results = get_engine(name, bundle).generate(reqs, on_commit=lambda row, toks, p: calls.append((row, toks, p)))
    for row, res in enumerate(results):
        streamed = [t for r, toks, _ in calls if r == row for t in toks]
        assert streamed == res.tokens
        passes = [p for r, _, p in calls if r == row]
        assert passes == sorted(passes)


def test_rows_with_different_settings_in_one_call():
    bundle = chain_bundle()
    engine = get_engine("nemotron", bundle)
    reqs = [GenerationRequest((30,), max_new_tokens=8, block_length=4, threshold=0.0),
            GenerationRequest((30,), max_new_tokens=8, block_length=2, threshold=0.0, linear_speculation=True),
            GenerationRequest((30,), max_new_tokens=8, block_length=4, threshold=0.0)]
    res = engine.generate(reqs)
    assert res[0].tokens == res[2].tokens and res[1].acceptance_lengths is not None
    assert res[0].acceptance_lengths is None


BAD = [
    (dict(threshold=1.5), "threshold must be in \\[0, 1\\]"),
    (dict(threshold=-0.1), "threshold must be in \\[0, 1\\]"),
    (dict(block_length=0), "block_length must be an integer >= 1"),
    (dict(max_new_tokens=0), "max_new_tokens must be a positive integer"),
    (dict(max_new_tokens=60), "exceeds the model length 50"),
    (dict(use_draft_lora=True, linear_speculation=True), "no adapter is loaded"),
    (dict(prompt_ids=()), "prompt is empty"),
    (dict(prompt_ids=(1, 48)), "token ids must be in \\[0, 48\\)"),
    (dict(temperature=-1.0), "temperature must be >= 0"),
    (dict(max_thinking_tokens=-2), "max_thinking_tokens must be >= 0"),
]


@pytest.mark.parametrize("bad,message", BAD)
def test_bad_requests_get_clear_errors(bad, message):
    bundle = chain_bundle(max_model_len=50)
    kw = {"prompt_ids": (30,) * 5, "max_new_tokens": 8, **bad}
    engine = "ar_native" if "block_length" not in bad and "threshold" not in bad and "use_draft_lora" not in bad \
        else "nemotron"
    with pytest.raises(GenerationError, match=message):
        get_engine(engine, bundle).generate([GenerationRequest(**kw)])
