"""`ar_native`: plain autoregressive decoding, one token per causal forward.

NFE convention (upstream `ar_generate`): one per generated token. The prefill yields token 0 and
the forward that would follow the last token is never run, so nfe == len(tokens) and
token_pass[i] == i.
"""

from __future__ import annotations

from typing import Optional

import torch

from xp.dlm_generate.common import Rows, choose_tokens, group_by_key, prefill, validate
from xp.dlm_generate.types import CommitCallback, GenerationRequest, GenerationResult


class ArNativeEngine:
    name = "ar_native"

    def __init__(self, bundle):
        self.bundle = bundle

    def generate(self, requests: list[GenerationRequest],
                 on_commit: Optional[CommitCallback] = None) -> list[GenerationResult]:
        validate(requests, self.bundle, diffusion=False)
        results: list[Optional[GenerationResult]] = [None] * len(requests)
        for group in group_by_key(requests):
            for i, res in zip(group, self._generate([requests[i] for i in group], group, on_commit)):
                results[i] = res
        return results  # type: ignore[return-value]

    def _generate(self, requests, row_ids, on_commit) -> list[GenerationResult]:
        b, model = self.bundle, self.bundle.model
        max_len = max(len(r.prompt_ids) + r.max_new_tokens for r in requests) + 1
        cache = model.new_cache(len(requests), max_len, reuse=True)
        rows = Rows(requests, b, cache, on_commit, row_ids)
        logits = prefill(model, cache, [list(r.prompt_ids) for r in requests], b.eos_token_id)
        lens = [len(r.prompt_ids) for r in requests]                 # host copy of cache.lens
        step = 0
        while True:
            tokens, _ = choose_tokens(logits[:, None], rows.temps, rows.gens, b.mask_token_id, confidence=False)
            tokens = tokens[:, 0]                                      # [N]
            host = tokens.tolist()
            forced = False
            for j in range(len(rows)):
                s = rows.state(j)
                if rows.forced_think_index(j) == len(s.tokens):
                    host[j], forced = b.end_think_token_id, True
                s.nfe += 1
                rows.emit(j, [host[j]], [step])
                if host[j] == b.eos_token_id and s.request.eos_early_stop:
                    rows.finish(j, "stop")
                elif len(s.tokens) >= s.request.max_new_tokens:
                    rows.finish(j, "length")
            keep = [j for j in range(len(rows)) if rows.state(j).finish is None]
            lens = [lens[j] + 1 for j in keep]
            if forced:   # otherwise the device copy is already right (saves a host->device sync)
                tokens = torch.tensor(host, dtype=torch.long, device=model.device)
            (tokens,) = rows.compact(tokens)
            if not len(rows):
                break
            step += 1
            logits = model(tokens[:, None], cache, "causal", commit=True, kv_len=max(lens),
                           logits_at=torch.zeros_like(tokens))
        return [s.result() for s in rows.states]
