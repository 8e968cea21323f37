"""Helpers for the model and engine tests: reference models, bundles around in-memory models."""

from __future__ import annotations

import torch

from xp.model.config import ModelConfig
from xp.model.loader import ModelBundle
from xp.model.transformer import NLDModel


def hf_reference(model: NLDModel):
    """transformers' own Ministral3ForCausalLM with our weights (model.* = encoder.*, lm_head = diffusion_head)."""
    from transformers import Ministral3Config, Ministral3ForCausalLM

    c = model.config
    d = c.to_json_dict()
    hc = Ministral3Config(
        hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads,
        head_dim=c.head_dim, intermediate_size=c.intermediate_size, vocab_size=c.vocab_size,
        max_position_embeddings=c.max_position_embeddings, rms_norm_eps=c.rms_norm_eps,
        rope_parameters=dict(d["rope_parameters"]), tie_word_embeddings=False, sliding_window=None)
    hc._attn_implementation = "eager"
    ref = Ministral3ForCausalLM(hc).eval()
    state = {k.replace("encoder.", "model.", 1).replace("diffusion_head", "lm_head"): v
             for k, v in model.state_dict().items() if ".lora_" not in k}
    ref.load_state_dict(state, strict=True)
    return ref


def bundle_for(model: NLDModel, *, max_model_len: int = 4096, end_think: int | None = 6,
               tokenizer=None) -> ModelBundle:
    """A ModelBundle around an in-memory model (no files), as load_model would build it."""
    c: ModelConfig = model.config
    return ModelBundle(model=model.eval(), tokenizer=tokenizer, config=c, max_model_len=max_model_len,
                       has_lora=model.has_lora, eos_token_id=c.eos_token_id, mask_token_id=c.mask_token_id,
                       end_think_token_id=end_think, name="in-memory")


def bigram_model(config: ModelConfig, successor: dict[int, int], default: int) -> NLDModel:
    """An exact bigram model: every position predicts successor[token at that position].

    Needs vocab_size <= hidden_size: embeddings are orthonormal (scaled so RMSNorm keeps them), the
    attention and MLP outputs are zero, and the head maps each token's embedding to its successor.
    Causal logit i then predicts successor[x_i] and a bidirectional mask position predicts
    successor[mask] = `default` -- a model whose drafts agree with the verifier in a controlled way.
    """
    assert config.vocab_size <= config.hidden_size
    model = NLDModel(config)
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(config.hidden_size, config.hidden_size, generator=gen))
    emb = q[:config.vocab_size] * config.hidden_size ** 0.5          # rows: orthogonal, RMS 1
    head = torch.zeros(config.vocab_size, config.hidden_size)
    for v in range(config.vocab_size):
        head[successor.get(v, default)] += emb[v] / config.hidden_size ** 0.5 * 8.0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                p.zero_()
            elif "norm" in name:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        model.encoder.embed_tokens.weight.copy_(emb)
        model.diffusion_head.weight.copy_(head)
    return model.eval()


def one_thread():
    """Generator for an autouse fixture: tiny models run fastest single-threaded, especially on a
    loaded CI box (OpenMP spin-waits make 2 threads 10x slower under contention)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
