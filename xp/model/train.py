"""Train the small tri-mode `arith` model: joint AR + block-diffusion objective, then a draft LoRA.

    python -m xp.model.train --out DIR [--seed 0] [--steps 3000] [--time-budget SECONDS] ...

1. Tokenizer: the project's byte-level BPE, trained on arith text (`train_data.build_arith_tokenizer`).
2. Joint training (family recipe): L = L_AR + alpha * L_diff, alpha 0.3. L_AR: causal next-token CE
   on the solution given the chat-template prompt; L_diff: 1/t-weighted CE on masked block tokens,
   a noisy block seeing the clean prefix causally and itself bidirectionally (`train_data.make_batch`).
3. Draft LoRA (o_proj, draft passes only): greedy AR continuations of training prompts are
   generated with the trained model (the verifier), then the adapter learns to fill fully masked
   blocks at arbitrary offsets with exactly those tokens, base weights frozen.
4. DIR gets the checkpoint in the real format (bf16 weights, tokenizer, linear_spec_lora/), plus
   train_log.jsonl, train_args.json and a quick per-mode evaluation (eval.json).

Deterministic given --seed and --steps (on CPU bitwise; on GPU up to kernel nondeterminism).
`--time-budget` picks the step count from the measured speed instead (logged, so a rerun with
--steps N repeats it).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from xp.model import train_data as td
from xp.model.config import ModelConfig
from xp.model.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX, LoraConfig
from xp.model.tiny import LORA_SUBDIR, save_checkpoint, tiny_config
from xp.model.train_forward import hidden_states, logits as head_logits
from xp.model.transformer import Linear, NLDModel
from xp.model.weights import atomic_write_text

SIZES = {  # name -> ModelConfig overrides (tiny_config supplies rope, special ids, ...)
    "arith": dict(hidden_size=384, num_hidden_layers=8, num_attention_heads=6, num_key_value_heads=2,
                  head_dim=64, intermediate_size=1024, vocab_size=512),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 head_dim=16, intermediate_size=128, vocab_size=512),
}


@dataclass(frozen=True)
class TrainSettings:
    out: str
    seed: int = 0
    size: str = "arith"
    device: str = "cuda"
    steps: int = 3000
    time_budget: Optional[float] = None     # seconds for phase 2; picks steps from measured speed
    batch: int = 256
    lr: float = 1.5e-3
    warmup: int = 150
    alpha: float = 0.3
    block_sizes: tuple[int, ...] = (4, 8, 8, 16, 32)
    train_size: int = 300_000
    lc: int = 72
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_steps: int = 600
    lora_time_budget: Optional[float] = None
    base: Optional[str] = None               # train only the LoRA on this checkpoint's weights
    lora_lr: float = 2e-3
    lora_block_sizes: tuple[int, ...] = (8, 8, 16, 32)
    distill_size: int = 16384
    eval_size: int = 512
    workers: int = 8
    log_every: int = 50


class Logger:
    """Lines to stdout and JSON records to DIR/train_log.jsonl."""

    def __init__(self, path: Path):
        self.f = open(path, "a", encoding="utf-8")
        self.t0 = time.time()

    def __call__(self, event: str, **fields) -> None:
        rec = {"t": round(time.time() - self.t0, 2), "event": event, **fields}
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        print(" ".join(f"{k}={v}" for k, v in rec.items()), flush=True)


def init_model(config: ModelConfig, seed: int) -> NLDModel:
    """GPT-style init: N(0, 0.02), residual output projections scaled by 1/sqrt(2 * layers)."""
    torch.manual_seed(seed)
    model = NLDModel(config)
    out_std = 0.02 / math.sqrt(2 * config.num_hidden_layers)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, out_std if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02)
    return model


def joint_loss(model: NLDModel, batch: td.Batch, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_AR + alpha * L_diff on a dual-stream batch; returns (loss, ar, diff)."""
    h = hidden_states(model, batch.ids, batch.positions, batch.mask)
    lg = head_logits(model, h)
    Lc = batch.lc
    ar = F.cross_entropy(lg[:, Lc:].flatten(0, 1), batch.ar_target.flatten(), ignore_index=-100)
    ce = F.cross_entropy(lg[:, :Lc].flatten(0, 1), batch.diff_target.flatten().clamp(min=0), reduction="none")
    sel = (batch.diff_target.flatten() >= 0).float()
    diff = (ce * sel * batch.diff_weight.flatten()).sum() / batch.diff_norm
    return ar + alpha * diff, ar.detach(), diff.detach()


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def make_optimizer(params: list[tuple[str, torch.nn.Parameter]], lr: float, device: torch.device):
    decay = [p for n, p in params if p.ndim >= 2 and "embed" not in n]
    other = [p for n, p in params if not (p.ndim >= 2 and "embed" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.98), fused=device.type == "cuda")


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def train_loop(model, params, data: td.Encoded, s: TrainSettings, log: Logger, *, phase: str, steps: int,
               lr: float, block_sizes, loss_fn, time_budget: Optional[float] = None) -> int:
    """Shared loop (sampling, schedule, clipping, logging). Returns the steps actually run."""
    dev = data.seq.device
    gen = torch.Generator(device=dev).manual_seed(s.seed * 1000 + len(phase))
    opt = make_optimizer(params, lr, dev)
    total, t_start, step = steps, time.time(), 0
    while step < total:
        if time_budget is not None and step == 30:          # speed measured over steps 10..30
            per = (time.time() - t_mark) / 20
            total = max(60, min(steps, int(time_budget / per)))
            log(f"{phase}_steps", steps=total, seconds_per_step=round(per, 4),
                note=f"rerun with --steps {total} to repeat this run")
        if step == 10:
            t_mark = time.time()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, lr, s.warmup if phase == "joint" else 30)
        idx = torch.randint(len(data), (s.batch,), device=dev, generator=gen)
        batch = td.make_batch(data, idx, gen, block_sizes, full_mask=phase == "lora")
        with _autocast(dev):
            loss, a, d = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        opt.step()
        step += 1
        if step % s.log_every == 0 or step == total:
            log(phase, step=step, of=total, loss=round(float(loss.detach()), 4), ar=round(float(a), 4), diff=round(float(d), 4),
                gnorm=round(float(gnorm), 3), lr=f"{opt.param_groups[0]['lr']:.2e}",
                secs=round(time.time() - t_start, 1))
    return total


