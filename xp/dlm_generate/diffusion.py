"""Block diffusion (upstream `generate`), batched.

Per block of B positions: position 0 is the seed (the last causal logit's token), the other B-1
are masks. Denoise passes are bidirectional and read-only on the cache: each commits the most
confident masked position plus every masked position with confidence >= threshold (threshold None:
the even schedule, one per step here), at most B passes. Then one causal commit pass writes the
block into the cache and its last logit gives the next seed.

NFE per block = denoise passes + 1 (prefill excluded). token_pass: the seed of block 0 is pass 0,
a denoised token gets its denoise pass, a later seed gets the commit pass that produced it.
"""

from __future__ import annotations

import torch

from xp.dlm_generate.common import Rows, choose_tokens, diffusion_budget, prefill


def transfer_schedule(masked: int, steps: int) -> list[int]:
    """Tokens to commit per step when threshold is None: split evenly, remainder first."""
    base, rem = divmod(masked, steps)
    return [base + (1 if i < rem else 0) for i in range(steps)]


def select_commits(conf: torch.Tensor, masked: torch.Tensor, threshold, step_k: torch.Tensor) -> torch.Tensor:
    """conf, masked [N, B] -> bool [N, B] positions to commit this step.

    threshold set: the top-1 masked position plus every masked one with conf >= threshold.
    threshold None: the top step_k[n] masked positions by confidence.
    """
    conf = conf.masked_fill(~masked, float("-inf"))
    order = conf.argsort(dim=-1, descending=True)                       # [N, B]
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(conf.shape[1], device=conf.device)
                                            .expand_as(order).contiguous())
    if threshold is None:
        pick = rank < step_k[:, None]
    else:
        pick = (rank == 0) | (conf >= threshold)
    return pick & masked


def generate_diffusion(bundle, requests, row_ids, on_commit) -> list:
    model, mask_id, eos = bundle.model, bundle.mask_token_id, bundle.eos_token_id
    B = requests[0].block_length
    threshold = requests[0].threshold
    budgets = [diffusion_budget(r) for r in requests]
    max_len = max(len(r.prompt_ids) + n for r, n in zip(requests, budgets)) + B
    cache = model.new_cache(len(requests), max_len, reuse=True)
    rows = Rows(requests, bundle, cache, on_commit, row_ids)
    logits = prefill(model, cache, [list(r.prompt_ids) for r in requests], eos)
    lens = [len(r.prompt_ids) for r in requests]                       # host copy of cache.lens
    seeds, _ = choose_tokens(logits[:, None], rows.temps, rows.gens, mask_id, confidence=False)
    seeds = seeds[:, 0]
    seed_pass = [0] * len(requests)
    while len(rows):
        n = len(rows)
        x = torch.full((n, B), mask_id, dtype=torch.long, device=model.device)
        x[:, 0] = seeds
        _inject_think(rows, x, B)
        masked = x == mask_id
        masked[:, 0] = False
        passes = torch.zeros((n, B), dtype=torch.long)                 # host: pass index per position
        passes[:, 0] = torch.tensor([seed_pass[j] for j in range(n)])
        schedule = torch.tensor([transfer_schedule(int(m), B) for m in masked.sum(1).tolist()],
                                device=x.device)                       # [n, B] commits per step
        early = torch.tensor([rows.state(j).request.eos_early_stop for j in range(n)], device=x.device)
        todo = masked.any(1) & ~_eos_stopped(x, masked, eos, early)    # [n] rows still denoising
        todo_host = todo.tolist()
        kv_len = max(lens) + B
        for step in range(B):
            if not any(todo_host):
                break
            logits = model(x, cache, "bidir", kv_len=kv_len)            # [n, B, V]
            x0, conf = choose_tokens(logits, rows.temps, rows.gens, mask_id)
            pick = select_commits(conf, masked, threshold, schedule[:, step]) & todo[:, None]
            x = torch.where(pick, x0, x)
            masked &= ~pick
            todo = masked.any(1) & ~_eos_stopped(x, masked, eos, early)
            host = torch.cat([pick, todo[:, None]], 1).cpu()           # one sync per pass
            for j in range(n):
                if todo_host[j]:
                    passes[j][host[j, :B]] = rows.state(j).nfe
                    rows.state(j).nfe += 1
            todo_host = host[:, B].tolist()
        # commit pass: causal, writes the block, gives the next seeds
        logits = model(x, cache, "causal", commit=True, kv_len=kv_len, logits_at=torch.full(
            (n,), B - 1, device=x.device))
        lens = [length + B for length in lens]
        seeds, _ = choose_tokens(logits[:, None], rows.temps, rows.gens, mask_id, confidence=False)
        seeds = seeds[:, 0]
        block = x.tolist()
        for j in range(n):
            s = rows.state(j)
            seed_pass[j] = s.nfe
            s.nfe += 1
            toks, ps = block[j], passes[j].tolist()
            if s.request.eos_early_stop and eos in toks:
                cut = toks.index(eos) + 1
                rows.emit(j, toks[:cut], ps[:cut])
                rows.finish(j, "stop")
                continue
            rows.emit(j, toks, ps)
            if len(s.tokens) >= budgets[rows.live[j]]:
                rows.finish(j, "length")
        keep = [j for j in range(n) if rows.state(j).finish is None]
        lens = [lens[j] for j in keep]
        seed_pass = [seed_pass[j] for j in keep]
        (seeds,) = rows.compact(seeds)
    return [s.result() for s in rows.states]


def _inject_think(rows: Rows, x: torch.Tensor, B: int) -> None:
    """Force `</think>` at the thinking budget position when it falls inside this block."""
    for j in range(len(rows)):
        at = rows.forced_think_index(j)
        start = len(rows.state(j).tokens)
        seed_closes = at is not None and at > start and int(x[j, 0]) == rows.bundle.end_think_token_id
        if at is not None and start <= at < start + B and not seed_closes:
            x[j, at - start] = rows.bundle.end_think_token_id


def _eos_stopped(x: torch.Tensor, masked: torch.Tensor, eos: int, early: torch.Tensor) -> torch.Tensor:
    """[n] rows whose block holds a committed EOS with no mask to its left (early: [n] stop enabled)."""
    is_eos = (x == eos) & ~masked
    first_eos = torch.where(is_eos.any(1), is_eos.float().argmax(1), x.shape[1])
    first_mask = torch.where(masked.any(1), masked.float().argmax(1), x.shape[1])
    return early & is_eos.any(1) & (first_eos < first_mask)
