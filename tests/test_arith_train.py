"""The arith training pieces: the masked training forward equals the decoding forward, batch layout,
and an end-to-end CPU smoke run of `python -m xp.model.train` whose checkpoint loads and decodes."""

from __future__ import annotations

import json

import pytest
import torch

from xp.model import train_data as td
from xp.model.tiny import random_model, tiny_config
from xp.model.tokenizer import MASK_ID
from xp.model.train_forward import hidden_states, logits as head_logits


def _model(with_lora: bool = False):
    model = random_model(tiny_config(), seed=3).eval()
    if with_lora:
        from xp.model.train import attach_trainable_lora

        attach_trainable_lora(model, rank=4, alpha=8.0, seed=0)
        with torch.no_grad():
            for m in model.modules():
                if getattr(m, "lora_B", None) is not None:
                    m.lora_B.normal_(0, 0.5)
    return model


def test_causal_stream_equals_model_forward():
    model = _model()
    ids = torch.randint(10, 1000, (2, 12))
    pos = torch.arange(12)[None].expand(2, 12)
    mask = torch.ones(12, 12, dtype=torch.bool).tril()[None, None].expand(2, 1, 12, 12)
    with torch.no_grad():
        ours = head_logits(model, hidden_states(model, ids, pos, mask))
    ref = model(ids, model.new_cache(2, 16), "causal")
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("lora", [False, True])
def test_noisy_block_equals_bidir_pass_over_causal_cache(lora):
    """A noisy block in the dual stream sees exactly what a decode-time draft pass sees."""
    model = _model(with_lora=lora)
    prefix, block = torch.randint(10, 1000, (1, 7)), torch.randint(10, 1000, (1, 4))
    block[0, 2:] = MASK_ID
    cache = model.new_cache(1, 16)
    model(prefix, cache, "causal", commit=True)
    ref = model(block, cache, "bidir", lora=lora)
    T, L = 7, 4
    ids = torch.cat([block, prefix], 1)
    pos = torch.cat([torch.arange(7, 11), torch.arange(7)])[None]
    mask = torch.zeros(L + T, L + T, dtype=torch.bool)
    mask[:L, :L] = True
    mask[:L, L:] = True                                                   # whole clean prefix
    mask[L:, L:] = torch.ones(T, T, dtype=torch.bool).tril()
    gate = torch.zeros(1, L + T, dtype=torch.bool)
    gate[:, :L] = lora
    with torch.no_grad():
        ours = head_logits(model, hidden_states(model, ids, pos, mask[None, None], lora_gate=gate))
    torch.testing.assert_close(ours[:, :L], ref, atol=1e-4, rtol=1e-4)


def test_make_batch_layout():
    prompts = [[1, 7, 20, 21, 8], [1, 7, 30, 8]]
    comps = [[40 + i for i in range(13)] + [2], [50, 51, 52, 2]]
    data = td.pack(prompts, comps, lc=20)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        b = td.make_batch(data, torch.tensor([0, 1]), gen, (4, 8))
        Lc, T = 20, data.seq.shape[1]
        noisy = b.ids[:, :Lc]
        m = b.mask[:, 0]
        for r, (p, c) in enumerate(zip(prompts, comps)):
            full = p + c
            assert b.ids[r, Lc:Lc + len(full)].tolist() == full                 # clean stream intact
            assert b.positions[r, :Lc].tolist() == list(range(len(p), len(p) + Lc))
            for j in range(len(c)):
                seen_clean = m[r, j, Lc:].nonzero().flatten().tolist()
                start = seen_clean[-1] + 1 - len(p) if seen_clean else 0
                # a noisy token sees the clean prefix up to its block start, never its own clean copy
                assert seen_clean == list(range(len(p) + start))
                block = m[r, j, :Lc].nonzero().flatten().tolist()
                assert block[0] == start and block == list(range(start, block[-1] + 1))
                if j == start:
                    assert noisy[r, j] == c[j]                                     # the seed is never masked
                if noisy[r, j] == MASK_ID:
                    assert b.diff_target[r, j] == c[j]
            assert not m[r, Lc:, :Lc].any()                                         # clean never sees noisy
            ar = b.ar_target[r].tolist()
            assert [t for t in ar if t != -100] == c                                # AR loss: completion only


def test_train_smoke_cpu(tmp_path):
    """The whole pipeline at toy size: checkpoint in the real format, loadable, LoRA attaches, modes run."""
    from xp.model.loader import load_model
    from xp.model.train import main
    from xp.model.train_eval import ModeSpec, run_mode

    out = tmp_path / "ckpt"
    rc = main(["--out", str(out), "--size", "tiny", "--device", "cpu", "--steps", "3", "--batch", "8",
               "--train-size", "64", "--lora-steps", "2", "--distill-size", "4",
               "--workers", "1", "--log-every", "1", "--eval-size", "0"])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "nemotron_labs_diffusion" and cfg["mask_token_id"] == MASK_ID
    events = [json.loads(line)["event"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert events.count("joint") == 3 and events.count("lora") == 2 and events[-1] == "done"
    bundle = load_model(str(out), dtype="fp32", lora_path="linear_spec_lora")
    assert bundle.has_lora
    prompts = [tuple(bundle.tokenizer("[INST]1 + 2[/INST]", add_special_tokens=False)["input_ids"])]
    st = run_mode(bundle, prompts, [3], ModeSpec("linear_spec", 4, None, True), max_new_tokens=8)
    assert st.n == 1 and st.acceptance is not None
    # --base: a new adapter on the same base weights, the base files carried over unchanged
    out2 = tmp_path / "lora-only"
    assert main(["--out", str(out2), "--base", str(out), "--device", "cpu", "--batch", "8", "--train-size", "16",
                 "--lora-steps", "1", "--distill-size", "2", "--workers", "1", "--eval-size", "0"]) == 0
    assert (out2 / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    assert (out2 / "linear_spec_lora" / "adapter_model.safetensors").is_file()


def test_training_is_deterministic_given_the_seed(tmp_path):
    from xp.model.train import main

    args = ["--size", "tiny", "--device", "cpu", "--steps", "2", "--batch", "8", "--train-size", "32",
            "--lora-steps", "1", "--distill-size", "2", "--workers", "1", "--eval-size", "0"]
    outs = []
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert main(["--out", str(tmp_path / name), "--seed", seed, *args]) == 0
        outs.append([(tmp_path / name / f).read_bytes() for f in
                     ("model.safetensors", "linear_spec_lora/adapter_model.safetensors", "tokenizer.json")])
    assert outs[0] == outs[1]
    assert outs[0][0] != outs[2][0]
