"""GPU worker: one model, one engine thread, OpenAI-compatible HTTP.

    python -m xp.dlm_api.worker --model M --port P [--engine nemotron] [--batch-size B] ...

The model is loaded before the port opens, so "connection refused" means "not ready yet" (what
NeMo-Skills' readiness wait expects); afterwards GET /health is 200 while the worker can serve and
503 once SIGTERM arrived (in-flight requests still finish).
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from xp.dlm_api.batcher import Batcher
from xp.dlm_api.errors import install_error_handlers
from xp.dlm_api.http_common import (DEFAULT_MAX_BODY_BYTES, RequestGuard, add_common_routes, serve,
                                    setup_logging)
from xp.dlm_api.nfe_log import NfeLog
from xp.dlm_api.protocol import ServerDefaults
from xp.dlm_api.serving import EngineSet, WorkerService

log = logging.getLogger("xp.dlm_api.worker")


@dataclass
class WorkerState:
    """Lifecycle flags read by /health."""
    service: WorkerService
    worker_id: str
    engine: str
    batch_size: int
    stopping: bool = False

    def ready(self) -> bool:
        return not self.stopping and self.service.batcher.failed is None


def build_app(state: WorkerState, nfe_log: NfeLog, api_key: str | None, max_body_bytes: int) -> FastAPI:
    service = state.service

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        service.batcher.start()
        yield
        state.stopping = True
        await service.batcher.stop()
        nfe_log.close()

    app = FastAPI(title="nld-eval worker", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await service.chat(await request.body())

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await service.completion(await request.body())

    @app.get("/v1/models")
    async def models():
        return service.models()

    @app.get("/health")
    async def health():
        body = {"status": "ok" if state.ready() else "unavailable", "worker": state.worker_id,
                "model": service.served_model, "engine": state.engine, "batch_size": state.batch_size,
                "queued": service.batcher.queued, "busy": service.batcher.busy}
        if not state.ready():
            body["reason"] = "shutting down" if state.stopping else service.batcher.failed
            return JSONResponse(body, status_code=503)
        return body

    add_common_routes(app, state.ready)
    return RequestGuard(app, api_key, max_body_bytes)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m xp.dlm_api.worker",
                                description="Serve one model over the OpenAI-compatible HTTP API.")
    p.add_argument("--model", required=True, help="checkpoint dir, hub id, or builtin:tiny")
    p.add_argument("--tokenizer", default=None, help="tokenizer dir or hub id (default: the model's)")
    p.add_argument("--served-model-name", default=None, help="name in /v1/models (default: --model)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--engine", default="nemotron", help="default engine (generation_algorithm)")
    p.add_argument("--batch-size", type=int, default=1, help="max requests per engine batch")
    p.add_argument("--gather-ms", type=float, default=10.0,
                   help="how long the oldest request waits for batch mates (ms)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--lora-path", default=None, help="PEFT LoRA adapter dir (draft passes)")
    p.add_argument("--max-model-len", type=int, default=None, help="prompt + completion limit")
    p.add_argument("--nfe-log", default=None, help="append one JSON line per batch to this file")
    p.add_argument("--worker-id", default=None, help="name in the NFE log (default host:port)")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1/*")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    d = ServerDefaults()
    g = p.add_argument_group("defaults for requests that leave a field out")
    g.add_argument("--max-tokens", type=int, default=d.max_tokens)
    g.add_argument("--block-length", type=int, default=d.block_length)
    g.add_argument("--threshold", type=_threshold, default=d.threshold, help="0..1, or 'none'")
    g.add_argument("--temperature", type=float, default=d.temperature)
    g.add_argument("--linear-speculation", action="store_true")
    g.add_argument("--draft-lora-only", action="store_true")
    g.add_argument("--max-thinking-tokens", type=int, default=d.max_thinking_tokens)
    g.add_argument("--enable-thinking", action="store_true", help="chat template default")
    g.add_argument("--no-eos-early-stop", action="store_true")
    args = p.parse_args(argv)
    for name in ("batch_size", "max_tokens", "block_length", "max_body_bytes"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("gather_ms", "temperature"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.max_thinking_tokens is not None and args.max_thinking_tokens < 0:
        p.error("--max-thinking-tokens must be >= 0")
    if args.max_model_len is not None and args.max_model_len < 2:
        p.error("--max-model-len must be at least 2")
    if not 0 <= args.port <= 65535:
        p.error(f"--port must be 0..65535, got {args.port}")
    return args


def _threshold(text: str):
    if text.lower() in ("none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"threshold must be within 0..1 or 'none', got {text}")
    return value


def defaults_from(args: argparse.Namespace) -> ServerDefaults:
    return ServerDefaults(engine=args.engine, max_tokens=args.max_tokens, block_length=args.block_length,
                          threshold=args.threshold, temperature=args.temperature,
                          linear_speculation=args.linear_speculation, draft_lora_only=args.draft_lora_only,
                          max_thinking_tokens=args.max_thinking_tokens, enable_thinking=args.enable_thinking,
                          eos_early_stop=not args.no_eos_early_stop)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    from xp.dlm_generate.types import GenerationError
    from xp.model import load_model

    try:
        bundle = load_model(args.model, tokenizer=args.tokenizer, dtype=args.dtype, device=args.device,
                            lora_path=args.lora_path, max_model_len=args.max_model_len)
        engines = EngineSet(bundle, args.engine)
    except (ValueError, GenerationError) as exc:   # ModelLoadError is a ValueError
        print(f"worker: error: {exc}", file=sys.stderr)
        return 2
    if args.draft_lora_only and not bundle.has_lora:
        print("worker: error: --draft-lora-only needs a LoRA adapter: add --lora-path DIR", file=sys.stderr)
        return 2
    worker_id = args.worker_id or f"{args.host}:{args.port}"
    nfe_log = NfeLog(args.nfe_log, worker_id)
    batcher = Batcher(args.batch_size, args.gather_ms / 1000.0, nfe_log)
    service = WorkerService(bundle, engines, batcher, defaults_from(args),
                            args.served_model_name or args.model)
    state = WorkerState(service, worker_id, args.engine, args.batch_size)
    app = build_app(state, nfe_log, args.api_key, args.max_body_bytes)
    log.info("worker %s serving %s (engine %s, batch %d) on http://%s:%d", worker_id, args.model,
             args.engine, args.batch_size, args.host, args.port)

    def on_signal() -> None:
        state.stopping = True

    serve(app, args.host, args.port, on_signal)
    return 0


if __name__ == "__main__":
    sys.exit(main())
