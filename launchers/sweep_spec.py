"""--sweep "knob=v1,v2;knob=v3,...": parsing, validation and the grid (pure; no files, no submission).

Every mistake is one UserError line that names the knob and the bad part, so nothing is ever submitted
for a spec that cannot be run as written.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from launchers.errors import UserError
from launchers.naming import fmt_number
from launchers.resolve import to_float, to_int

_ON, _OFF = {"on", "true", "yes", "1"}, {"off", "false", "no", "0"}


@dataclass(frozen=True)
class Knob:
    name: str          # the spec's name (flag name with '_')
    flag: str          # the eval.sh flag that the knob replaces
    raw_key: str       # key in the parsed flags dict
    tag: str           # short tag for labels: blk4, thr0.9, ...
    parse: Callable[[str, str], Any]


def _int(minimum: int) -> Callable[[str, str], int]:
    return lambda knob, text: to_int(f"--sweep {knob}", text, minimum=minimum)


def _threshold(knob: str, text: str) -> float:
    value = to_float(f"--sweep {knob}", text)
    if value > 1:
        raise UserError(f"--sweep {knob} expects numbers between 0 and 1, got '{text}'")
    return value


def _lora(knob: str, text: str) -> bool:
    low = text.lower()
    if low not in _ON | _OFF:
        raise UserError(f"--sweep {knob} expects on or off, got '{text}'")
    return low in _ON


def _mode(knob: str, text: str) -> str:
    return text  # checked against configs/modes.yaml in parse_spec (needs the mode table)


KNOBS: dict[str, Knob] = {k.name: k for k in (
    Knob("block_length", "--block-length", "block_length", "blk", _int(1)),
    Knob("threshold", "--threshold", "threshold", "thr", _threshold),
    Knob("temperature", "--temperature", "temperature", "temp", lambda k, t: to_float(f"--sweep {k}", t)),
    Knob("tokens", "--tokens", "tokens", "tok", _int(1)),
    Knob("max_thinking_tokens", "--max-thinking-tokens", "max_thinking_tokens", "think", _int(0)),
    Knob("lora", "--lora/--no-lora", "lora", "lora", _lora),
    Knob("mode", "--mode", "mode", "", _mode),
)}


@dataclass(frozen=True)
class SweepSpec:
    text: str
    axes: tuple[tuple[str, tuple[Any, ...]], ...]   # (knob, values) in the order written

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.axes)

    def points(self) -> list[dict[str, Any]]:
        """The full grid, first knob slowest (as written)."""
        names = self.knobs
        return [dict(zip(names, combo)) for combo in itertools.product(*(v for _, v in self.axes))]


def parse_spec(text: str, modes: Sequence[str]) -> SweepSpec:
    if not text or not text.strip():
        raise UserError("--sweep is empty: give 'knob=v1,v2;knob=...', e.g. \"block_length=4,8;threshold=0.7,0.9\"")
    axes: list[tuple[str, tuple[Any, ...]]] = []
    for entry in text.split(";"):
        knob, values = _parse_entry(entry.strip(), modes)
        if any(k == knob for k, _ in axes):
            raise UserError(f"--sweep: knob '{knob}' is given twice; list all its values once: {knob}=v1,v2")
        axes.append((knob, values))
    return SweepSpec(text=text.strip(), axes=tuple(axes))


def _parse_entry(entry: str, modes: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
    if not entry:
        raise UserError("--sweep: empty entry (two ';' in a row or a trailing ';'); write knob=v1,v2;knob=v3")
    name, eq, rest = entry.partition("=")
    knob = name.strip().replace("-", "_")
    if not eq:
        raise UserError(f"--sweep: entry '{entry}' has no '=': write knob=v1,v2 (knobs: {', '.join(KNOBS)})")
    if knob not in KNOBS:
        raise UserError(f"--sweep: unknown knob '{name.strip()}'; sweepable knobs: {', '.join(KNOBS)}")
    texts = [t.strip() for t in rest.split(",")]
    if not rest.strip() or any(not t for t in texts):
        raise UserError(f"--sweep {knob}: empty value list or empty value in '{entry}'; give v1,v2,...")
    values = tuple(KNOBS[knob].parse(knob, t) for t in texts)
    if knob == "mode":
        bad = [v for v in values if v not in modes]
        if bad:
            raise UserError(f"--sweep mode: unknown mode '{bad[0]}'; choose from {', '.join(modes)}")
    dup = next((t for i, (t, v) in enumerate(zip(texts, values)) if v in values[:i]), None)
    if dup is not None:
        raise UserError(f"--sweep {knob}: value '{dup}' is listed twice; list each value once")
    return knob, values


def value_text(knob: str, value: Any) -> str:
    if knob == "lora":
        return "on" if value else "off"
    if isinstance(value, float):
        return fmt_number(value)
    return str(value)


def point_label(point: dict[str, Any]) -> str:
    """Short, file-name safe label of a grid point: blk4_thr0.7, dlm_blk8, lora_nolora ..."""
    parts = []
    for knob, value in point.items():
        if knob == "lora":
            parts.append("lora" if value else "nolora")
        else:
            parts.append(f"{KNOBS[knob].tag}{value_text(knob, value)}")
    return "_".join(parts)


def apply_point(raw: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """The flags of a single run at this grid point (as if the user had typed them)."""
    out = dict(raw)
    for knob, value in point.items():
        out[KNOBS[knob].raw_key] = value if isinstance(value, bool) else value_text(knob, value)
    return out


def check_no_flag_conflict(raw: dict[str, Any], spec: SweepSpec) -> None:
    """A swept knob must not also be given as a flag: which value would win is a guess."""
    for knob in spec.knobs:
        if raw.get(KNOBS[knob].raw_key) is not None:
            raise UserError(f"--sweep sweeps '{knob}' but {KNOBS[knob].flag} is also given; drop the flag "
                            "(the sweep sets it per point)")
