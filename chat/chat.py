"""Multi-turn chat with a tri-mode model, in-process; switch decoding mode mid-conversation.

    python chat/chat.py --mode dlm [--model builtin:tiny] [--max-new-tokens 512] [--enable-thinking]

One line per message. Commands: /mode ar|dlm|linear_spec|linear_spec_lora, /set KEY VALUE
(max_new_tokens, block_length, threshold, temperature, thinking), /show, /passes on|off, /reset,
/help, /quit. The conversation history is kept across mode switches: the same model answers in
every mode, only the decoding changes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a plain script from anywhere

from chat.cli import build_parser, fail, open_session, print_reply, stream_to_stdout  # noqa: E402
from chat.session import MODES, ChatError, ChatSession  # noqa: E402

HELP = __doc__.split("\n\n")[2].strip()
SETTABLE = {"max_new_tokens": int, "block_length": int, "temperature": float}


def parse_value(key: str, text: str):
    """Typed value for `/set KEY VALUE`; raises ChatError with the accepted keys."""
    try:
        if key in SETTABLE:
            return key, SETTABLE[key](text)
        if key == "threshold":
            return key, None if text.lower() in ("none", "off") else float(text)
        if key in ("thinking", "enable_thinking"):
            return "enable_thinking", text.lower() in ("1", "on", "true", "yes")
    except ValueError:
        raise ChatError(f"bad value '{text}' for {key}") from None
    raise ChatError(f"unknown setting '{key}'; settable: {', '.join([*SETTABLE, 'threshold', 'thinking'])}")


def run_command(session: ChatSession, line: str, state: dict) -> bool:
    """Apply one /command; returns False when the user asked to quit."""
    cmd, *rest = line[1:].split()
    if cmd in ("quit", "exit"):
        return False
    if cmd == "reset":
        session.reset()
        print("(history cleared)")
    elif cmd == "mode" and len(rest) == 1:
        session.set_mode(rest[0])
        print(f"(mode {session.settings.mode}: {describe(session)})")
    elif cmd == "set" and len(rest) == 2:
        key, value = parse_value(*rest)
        session.update(**{key: value})
        print(f"({describe(session)})")
    elif cmd == "show":
        print(f"(mode {session.settings.mode}: {describe(session)}; {len(session.messages)} messages)")
    elif cmd == "passes" and rest in (["on"], ["off"]):
        state["show_passes"] = rest[0] == "on"
    elif cmd == "help":
        print(HELP)
    else:
        raise ChatError(f"unknown command '{line}'; modes: {', '.join(MODES)}; /help lists commands")
    return True


def describe(session: ChatSession) -> str:
    s = session.settings
    return (f"max_new_tokens={s.max_new_tokens} block_length={s.block_length} threshold={s.threshold} "
            f"temperature={s.temperature} thinking={'on' if s.enable_thinking else 'off'}")


def read_line(interactive: bool):
    try:
        return input("you> ") if interactive else sys.stdin.readline() or None
    except EOFError:
        return None


def main() -> int:
    args = build_parser(__doc__.splitlines()[0], with_mode=True).parse_args()
    from xp.dlm_generate.types import GenerationError  # noqa: PLC0415
    from xp.model import ModelLoadError  # noqa: PLC0415

    try:
        session = open_session(args, args.mode, want_lora=True)
    except (ChatError, ModelLoadError) as exc:
        return fail(str(exc))
    interactive = sys.stdin.isatty()
    state = {"show_passes": args.show_passes}
    print(f"chat ready (mode {args.mode}: {describe(session)}); /help for commands", flush=True)
    while (line := read_line(interactive)) is not None:
        line = line.strip()
        try:
            if line.startswith("/"):
                if not run_command(session, line, state):
                    break
            elif line:
                print(f"assistant [{session.settings.mode}]> ", end="", flush=True)
                reply = session.send(line, on_text=stream_to_stdout)
                print_reply(session, reply, state["show_passes"])
        except (ChatError, GenerationError) as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
