"""Linear self-speculation (upstream `linear_spec_generate`), batched with per-row acceptance.

Cycle, per row, with the cache holding the prompt and every emitted token but the current seed:
1. draft: bidirectional pass(es) on [seed, MASK x (B-1)] (LoRA on when `use_draft_lora`);
   threshold 0/None fills every mask in one pass, threshold > 0 commits masks with confidence
   >= threshold (at least the best one) per pass until none is left;
2. verify: one causal pass on the drafted block (LoRA off), writing its K/V; ar[i] is the
   verifier's token for block position i+1;
3. accept the longest prefix with ar[i] == draft[i+1], plus the bonus token: a = matches + 1
   tokens ar[:a] are emitted, the cache is cropped to cache_len + a (seed + matched drafts), and
   ar[a-1] becomes the next seed.
Emitted tokens are always verifier tokens, so greedy output equals greedy AR. Rows accept
different lengths in the same cycle; their cache lengths simply diverge.

NFE = draft passes + verify passes (prefill excluded); acceptance_lengths has one entry per cycle.
"""

from __future__ import annotations

import torch

from xp.dlm_generate.common import Rows, choose_tokens, prefill
from xp.dlm_generate.diffusion import select_commits


def generate_speculation(bundle, requests, row_ids, on_commit) -> list:
    model, mask_id, eos = bundle.model, bundle.mask_token_id, bundle.eos_token_id
    B = requests[0].block_length
    threshold = requests[0].threshold
    lora = requests[0].use_draft_lora
    max_len = max(len(r.prompt_ids) + r.max_new_tokens for r in requests) + B
    cache = model.new_cache(len(requests), max_len, reuse=True)
    rows = Rows(requests, bundle, cache, on_commit, row_ids)
    for s in rows.states:
        s.acceptance = []
    logits = prefill(model, cache, [list(r.prompt_ids) for r in requests], eos)
    lens = [len(r.prompt_ids) for r in requests]                       # host copy of cache.lens
    seeds, _ = choose_tokens(logits[:, None], rows.temps, rows.gens, mask_id, confidence=False)
    seeds = seeds[:, 0].tolist()
    for j in range(len(rows)):
        if rows.forced_think_index(j) == 0:
            seeds[j] = bundle.end_think_token_id
        rows.emit(j, [seeds[j]], [0])
        _check_finished(rows, j, eos)
    lens, seeds = _compact(rows, lens, seeds)
    while len(rows):
        n = len(rows)
        x = torch.full((n, B), mask_id, dtype=torch.long, device=model.device)
        x[:, 0] = torch.tensor(seeds, device=model.device)
        kv_len = max(lens) + B
        x = _draft(rows, model, x, threshold, lora, kv_len, mask_id)
        logits = model(x, cache, "causal", kv_len=kv_len)               # verify: [n, B, V]
        ar, _ = choose_tokens(logits, rows.temps, rows.gens, mask_id, confidence=False)
        matches = torch.cumprod((ar[:, :-1] == x[:, 1:]).long(), dim=1).sum(1)   # [n]
        host = torch.cat([ar, matches[:, None] + 1], 1).tolist()        # one sync per cycle
        ar_host, accepted = [h[:B] for h in host], [h[B] for h in host]
        for j in range(n):
            s = rows.state(j)
            a = min(accepted[j], s.request.max_new_tokens - len(s.tokens))
            new = ar_host[j][:a]
            forced = rows.forced_think_index(j)
            if forced is not None and bundle.end_think_token_id not in new[:forced - len(s.tokens)] \
                    and len(s.tokens) <= forced < len(s.tokens) + a:
                a = forced - len(s.tokens) + 1                            # stop at the budget, force </think>
                new = new[:a - 1] + [bundle.end_think_token_id]
            verify_pass = s.nfe
            s.nfe += 1
            if s.request.eos_early_stop and eos in new:
                new = new[:new.index(eos) + 1]
            s.acceptance.append(len(new))
            rows.emit(j, new, [verify_pass] * len(new))
            lens[j] += a
            seeds[j] = new[-1]
            _check_finished(rows, j, eos)
        cache.crop(torch.tensor(lens, device=cache.lens.device))
        lens, seeds = _compact(rows, lens, seeds)
    return [s.result() for s in rows.states]


def _draft(rows: Rows, model, x: torch.Tensor, threshold, lora: bool, kv_len: int, mask_id: int) -> torch.Tensor:
    """Fill the masks of x [n, B] with bidirectional draft passes; counts each row's passes."""
    masked = x == mask_id
    masked[:, 0] = False
    one_pass = threshold is None or threshold == 0
    if one_pass and x.shape[1] > 1:    # every row has B-1 masks: one pass fills them, no sync needed
        logits = model(x, rows.cache, "bidir", lora=lora, kv_len=kv_len)
        x0, _ = choose_tokens(logits, rows.temps, rows.gens, mask_id, confidence=False)
        for j in range(len(rows)):
            rows.state(j).nfe += 1
        return torch.where(masked, x0, x)
    while True:
        todo = masked.any(1)
        if not bool(todo.any()):
            return x
        logits = model(x, rows.cache, "bidir", lora=lora, kv_len=kv_len)  # [n, B, V]
        x0, conf = choose_tokens(logits, rows.temps, rows.gens, mask_id)
        pick = masked if one_pass else select_commits(conf, masked, threshold, None)
        x = torch.where(pick, x0, x)
        masked &= ~pick
        for j, t in enumerate(todo.tolist()):
            if t:
                rows.state(j).nfe += 1


def _check_finished(rows: Rows, j: int, eos: int) -> None:
    s = rows.state(j)
    if s.request.eos_early_stop and s.tokens and s.tokens[-1] == eos:
        rows.finish(j, "stop")
    elif len(s.tokens) >= s.request.max_new_tokens:
        rows.finish(j, "length")


def _compact(rows: Rows, lens: list[int], seeds: list[int]) -> tuple[list[int], list[int]]:
    keep = [j for j in range(len(rows)) if rows.state(j).finish is None]
    rows.compact()
    return [lens[j] for j in keep], [seeds[j] for j in keep]
