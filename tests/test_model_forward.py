"""The model's forward: reference logits, cache semantics, LoRA, save/load.

Run: pytest tests/test_model_forward.py
"""

from __future__ import annotations

import pytest
import torch

from model_helpers import one_thread, hf_reference
from xp.model import load_model
from xp.model.config import RopeConfig
from xp.model.lora import load_lora
from xp.model.tiny import build_checkpoint, random_model, tiny_config

_threads = pytest.fixture(scope="module", autouse=True)(one_thread)


def small_rope_config(**kw):
    """Original length 8, so positions 8..40 exercise YaRN and the Llama-4 query scaling."""
    rope = RopeConfig(rope_theta=10000.0, factor=4.0, original_max_position_embeddings=8, beta_fast=32.0,
                      beta_slow=1.0, mscale=1.0, mscale_all_dim=0.5, llama_4_scaling_beta=0.3)
    return tiny_config(rope=rope, max_position_embeddings=32, **kw)


@pytest.mark.parametrize("config", [tiny_config(), small_rope_config()], ids=["tiny", "beyond-original-len"])
def test_causal_logits_equal_transformers_ministral3(config):
    model = random_model(config, seed=3).eval()
    ref = hf_reference(model)
    ids = torch.randint(0, 900, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = ref(ids).logits
    got = model(ids, model.new_cache(2, 48), "causal")
    assert torch.allclose(got, expected, atol=2e-4, rtol=1e-4), (got - expected).abs().max()
    # incremental decoding over the cache gives the same logits as one full pass
    cache = model.new_cache(2, 48)
    chunks = [model(ids[:, a:b], cache, "causal", commit=True) for a, b in ((0, 13), (13, 14), (14, 40))]
    assert torch.allclose(torch.cat(chunks, 1), expected, atol=2e-4, rtol=1e-4)
    assert cache.lens.tolist() == [40, 40]


def test_yarn_attention_factor_and_inv_freq_match_transformers():
    model = random_model(small_rope_config(), seed=0)
    ref = hf_reference(model)
    assert model.attention_factor == pytest.approx(ref.model.rotary_emb.attention_scaling, rel=1e-12)
    assert model.attention_factor != 1.0
    assert torch.equal(model.inv_freq, ref.model.rotary_emb.inv_freq)


def test_bidirectional_pass_leaves_cache_unchanged():
    model = random_model(tiny_config(), seed=1).eval()
    prompt = torch.randint(0, 900, (2, 9))
    block = torch.randint(0, 900, (2, 6))
    follow = torch.randint(0, 900, (2, 6))

    def run(with_bidir: bool):
        cache = model.new_cache(2, 32)
        model(prompt, cache, "causal", commit=True)
        if with_bidir:
            model(block, cache, "bidir")
            model(block.flip(1), cache, "bidir", kv_len=15)
        assert cache.lens.tolist() == [9, 9]
        return model(follow, cache, "causal", commit=True)

    assert torch.equal(run(True), run(False))


def test_bidirectional_mode_sees_the_whole_chunk():
    model = random_model(tiny_config(), seed=1).eval()
    ids = torch.randint(0, 900, (1, 8))
    cache = model.new_cache(1, 16)
    causal = model(ids, cache, "causal")
    bidir = model(ids, cache, "bidir")
    assert not torch.allclose(causal[:, 0], bidir[:, 0], atol=1e-3)
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 900
    assert torch.equal(model(changed, cache, "causal")[:, :-1], causal[:, :-1])
    assert not torch.allclose(model(changed, cache, "bidir")[:, 0], bidir[:, 0])


def test_rows_with_different_cache_lengths_match_single_rows():
    model = random_model(tiny_config(), seed=2).eval()
    a, b = torch.randint(0, 900, (1, 5)), torch.randint(0, 900, (1, 11))
    nxt = torch.randint(0, 900, (2, 4))
    cache = model.new_cache(2, 24)
    model(torch.cat([torch.cat([a, torch.zeros(1, 6, dtype=torch.long)], 1), b]), cache, "causal")
    cache.crop(torch.tensor([5, 11]))
    for mode in ("bidir", "causal"):
        both = model(nxt, cache, mode)
        for row, prefix in enumerate((a, b)):
            alone = model.new_cache(1, 24)
            model(prefix, alone, "causal", commit=True)
            assert torch.allclose(both[row], model(nxt[row:row + 1], alone, mode)[0], atol=1e-5)


def test_lora_application_equals_peft(tiny_ckpt):
    peft = pytest.importorskip("peft")
    bundle = load_model(str(tiny_ckpt), dtype="fp32", lora_path=str(tiny_ckpt / "linear_spec_lora"))
    model = bundle.model
    ref = hf_reference(model)

    class Wrapper(torch.nn.Module):   # PEFT key names are base_model.model.encoder.*
        def __init__(self, ref):
            super().__init__()
            self.encoder, self.diffusion_head, self.config = ref.model, ref.lm_head, ref.config

        def forward(self, ids):
            return self.diffusion_head(self.encoder(input_ids=ids).last_hidden_state)

    wrapped = peft.PeftModel.from_pretrained(Wrapper(ref), str(tiny_ckpt / "linear_spec_lora")).eval()
    ids = torch.randint(0, 900, (2, 12))
    with torch.no_grad():
        expected_lora = wrapped(ids)
        with wrapped.disable_adapter():
            expected_base = wrapped(ids)
    assert not torch.allclose(expected_lora, expected_base, atol=1e-3)   # the adapter matters
    got_lora = model(ids, model.new_cache(2, 16), "causal", lora=True)
    got_base = model(ids, model.new_cache(2, 16), "causal", lora=False)
    assert torch.allclose(got_lora, expected_lora, atol=2e-4, rtol=1e-4)
    assert torch.allclose(got_base, expected_base, atol=2e-4, rtol=1e-4)


def test_lora_request_without_adapter_is_an_error():
    model = random_model(tiny_config(), seed=0)
    with pytest.raises(ValueError, match="no LoRA adapter"):
        model(torch.zeros(1, 2, dtype=torch.long), model.new_cache(1, 4), lora=True)


def test_save_then_load_gives_the_same_logits(tmp_path):
    model = random_model(tiny_config(), seed=7).eval()
    ids = torch.randint(0, 900, (1, 10))
    expected = model(ids, model.new_cache(1, 10), "causal")
    for name, shard in (("single", None), ("sharded", 100_000)):
        path = build_checkpoint(tmp_path / name, model=model, max_shard_bytes=shard)
        if shard:
            assert (path / "model.safetensors.index.json").is_file()
            assert len(list(path.glob("model-*-of-*.safetensors"))) > 2
        loaded = load_model(str(path), dtype="fp32").model
        assert torch.equal(loaded(ids, loaded.new_cache(1, 10), "causal"), expected)


def test_bf16_load_runs_and_stays_close(tiny_ckpt):
    fp32 = load_model(str(tiny_ckpt), dtype="fp32").model
    bf16 = load_model(str(tiny_ckpt), dtype="bf16").model
    assert bf16.dtype == torch.bfloat16
    ids = torch.randint(0, 900, (1, 10))
    a = fp32(ids, fp32.new_cache(1, 10), "causal")
    b = bf16(ids, bf16.new_cache(1, 10), "causal")
    assert b.dtype == torch.float32 and torch.isfinite(b).all()
    assert (a - b).abs().max() < 0.1 * a.abs().max()


def test_lora_loads_onto_in_memory_model_and_toggles(tiny_ckpt):
    model = load_model(str(tiny_ckpt), dtype="fp32").model
    ids = torch.randint(0, 900, (1, 6))
    base = model(ids, model.new_cache(1, 6), "bidir")
    load_lora(model, tiny_ckpt / "linear_spec_lora")
    assert torch.equal(model(ids, model.new_cache(1, 6), "bidir"), base)
    assert not torch.allclose(model(ids, model.new_cache(1, 6), "bidir", lora=True), base, atol=1e-4)
