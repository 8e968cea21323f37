"""CUDA graphs for the fixed-shape decoding forwards, over a reusable KV arena.

A decode step of the 8B streams ~16 GB of weights in a few milliseconds, but launching its ~450
kernels from Python takes longer than that. So the small forwards (a token step, a block pass, a
verify pass) are captured once per shape and replayed:

- `KVArena`: one set of zeroed K/V buffers per model, handed to successive engine calls as
  `KVCache` views (rows [:batch]). Buffer addresses never change, so graphs stay valid across calls;
  dropping finished rows compacts in place (`KVCache.keep_rows`).
- `GraphSet`: captured forwards keyed by (rows, chunk length, mode, LoRA, attended slots,
  logits_at?). The attended-slot count is rounded up to `kv_step`, which the mask makes exact; so a
  256-token decode needs only a few graphs per shape.

Outputs of a replay live in the graph's memory: they are valid until the next forward on the same
arena (the engines consume logits before the next forward). With `capture=False` the same
bookkeeping runs eagerly, which lets CPU tests check it.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class _Captured:
    graph: Optional["torch.cuda.CUDAGraph"]
    ids: torch.Tensor
    logits_at: Optional[torch.Tensor]
    out: Optional[torch.Tensor]


class GraphSet:
    def __init__(self, *, kv_step: int = 128, max_len_chunk: int = 64, capture: bool = True):
        self.kv_step = kv_step
        self.max_len_chunk = max_len_chunk        # longer chunks (prefill) run eagerly
        self.capture = capture
        self.graphs: dict[tuple, _Captured] = {}
        self.pool = torch.cuda.graph_pool_handle() if capture else None
        self.capture_seconds = 0.0                # one-time cost, reported by the benchmark

    def kv_bucket(self, kv_len: Optional[int], max_len: int) -> int:
        kv = max_len if kv_len is None else kv_len
        return min(-(-kv // self.kv_step) * self.kv_step, max_len)

    def run(self, model, cache, input_ids: torch.Tensor, mode: str, lora: bool, kv_len: Optional[int],
            logits_at: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Logits of the forward, replayed from a graph; None if this shape is not graphed."""
        B, L = input_ids.shape
        if L > self.max_len_chunk:
            return None
        kv = self.kv_bucket(kv_len, cache.max_len)
        key = (B, L, mode, lora, kv, logits_at is not None)
        entry = self.graphs.get(key)
        if entry is None:
            entry = self.graphs[key] = self._capture(model, cache, input_ids, mode, lora, kv, logits_at)
        entry.ids.copy_(input_ids)
        if logits_at is not None:
            entry.logits_at.copy_(logits_at)
        if entry.graph is None:
            return model._forward(entry.ids, cache, mode, lora, kv, entry.logits_at)
        entry.graph.replay()
        return entry.out

    def _capture(self, model, cache, input_ids, mode, lora, kv, logits_at) -> _Captured:
        ids = input_ids.clone()
        at = None if logits_at is None else logits_at.clone()
        if not self.capture:
            return _Captured(None, ids, at, None)
        start = time.perf_counter()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):   # warm-up: compiles kernels, creates cuBLAS workspaces
            for _ in range(2):
                model._forward(ids, cache, mode, lora, kv, at)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = model._forward(ids, cache, mode, lora, kv, at)
        torch.cuda.synchronize()
        self.capture_seconds += time.perf_counter() - start
        return _Captured(graph, ids, at, out)


class KVArena:
    """Reusable K/V buffers [batch, kv_heads, max_len, head_dim] per layer plus lengths and graphs."""

    def __init__(self, config, batch: int, max_len: int, *, dtype: torch.dtype, device, capture: bool):
        shape = (batch, config.num_key_value_heads, max_len, config.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.lens = torch.zeros(batch, dtype=torch.long, device=device)
        self.batch, self.max_len = batch, max_len
        self.graphs = GraphSet(capture=capture)
        self._holder: Optional[weakref.ref] = None

    def fits(self, batch: int, max_len: int) -> bool:
        return batch <= self.batch and max_len <= self.max_len

    @property
    def busy(self) -> bool:
        return self._holder is not None and self._holder() is not None

    def hold(self, cache) -> None:
        self._holder = weakref.ref(cache)
