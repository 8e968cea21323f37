"""Tokenizers: loading a checkpoint's tokenizer, and building the small offline one for tiny models.

The built tokenizer is byte-level BPE (any text round-trips), with digits split one per token (good
for arithmetic), trained on a small built-in text. Special tokens take the first ids, in
`SPECIAL_TOKENS` order; the chat template wraps turns in Ministral-style markers and opens a
`<think>` block when `enable_thinking` is true.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from xp.model.errors import ModelLoadError

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", "<mask>", "<think>", "</think>",
                  "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]")
BOS_ID, EOS_ID, PAD_ID, MASK_ID = 1, 2, 3, 4

CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ message['content'] }}[/SYSTEM_PROMPT]"
    "{%- elif message['role'] == 'user' %}[INST]{{ message['content'] }}[/INST]"
    "{%- elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt and enable_thinking is defined and enable_thinking %}<think>\n{% endif %}"
)

_WORDS = (
    "the of and to in is was that for on are with as it be at by this from or have an they which one you "
    "were her all she there would their we him been has when who will more no if out so said what up its "
    "about into than them can only other new some could time these two may then do first any my now such "
    "like our over man me even most made after also did many before must through back years where much your "
    "way well down should because each just those people how too little state good very make world still own "
    "see men work long get here between both life being under never day same another know while last might "
    "us great old year off come since against go came right used take three problem answer question solve "
    "number total each sum product difference value equation step first second third therefore so find "
    "let compute result final thus hence because given function return print list string code test case "
    "please think about carefully explain why how many apples books students cost price dollars hours "
    "minutes days weeks percent half twice more less than equal greater smaller true false yes no hello "
    "assistant user system write short story poem summary translate following text sentence word letter"
).split()


def training_text() -> list[str]:
    """A small built-in corpus: ordinary English lines, arithmetic, a little code and markup."""
    lines = []
    for i in range(0, len(_WORDS) - 8, 3):
        lines.append(" ".join(_WORDS[i:i + 9]).capitalize() + ".")
    for a in range(0, 60, 7):
        for b in range(1, 40, 9):
            lines.append(f"What is {a} + {b}? The answer is {a + b}. Then {a} * {b} = {a * b}, "
                         f"and {a} - {b} = {a - b}.")
    lines += [
        "Solve the following math problem. Put the final numerical answer inside \\boxed{} at the very end.",
        "Let x be a real number such that 2x + 3 = 11. Then x = 4, so the answer is \\boxed{4}.",
        "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
        "for (int i = 0; i < n; ++i) { sum += a[i]; }",
        "The quick brown fox jumps over the lazy dog! Is it? Yes: (really) [sure] {ok} <tag> \"quote\" 'q'",
        "Question: How many hours are in 3 days? Answer: 3 * 24 = 72 hours.",
        "# Title\n\n- item one\n- item two\n\n1. first\n2. second",
        "x^2 + y^2 = z^2; f(x) = \\frac{1}{2} x; a_n = a_{n-1} + 2; 50% of 80 is 40.",
    ]
    return lines


def build_tokenizer(out_dir: str | Path, vocab_size: int = 1024, model_max_length: int = 131072,
                    texts: Optional[list[str]] = None) -> int:
    """Train and save the tokenizer (tokenizer.json + tokenizer_config.json); returns its size.

    Byte-level BPE with digits split one per token, trained on `texts` (default: the built-in text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(training_text() if texts is None else texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        mask_token="<mask>", additional_special_tokens=list(SPECIAL_TOKENS[5:]),
        model_max_length=model_max_length, clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))
    return tok.get_vocab_size()


def load_tokenizer(path: str | Path):
    """AutoTokenizer from a local folder (never trust_remote_code); ModelLoadError when it cannot."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"cannot load a tokenizer from {path}: {str(e).splitlines()[0]}") from None
    if not getattr(tok, "chat_template", None):
        raise ModelLoadError(f"tokenizer at {path} has no chat template; use the model's own tokenizer")
    return tok
