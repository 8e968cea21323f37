"""Command-line plumbing shared by the chat scripts: flags, model loading, printing, errors."""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from chat.session import (DEFAULT_MODEL, MODES, ChatError, ChatSession, ChatSettings, Reply,
                          default_lora_path, mode_spec, pick_device, pick_dtype)


UNSET = object()  # flag not given: keep the mode's default


def threshold_arg(text: str) -> Optional[float]:
    if text.lower() in ("none", "null", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got '{text}'") from None


def build_parser(description: str, with_mode: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    if with_mode:
        p.add_argument("--mode", choices=MODES, default="dlm", help="decoding mode (default: dlm)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="hub id, local checkpoint dir, builtin:tiny or builtin:arith (default: %(default)s)")
    p.add_argument("--tokenizer", default=None, help="tokenizer id or dir (default: the model's)")
    p.add_argument("--lora-path", default=None,
                   help="draft LoRA adapter dir (default: <checkpoint>/linear_spec_lora when present)")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"),
                   help="weights dtype (default: bf16 on GPU, fp32 on CPU)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--block-length", type=int, default=None, help="default: the mode's (ar 1, dlm 8, linear_spec 32)")
    p.add_argument("--threshold", type=threshold_arg, default=UNSET,
                   help="confidence threshold, or 'none' (default: the mode's: dlm 0.9, linear_spec 0)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--enable-thinking", action="store_true", help="let the chat template open a <think> block")
    p.add_argument("--show-passes", action="store_true",
                   help="after each reply, list which text each forward pass committed")
    return p


def settings_from_args(args, mode: str) -> ChatSettings:
    """Flags the user gave override the mode's defaults; an explicit '--threshold none' counts."""
    given = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
             "enable_thinking": args.enable_thinking}
    if args.block_length is not None:
        given["block_length"] = args.block_length
    if args.threshold is not UNSET:
        given["threshold"] = args.threshold
    return ChatSettings.for_mode(mode, **given)


def open_session(args, mode: str, want_lora: bool) -> ChatSession:
    """Load the model (with the draft adapter when wanted and found) and start a session."""
    from xp.model import load_model  # noqa: PLC0415

    settings = settings_from_args(args, mode)
    lora = args.lora_path or (default_lora_path(args.model) if want_lora else None)
    if mode_spec(mode).use_draft_lora and lora is None:
        raise ChatError(f"mode '{mode}' needs a draft LoRA adapter and {args.model} ships none; "
                        "pass --lora-path DIR (for the 8B: the repo's linear_spec_lora/ folder)")
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    note = f" + LoRA {lora}" if lora else ""
    print(f"loading {args.model} on {device} ({dtype}){note} ...", file=sys.stderr, flush=True)
    bundle = load_model(args.model, tokenizer=args.tokenizer, dtype=dtype, device=device, lora_path=lora)
    return ChatSession(bundle, settings)


def print_reply(session: ChatSession, reply: Reply, show_passes: bool) -> None:
    print()
    if show_passes:
        for p, text in session.pass_groups(reply):
            print(f"  pass {p:>4}: {text!r}")
    print(reply.stats_line(session.settings.mode), flush=True)


def stream_to_stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def fail(message: str) -> "int":
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_single_turn(mode: str, description: str, argv: Optional[list[str]] = None) -> int:
    """Entry point of chat_<mode>.py: one user message from stdin, one reply, its NFE and TPF."""
    args = build_parser(description, with_mode=False).parse_args(argv)
    from xp.dlm_generate.types import GenerationError  # noqa: PLC0415
    from xp.model import ModelLoadError  # noqa: PLC0415

    if sys.stdin.isatty():
        print("Type your message, then Ctrl-D:", file=sys.stderr)
    message = sys.stdin.read().strip()  # before loading: no point loading 16 GB for an empty message
    if not message:
        return fail(f"no message on stdin; pipe one in, e.g. echo 'Hello' | python chat/chat_{mode}.py")
    try:
        session = open_session(args, mode, want_lora=mode_spec(mode).use_draft_lora)
        reply = session.send(message, on_text=stream_to_stdout)
    except (ChatError, ModelLoadError, GenerationError) as exc:
        return fail(str(exc))
    print_reply(session, reply, args.show_passes)
    return 0
