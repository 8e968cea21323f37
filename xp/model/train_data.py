"""Data for `xp.model.train`: the arith tokenizer, encoded problems, and joint AR + diffusion batches.

A batch is one dual-stream sequence per example, `[noisy completion (Lc) | clean prompt+completion (T)]`:
- the clean stream is causal (AR loss on completion tokens);
- the noisy stream cuts the completion into blocks (size B per row, blocks start at a random shift,
  so both diffusion's aligned blocks and speculation's arbitrary ones are covered). Block position
  0 is the clean seed (known at decode time); other positions are masked with ratio t ~ U(eps, 1]
  per block. A noisy token sees the clean tokens before its block (causal prefix, exactly the KV
  cache at decode time) and its own block bidirectionally; positions are those of the clean copy.
Completions are padded with EOS, so a block that holds the answer's end learns to fill EOS after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from xp.model.tokenizer import EOS_ID, MASK_ID, PAD_ID, build_tokenizer, training_text

PROMPT_NAME = "generic/math"
_PLACEHOLDER = "\x00PROBLEM\x00"


def build_arith_tokenizer(out_dir: str | Path, vocab_size: int = 512, corpus_rows: int = 4000) -> int:
    """Byte-level BPE (digits one per token) trained on arith prompts/solutions plus general text."""
    from xp.nemo_skills.arith import train_problems
    from xp.nemo_skills.prompts import build_messages

    texts = list(training_text())
    for row in train_problems(corpus_rows, seed=10_000):
        texts.append(build_messages(PROMPT_NAME, row)[-1]["content"])
        texts.append(row["reference_solution"])
    return build_tokenizer(out_dir, vocab_size, model_max_length=16384, texts=texts)


class PromptEncoder:
    """Chat-template prompt ids for arith rows, exactly as evaluation builds them.

    The template is rendered once; its prefix/suffix ids are joined with the problem's own ids (the
    pre-tokenizer splits at those boundaries, which `check` verifies against the full path).
    """

    def __init__(self, tokenizer):
        from xp.nemo_skills.prompts import build_messages

        self.tok = tokenizer
        self._messages = lambda row: build_messages(PROMPT_NAME, row)
        text = tokenizer.apply_chat_template(self._messages({"problem": _PLACEHOLDER}), tokenize=False,
                                             add_generation_prompt=True)
        prefix, suffix = text.split(_PLACEHOLDER)
        self.prefix = self._ids([prefix])[0]
        self.suffix = self._ids([suffix])[0]

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok._tokenizer.encode_batch(texts, add_special_tokens=False)]

    def full(self, row: dict) -> list[int]:
        """The evaluation path: chat template text, then tokenize."""
        text = self.tok.apply_chat_template(self._messages(row), tokenize=False, add_generation_prompt=True)
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def encode(self, rows: list[dict]) -> tuple[list[list[int]], list[list[int]]]:
        """(prompt ids, completion ids incl. EOS) per row."""
        probs = self._ids([r["problem"] for r in rows])
        sols = self._ids([r["reference_solution"] for r in rows])
        return [self.prefix + p + self.suffix for p in probs], [s + [EOS_ID] for s in sols]

    def check(self, rows: list[dict]) -> None:
        prompts, _ = self.encode(rows)
        for row, ids in zip(rows, prompts):
            if ids != self.full(row):
                raise RuntimeError(f"prompt ids differ from the chat-template path for {row['problem']!r}")


def _encode_shard(args: tuple[str, int, int, int]) -> tuple[list[list[int]], list[list[int]]]:
    tok_dir, n, seed, shard = args
    from xp.model.tokenizer import load_tokenizer
    from xp.nemo_skills.arith import test_problems, train_problems

    test = {r["problem"] for r in test_problems()}
    rows = list(train_problems(n, seed=seed, shard=shard, test=test))
    return PromptEncoder(load_tokenizer(tok_dir)).encode(rows)


def encode_train(tok_dir: str | Path, n: int, seed: int, workers: int) -> tuple[list, list]:
    """n training examples (shards of the train stream, encoded in `workers` processes), in shard order."""
    shards = max(1, workers) * 4
    per = [n // shards + (1 if k < n % shards else 0) for k in range(shards)]
    jobs = [(str(tok_dir), m, seed, k) for k, m in enumerate(per)]
    if workers <= 1:
        parts = [_encode_shard(j) for j in jobs]
    else:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_encode_shard, jobs)
    prompts = [p for part in parts for p in part[0]]
    comps = [c for part in parts for c in part[1]]
    return prompts, comps


@dataclass
class Encoded:
    """Examples packed as `seq` [N, T] (prompt, completion, EOS padding), `plen`, `clen` [N]."""

    seq: torch.Tensor
    plen: torch.Tensor
    clen: torch.Tensor
    lc: int                       # noisy-stream length (completion window)

    def to(self, device) -> "Encoded":
        return Encoded(self.seq.to(device), self.plen.to(device), self.clen.to(device), self.lc)

    def __len__(self) -> int:
        return self.seq.shape[0]


def pack(prompts: list[list[int]], completions: list[list[int]], lc: int) -> Encoded:
    """Pack encoded examples; completions longer than lc - 1 are an error (raise lc)."""
    pmax = max(len(p) for p in prompts)
    longest = max(len(c) for c in completions)
    if longest > lc - 1:
        raise ValueError(f"a completion has {longest} tokens; the noisy window lc={lc} must exceed it")
    seq = torch.full((len(prompts), pmax + lc), EOS_ID, dtype=torch.int32)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        seq[i, :len(p) + len(c)] = torch.tensor(p + c, dtype=torch.int32)
    plen = torch.tensor([len(p) for p in prompts], dtype=torch.long)
    clen = torch.tensor([len(c) for c in completions], dtype=torch.long)
    return Encoded(seq, plen, clen, lc)


@dataclass
class Batch:
    ids: torch.Tensor          # [b, Lc + T]
    positions: torch.Tensor    # [b, Lc + T]
    mask: torch.Tensor         # [b, 1, S, S] bool
    ar_target: torch.Tensor    # [b, T] next-token targets for the clean stream, -100 = no loss
    diff_target: torch.Tensor  # [b, Lc] clean token at masked noisy positions, -100 = no loss
    diff_weight: torch.Tensor  # [b, Lc] 1/t of the position's block
    diff_norm: torch.Tensor    # scalar: non-seed valid noisy positions (the 1/t loss is divided by it)
    lc: int


def make_batch(data: Encoded, idx: torch.Tensor, gen: torch.Generator, block_sizes: tuple[int, ...],
               eps: float = 0.05, full_mask: bool = False) -> Batch:
    """The dual-stream batch for examples `idx` (all on data's device; randomness from `gen`)."""
    dev = data.seq.device
    x0 = data.seq[idx].long()                                               # [b, T]
    P, C = data.plen[idx], data.clen[idx]
    b, T = x0.shape
    Lc = data.lc
    j = torch.arange(Lc, device=dev)[None]                                  # [1, Lc]
    abs_pos = P[:, None] + j                                                # [b, Lc]
    clean_tok = x0.gather(1, abs_pos.clamp(max=T - 1))
    sizes = torch.tensor(block_sizes, device=dev)
    B = sizes[torch.randint(len(block_sizes), (b,), device=dev, generator=gen)][:, None]   # [b, 1]
    shift = (torch.rand((b, 1), device=dev, generator=gen) * B).long()
    off = (B - shift) % B
    bid = (j + off) // B                                                    # block id per noisy position
    bstart = (bid * B - off).clamp(min=0)
    seed = j == bstart
    last_bid = bid.gather(1, (C - 1)[:, None])
    valid = bid <= last_bid
    nblk = Lc // min(block_sizes) + 2
    t = eps + (1 - eps) * torch.rand((b, nblk), device=dev, generator=gen)
    t_pos = t.gather(1, bid)
    masked = ~seed & valid
    if not full_mask:
        masked &= torch.rand((b, Lc), device=dev, generator=gen) < t_pos
    noisy = torch.where(masked, torch.full_like(clean_tok, MASK_ID), clean_tok)
    ids = torch.cat([noisy, x0], 1)
    positions = torch.cat([abs_pos, torch.arange(T, device=dev)[None].expand(b, T)], 1)
    i = torch.arange(T, device=dev)
    nn_ = bid[:, :, None] == bid[:, None, :]                                # [b, Lc, Lc]
    nc = i[None, None, :] < (P[:, None] + bstart)[:, :, None]                # [b, Lc, T]
    cc = (i[None, :] <= i[:, None])[None].expand(b, T, T)
    top = torch.cat([nn_, nc], 2)
    bottom = torch.cat([torch.zeros((b, T, Lc), dtype=torch.bool, device=dev), cc], 2)
    mask = torch.cat([top, bottom], 1)[:, None]
    # clean logit i predicts token i+1; loss only where i+1 is a completion token
    nxt = torch.cat([x0[:, 1:], torch.full((b, 1), PAD_ID, device=dev, dtype=x0.dtype)], 1)
    in_comp = (i[None] + 1 >= P[:, None]) & (i[None] + 1 < (P + C)[:, None])
    ar_target = torch.where(in_comp, nxt, torch.full_like(nxt, -100))
    diff_target = torch.where(masked, clean_tok, torch.full_like(clean_tok, -100))
    diff_norm = (~seed & valid).sum().clamp(min=1).float()
    return Batch(ids, positions, mask, ar_target, diff_target, 1.0 / t_pos, diff_norm, Lc)
