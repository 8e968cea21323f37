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
        """Greedy/sampled AR decoding. Step t+1 is queued before the host reads step t's tokens
        (assuming no row stops or is forced), so the GPU never waits for the host's decision; when
        the assumption fails the step ahead is undone (forced token) or its finished rows dropped."""
        b, model = self.bundle, self.bundle.model
        max_len = max(len(r.prompt_ids) + r.max_new_tokens for r in requests) + 2
        cache = model.new_cache(len(requests), max_len, reuse=True)
        rows = Rows(requests, b, cache, on_commit, row_ids)
        logits = prefill(model, cache, [list(r.prompt_ids) for r in requests], b.eos_token_id)
        lens = [len(r.prompt_ids) for r in requests]                 # host copy of cache.lens
        tokens = self._choose(rows, logits)
        step = 0
        while True:
            copy = rows.reader.start(tokens)
            ahead = None
            if any(len(rows.state(j).tokens) + 1 < rows.state(j).request.max_new_tokens for j in range(len(rows))):
                ahead = self._choose(rows, self._step(model, cache, tokens, max(lens) + 1))
            host = copy.get()
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
            if ahead is not None and forced:   # the step ahead fed a token that was overridden: undo it
                cache.crop(cache.lens - 1)
                ahead = None
            tokens = torch.tensor(host, dtype=torch.long, device=model.device) if forced else tokens
            if ahead is None:
                (tokens,) = rows.compact(tokens)
            else:
                tokens, ahead = rows.compact(tokens, ahead)
            if not len(rows):
                break
            step += 1
            tokens = ahead if ahead is not None else self._choose(rows, self._step(model, cache, tokens, max(lens)))
        return [s.result() for s in rows.states]

    @staticmethod
    def _step(model, cache, tokens: torch.Tensor, kv_len: int) -> torch.Tensor:
        """One causal token step of every row (committed); last-token logits [N, V]."""
        return model(tokens[:, None], cache, "causal", commit=True, kv_len=kv_len, logits_at=torch.zeros_like(tokens))

    def _choose(self, rows: Rows, logits: torch.Tensor) -> torch.Tensor:
        tokens, _ = choose_tokens(logits[:, None], rows.temps, rows.gens, self.bundle.mask_token_id, confidence=False)
        return tokens[:, 0]
