"""Completion token ids to text, with stop strings, for whole answers and for streams.

Stop strings are applied to the text (the engine does not know them): the answer is cut before
the first match and finishes with `stop`. While streaming, text that might still turn into a stop
string, or that ends in an incomplete UTF-8 sequence, is held back until it is certain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence


def cut_at_eos(tokens: Sequence[int], eos_ids: frozenset[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in eos_ids:
            return list(tokens[:i])
    return list(tokens)


def find_stop(text: str, stops: Sequence[str]) -> Optional[int]:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _pending_stop_prefix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


@dataclass
class TextView:
    text: str
    stopped: bool   # a stop string was found (the text is cut before it)


KEPT_SPECIAL = ("<think>", "</think>")   # reasoning parsers look for these in the text


def hidden_special_ids(tokenizer) -> frozenset[int]:
    """Special tokens that `skip_special_tokens` removes: all but the thinking markers."""
    kept = {tokenizer.convert_tokens_to_ids(t) for t in KEPT_SPECIAL}
    return frozenset(i for i in tokenizer.all_special_ids if i not in kept)


class Detokenizer:
    def __init__(self, tokenizer, eos_ids: frozenset[int], stops: Sequence[str],
                 hidden_ids: frozenset[int]):
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.stops = tuple(stops)
        self.hidden_ids = hidden_ids   # empty when the request wants special tokens in the text

    def decode(self, tokens: Sequence[int]) -> str:
        ids = [t for t in cut_at_eos(tokens, self.eos_ids) if t not in self.hidden_ids]
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def pieces(self, tokens: Sequence[int], lookback: int = 6) -> list[str]:
        """Text of each token on its own, for the chat page's per-pass view (one entry per token;
        they concatenate to `decode(tokens)`).

        Each token is decoded with a few tokens of left context, so leading spaces come out right.
        A token that completes a multi-byte character takes the character over from the earlier
        pieces that showed it as U+FFFD. Tokens after EOS give ''. Linear in length.
        """
        kept = cut_at_eos(tokens, self.eos_ids)

        def text(ids: Sequence[int]) -> str:
            return self.tokenizer.decode([t for t in ids if t not in self.hidden_ids], skip_special_tokens=False)

        out: list[str] = []
        for i in range(len(kept)):
            start = max(0, i - lookback)
            before, upto = text(kept[start:i]), text(kept[start:i + 1])
            common = 0
            while common < min(len(before), len(upto)) and before[common] == upto[common]:
                common += 1
            retract, j = len(before) - common, len(out) - 1
            while retract > 0 and j >= 0:   # earlier pieces showed U+FFFD for what is now one character
                take = min(retract, len(out[j]))
                out[j] = out[j][:len(out[j]) - take]
                retract, j = retract - take, j - 1
            out.append(upto[common:])
        return out + [""] * (len(tokens) - len(kept))

    def final(self, tokens: Sequence[int]) -> TextView:
        text = self.decode(tokens)
        cut = find_stop(text, self.stops)
        return TextView(text[:cut], True) if cut is not None else TextView(text, False)

    def partial(self, tokens: Sequence[int]) -> TextView:
        """What can be shown now of a generation that is still running."""
        view = self.final(tokens)
        if view.stopped:
            return view
        text = view.text
        text = text[:len(text) - _pending_stop_prefix(text, self.stops)]
        return TextView(text.rstrip("\ufffd"), False)


class StreamText:
    """Turns growing token lists into text deltas that always concatenate to the final text."""

    def __init__(self, detok: Detokenizer):
        self.detok = detok
        self.tokens: list[int] = []
        self.sent = ""
        self.stopped = False

    def add(self, new_tokens: Sequence[int]) -> str:
        if self.stopped:
            return ""
        self.tokens.extend(new_tokens)
        view = self.detok.partial(self.tokens)
        self.stopped = view.stopped
        return self._delta(view.text)

    def finish(self, all_tokens: Sequence[int]) -> tuple[str, bool]:
        """Remaining delta and whether a stop string ended the text."""
        view = self.detok.final(all_tokens)
        return self._delta(view.text), view.stopped

    def _delta(self, text: str) -> str:
        # decoding a longer prefix can in rare cases rewrite earlier characters; never resend them
        if not text.startswith(self.sent):
            return ""
        delta = text[len(self.sent):]
        self.sent = text
        return delta