def attach_trainable_lora(model: NLDModel, rank: int, alpha: float, seed: int) -> LoraConfig:
    """Fresh LoRA on every o_proj (A random, B zero: starts as the base model); base frozen."""
    torch.manual_seed(seed + 7)
    for p in model.parameters():
        p.requires_grad_(False)
    for name, m in model.named_modules():
        if isinstance(m, Linear) and name.endswith("o_proj"):
            a = torch.randn(rank, m.in_features) / math.sqrt(m.in_features)
            m.set_lora(a, torch.zeros(m.out_features, rank), alpha / rank)
            m.lora_A.requires_grad_(True)
            m.lora_B.requires_grad_(True)
    model.has_lora = True
    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=("o_proj",))


def lora_loss(model: NLDModel, batch: td.Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CE of full-mask drafts against the verifier's tokens; LoRA on for noisy tokens only."""
    gate = torch.zeros_like(batch.ids, dtype=torch.bool)
    gate[:, :batch.lc] = True
    h = hidden_states(model, batch.ids, batch.positions, batch.mask, lora_gate=gate)
    lg = head_logits(model, h[:, :batch.lc])
    loss = F.cross_entropy(lg.flatten(0, 1), batch.diff_target.flatten(), ignore_index=-100)
    return loss, torch.zeros(()), loss.detach()


def round_to_bf16(model: NLDModel) -> None:
    """Make the fp32 master weights equal the shipped bf16 ones, so later phases see the real model."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())


def make_bundle(model: NLDModel, tokenizer):
    from xp.model.loader import ModelBundle

    c = model.config
    end_think = tokenizer.convert_tokens_to_ids("</think>")
    return ModelBundle(model=model.eval(), tokenizer=tokenizer, config=c, max_model_len=c.max_position_embeddings,
                       has_lora=model.has_lora, eos_token_id=c.eos_token_id, mask_token_id=c.mask_token_id,
                       end_think_token_id=end_think, name="arith-training")


def distill_data(model: NLDModel, tokenizer, data: td.Encoded, s: TrainSettings, log: Logger) -> td.Encoded:
    """Training prompts with the model's own greedy AR continuations (what the verifier will emit)."""
    from xp.model.train_eval import ModeSpec, generate

    gen = torch.Generator().manual_seed(s.seed + 11)
    pick = torch.randperm(len(data), generator=gen)[:s.distill_size].tolist()
    seq, plen, clen = data.seq.cpu(), data.plen.cpu(), data.clen.cpu()
    prompts = [tuple(seq[i, :plen[i]].tolist()) for i in pick]
    t0 = time.time()
    with torch.no_grad():
        results = generate(make_bundle(model, tokenizer), prompts, ModeSpec("ar"), batch_size=2048,
                           max_new_tokens=s.lc - 1)
    keep = [(list(p), r.tokens) for p, r in zip(prompts, results) if r.finish_reason == "stop"]
    same = sum(r.tokens == seq[i, plen[i]:plen[i] + clen[i]].tolist() for i, r in zip(pick, results))
    log("distill", prompts=len(prompts), kept=len(keep), equal_to_reference=same, secs=round(time.time() - t0, 1))
    if len(keep) < s.batch:  # an undertrained model (smoke runs) rarely finishes: use the references
        log("distill_fallback", reason=f"only {len(keep)} finished continuations; using reference solutions")
        return data
    return td.pack([p for p, _ in keep], [c for _, c in keep], s.lc).to(data.seq.device)


def save_lora(model: NLDModel, cfg: LoraConfig, out_dir: Path) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, m in model.named_modules():
        if isinstance(m, Linear) and m.lora_A is not None:
            tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = m.lora_A.detach().float().cpu().contiguous()
            tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = m.lora_B.detach().float().cpu().contiguous()
    save_file(tensors, str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    atomic_write_text(out_dir / ADAPTER_CONFIG, json.dumps(cfg.to_json_dict(), indent=2))


def quick_eval(model: NLDModel, tokenizer, s: TrainSettings, log: Logger) -> list[dict]:
    """Per-mode numbers on the first eval_size test problems (boxed-answer match, no extra packages)."""
    from xp.model.train_eval import ModeSpec, run_mode
    from xp.nemo_skills.arith import test_problems

    rows = test_problems()[:s.eval_size]
    prompts, _ = td.PromptEncoder(tokenizer).encode(rows)
    answers = [r["expected_answer"] for r in rows]
    bundle = make_bundle(model, tokenizer)
    specs = [ModeSpec("ar"), ModeSpec("dlm", 8, 0.9), ModeSpec("dlm", 16, 0.9)] + [
        ModeSpec("linear_spec", b, None, lora) for b in (8, 16, 32) for lora in (False, True)]
    table, ar_out = [], None
    for spec in specs:
        with torch.no_grad():
            st = run_mode(bundle, [tuple(p) for p in prompts], answers, spec, batch_size=512)
        row = st.row()
        ar_out = st.outputs if spec.mode == "ar" else ar_out
        if spec.mode == "linear_spec":
            row["equal_to_ar"] = sum(a == b for a, b in zip(st.outputs, ar_out))
        log("eval", **row)
        table.append(row)
    return table


def prepare_data(s: TrainSettings, tok_dir: Path, log: Logger, dev: torch.device):
    """Tokenizer (built into tok_dir unless a --base checkpoint supplies it) and encoded training data."""
    from xp.model.tokenizer import load_tokenizer
    from xp.nemo_skills.arith import test_problems

    n_tok = None if s.base else td.build_arith_tokenizer(tok_dir, SIZES[s.size]["vocab_size"])
    tokenizer = load_tokenizer(tok_dir)
    td.PromptEncoder(tokenizer).check(test_problems()[:50])
    prompts, comps = td.encode_train(tok_dir, s.train_size, s.seed, s.workers)
    data = td.pack(prompts, comps, s.lc).to(dev)
    log("data", tokenizer_size=n_tok or len(tokenizer), examples=len(data), seq_len=data.seq.shape[1],
        mean_prompt=round(float(data.plen.float().mean()), 1), mean_completion=round(float(data.clen.float().mean()), 1))
    return tokenizer, data


def joint_phase(s: TrainSettings, data: td.Encoded, tmp: Path, log: Logger, dev: torch.device):
    """Phase 2 from scratch; or, with --base, the base checkpoint's weights (its files copied to tmp)."""
    if s.base:
        from xp.model.config import load_config
        from xp.model.weights import load_into, read_state_dict

        base = Path(s.base)
        for f in base.iterdir():
            if f.is_file() and f.name not in ("train_log.jsonl", "eval.json", "train_args.json"):
                shutil.copy2(f, tmp / f.name)
        model = NLDModel(load_config(base))
        load_into(model, read_state_dict(base), str(base))
        log("base", path=str(base), params=sum(p.numel() for p in model.parameters()))
        return model.to(dev), 0
    config = replace(tiny_config(**SIZES[s.size]), torch_dtype="bfloat16")
    model = init_model(config, s.seed).to(dev)
    log("model", params=sum(p.numel() for p in model.parameters()))
    model.train()
    steps = train_loop(model, list(model.named_parameters()), data, s, log, phase="joint", steps=s.steps, lr=s.lr,
                       block_sizes=s.block_sizes, loss_fn=lambda m, b: joint_loss(m, b, s.alpha),
                       time_budget=s.time_budget)
    round_to_bf16(model)
    save_checkpoint(copy.deepcopy(model).to(torch.bfloat16).cpu(), tmp)   # final base weights (LoRA is separate)
    return model, steps


def lora_phase(s: TrainSettings, model: NLDModel, tokenizer, data: td.Encoded, tmp: Path, log: Logger) -> int:
    try:
        distilled = distill_data(model, tokenizer, data, s, log)
    except Exception as e:  # keep the run: the reference solutions are what a good verifier emits
        log("distill_failed", error=f"{type(e).__name__}: {e}", fallback="reference solutions")
        distilled = data
    lora_cfg = attach_trainable_lora(model, s.lora_rank, s.lora_alpha, s.seed)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    model.train()
    steps = train_loop(model, params, distilled, s, log, phase="lora", steps=s.lora_steps, lr=s.lora_lr,
                       block_sizes=s.lora_block_sizes, loss_fn=lora_loss, time_budget=s.lora_time_budget)
    model.eval()
    save_lora(model, lora_cfg, tmp / LORA_SUBDIR)
    return steps


def run(s: TrainSettings) -> Path:
    out = Path(s.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".tmp-{out.name}-"))
    log = Logger(tmp / "train_log.jsonl")
    dev = torch.device(s.device)
    log("start", **{k: v for k, v in asdict(s).items() if k != "out"}, torch=torch.__version__)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    tokenizer, data = prepare_data(s, Path(s.base) if s.base else tmp, log, dev)
    model, steps = joint_phase(s, data, tmp, log, dev)
    lora_steps = lora_phase(s, model, tokenizer, data, tmp, log)
    if s.eval_size > 0:
        try:
            table = quick_eval(model, tokenizer, s, log)
            atomic_write_text(tmp / "eval.json", json.dumps(table, indent=1))
        except Exception as e:  # the checkpoint is complete; a failing check must not lose it
            log("eval_failed", error=f"{type(e).__name__}: {e}")
    atomic_write_text(tmp / "train_args.json", json.dumps(
        {**asdict(s), "steps": steps, "lora_steps": lora_steps, "out": None}, indent=1))
    log("done")
    log.f.close()
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _tuple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"block sizes must be >= 1, got {text!r}")
    return values


