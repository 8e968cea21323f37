"""The per-batch NFE log (`nfe_log.jsonl`): one JSON line per engine batch, flushed per line so a
killed job keeps every finished batch. Format: docs/architecture.md section 9."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from xp.dlm_generate.types import GenerationRequest, GenerationResult


class NfeLog:
    def __init__(self, path: Optional[str], worker_id: str):
        self.worker_id = worker_id
        self._lock = threading.Lock()
        self._file = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8", buffering=1)

    def record(self, engine: str, requests: list[GenerationRequest],
               results: list[GenerationResult], seconds: float) -> None:
        if self._file is None:
            return
        first = asdict(requests[0])
        settings = {k: first[k] for k in ("block_length", "threshold", "temperature", "linear_speculation",
                                          "use_draft_lora", "max_thinking_tokens", "eos_early_stop")}
        settings["engine"] = engine
        settings["max_new_tokens"] = [r.max_new_tokens for r in requests]
        spec = any(r.acceptance_lengths is not None for r in results)
        line = {
            "time": round(time.time(), 3),
            "worker": self.worker_id,
            "request_ids": [r.request_id for r in requests],
            "batch_size": len(requests),
            "prompt_tokens": [len(r.prompt_ids) for r in requests],
            "completion_tokens": [len(r.tokens) for r in results],
            "nfe": [r.nfe for r in results],
            "acceptance_lengths": [r.acceptance_lengths or [] for r in results] if spec else None,
            "seconds": round(seconds, 4),
            "settings": settings,
        }
        with self._lock:
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
