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

from typing import Optional

import torch

from xp.dlm_generate.common import Rows, choose_tokens, prefill
from xp.dlm_generate.diffusion import select_commits


def generate_speculation(bundle, requests, row_ids, on_commit) -> list:
    model, mask_id, eos = bundle.model, bundle.mask_token_id, bundle.eos_token_id
    B = requests[0].block_length
    threshold = requests[0].threshold
    lora = requests[0].use_draft_lora
    max_len = max(len(r.prompt_ids) + r.max_new_tokens for r in requests) + 2 * B   # + a block drafted ahead
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
    lens, seeds, _ = _compact(rows, lens, seeds)
    one_pass = threshold is None or threshold == 0
    drafted = None             # the next block, drafted ahead of the host's decision (one-pass drafts)
    while len(rows):
        n = len(rows)
        kv_len = max(lens) + B
        if drafted is None:
            x = _draft(rows, model, _block(seeds, B, mask_id, model.device), threshold, lora, kv_len, mask_id)
        else:
            x = drafted
            for j in range(n):
                rows.state(j).nfe += 1
        logits = model(x, cache, "causal", kv_len=kv_len)               # verify: [n, B, V]
        ar, _ = choose_tokens(logits, rows.temps, rows.gens, mask_id, confidence=False)
        matches = _matched_drafts(ar, x)                                # [n]
        copy = rows.reader.start(torch.cat([ar, matches[:, None] + 1], 1))   # read below: the cycle's one wait
        drafted = None
        if one_pass and B > 1 and _may_continue(rows, B):
            # draft the next block now, assuming every row takes the default decision (all matches
            # plus the bonus token, ar[matches] as the next seed); the host checks it below
            cache.advance(matches + 1)
            nxt = torch.full((n, B), mask_id, dtype=torch.long, device=model.device)
            nxt[:, :1] = ar.gather(1, matches[:, None])
            drafted = _draft_pass(rows, model, nxt, lora, min(max(lens) + 2 * B, cache.max_len), mask_id)
        host = copy.get()
        ar_host, accepted = [h[:B] for h in host], [h[B] for h in host]
        default = True
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
            if s.finish is None and (a != accepted[j] or seeds[j] != ar_host[j][a - 1]):
                default = False                                           # the block drafted ahead is wrong
        if drafted is None or not default:
            drafted = None
            cache.crop(torch.tensor(lens, device=cache.lens.device))
        lens, seeds, drafted = _compact(rows, lens, seeds, drafted)
    return [s.result() for s in rows.states]


def _matched_drafts(ar: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per row, how many drafted tokens x[:, 1:] equal the verifier's ar[:, :-1] before the first
    mismatch (first-mismatch index by argmax: no scan kernel, nothing that waits for the GPU)."""
    equal = ar[:, :-1] == x[:, 1:]
    return torch.where(equal.all(1), equal.shape[1], (~equal).int().argmax(1))


def _block(seeds: list[int], B: int, mask_id: int, device) -> torch.Tensor:
    """[seed, MASK x (B-1)] per row."""
    x = torch.full((len(seeds), B), mask_id, dtype=torch.long, device=device)
    x[:, 0] = torch.tensor(seeds, device=device)
    return x


def _may_continue(rows: Rows, B: int) -> bool:
    """Could some row still be running after this cycle (so a block drafted ahead may be used)?"""
    return any(len(rows.state(j).tokens) + B < rows.state(j).request.max_new_tokens for j in range(len(rows)))


def _draft_pass(rows: Rows, model, x: torch.Tensor, lora: bool, kv_len: int, mask_id: int) -> torch.Tensor:
    """One bidirectional pass filling every mask of x [n, B] but the seed (NFE counted by the caller)."""
    logits = model(x, rows.cache, "bidir", lora=lora, kv_len=kv_len)
    x0, _ = choose_tokens(logits, rows.temps, rows.gens, mask_id, confidence=False)
    return torch.cat([x[:, :1], x0[:, 1:]], 1)


def _draft(rows: Rows, model, x: torch.Tensor, threshold, lora: bool, kv_len: int, mask_id: int) -> torch.Tensor:
    """Fill the masks of x [n, B] with bidirectional draft passes; counts each row's passes."""
    masked = x == mask_id
    masked[:, 0] = False
    one_pass = threshold is None or threshold == 0
    if one_pass and x.shape[1] > 1:    # every row has B-1 masks: one pass fills them, no sync needed
        for j in range(len(rows)):
            rows.state(j).nfe += 1
        return _draft_pass(rows, model, x, lora, kv_len, mask_id)
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


def _compact(rows: Rows, lens: list[int], seeds: list[int], drafted: Optional[torch.Tensor] = None):
    """Drop finished rows from the batch and from lens, seeds and the block drafted ahead."""
    keep = [j for j in range(len(rows)) if rows.state(j).finish is None]
    if drafted is None:
        rows.compact()
    else:
        (drafted,) = rows.compact(drafted)
    return [lens[j] for j in keep], [seeds[j] for j in keep], drafted