def parse_args(argv: Optional[list[str]]) -> TrainSettings:
    ap = argparse.ArgumentParser(prog="python -m xp.model.train", description=__doc__.splitlines()[0])
    d = TrainSettings(out="")
    ap.add_argument("--out", required=True, help="checkpoint folder to create (replaced if it exists)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", choices=sorted(SIZES), default=d.size, help="model size preset (tiny: CPU smoke runs)")
    ap.add_argument("--block-sizes", type=_tuple, default=d.block_sizes)
    ap.add_argument("--lora-block-sizes", type=_tuple, default=d.lora_block_sizes)
    for name in ("seed", "steps", "batch", "warmup", "train_size", "lc", "lora_rank", "lora_steps", "distill_size",
                 "eval_size", "workers", "log_every"):
        ap.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("lr", "alpha", "lora_alpha", "lora_lr"):
        ap.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    ap.add_argument("--base", default=None, help="existing checkpoint: skip joint training, train only the LoRA")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds for joint training (sets --steps)")
    ap.add_argument("--lora-time-budget", type=float, default=None, help="seconds for LoRA training (sets --lora-steps)")
    args = vars(ap.parse_args(argv))
    return TrainSettings(**args)


def main(argv: Optional[list[str]] = None) -> int:
    s = parse_args(argv)
    if s.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available; pass --device cpu", file=sys.stderr)
        return 2
    if s.steps < 1 or s.batch < 1 or s.train_size < s.batch:
        print("error: --steps and --batch must be >= 1 and --train-size >= --batch", file=sys.stderr)
        return 2
    path = run(s)
    print(f"wrote trained checkpoint to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
