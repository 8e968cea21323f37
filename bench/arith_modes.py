"""Accuracy, TPF and acceptance of the small trained model per decoding mode and block length/threshold.

    python bench/arith_modes.py [--model builtin:arith] [--limit 200] [--out docs-table.md]

Reads arith test problems (the shipped sample unless --data-dir), builds prompts exactly as
evaluate.py does, runs each mode through the real engines on CPU, grades with the project's math
grader and prints a markdown table (and a JSON line per mode). TPF = generated tokens / decoding
forwards without the prefill; acceptance = mean accepted tokens per speculation cycle;
"= AR" = completions identical to AR mode's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xp.model.train_eval import ModeSpec  # noqa: E402

FULL = ([ModeSpec("ar")]
        + [ModeSpec("dlm", b, t) for b in (4, 8, 16) for t in (0.7, 0.9)]
        + [ModeSpec("linear_spec", b, None, lora) for b in (4, 8, 16, 32) for lora in (False, True)])
QUICK = [ModeSpec("ar"), ModeSpec("dlm", 8, 0.9), ModeSpec("linear_spec", 8, None, False),
         ModeSpec("linear_spec", 8, None, True)]


def math_grade(text: str, answer) -> bool:
    from xp.nemo_skills.graders.math_grader import last_boxed, math_equal

    return math_equal(answer, last_boxed(text))


def load_problems(data_dir: Optional[str], limit: int) -> list[dict]:
    from xp.nemo_skills.data import load_rows, resolve_data_dir
    from xp.nemo_skills.registry import load_registry

    return load_rows(load_registry().get("arith"), resolve_data_dir(data_dir), limit)


def encode_prompts(bundle, rows: list[dict]) -> list[tuple[int, ...]]:
    from xp.nemo_skills.inprocess import encode_prompt
    from xp.nemo_skills.prompts import build_messages

    return [encode_prompt(bundle, build_messages("generic/math", r), False) for r in rows]


def measure(bundle, rows: list[dict], specs: list[ModeSpec], batch_size: int, max_new_tokens: int,
            log=print) -> list[dict]:
    from xp.model.train_eval import run_mode

    prompts = encode_prompts(bundle, rows)
    answers = [r["expected_answer"] for r in rows]
    table, ar_out = [], None
    for spec in specs:
        t0 = time.time()
        st = run_mode(bundle, prompts, answers, spec, grade=math_grade, batch_size=batch_size,
                      max_new_tokens=max_new_tokens)
        row = st.row()
        row["seconds"] = round(time.time() - t0, 1)
        if spec.mode == "ar":
            ar_out = st.outputs
        elif spec.mode == "linear_spec" and ar_out is not None:
            row["equal_to_ar"] = sum(a == b for a, b in zip(st.outputs, ar_out))
        log(json.dumps(row))
        table.append(row)
    return table


def markdown(table: list[dict], command: str) -> str:
    lines = ["| mode | block | threshold | draft LoRA | accuracy % | TPF | acceptance | = AR |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table:
        parts = r["mode"].split()
        mode = parts[0]
        block = parts[1][1:] if len(parts) > 1 else "1"
        thr = parts[2][1:] if mode == "dlm" else ("0 (one draft pass)" if mode == "linear_spec" else "-")
        lora = ("yes" if parts[2] == "lora" else "no") if mode == "linear_spec" else "-"
        acc = "-" if r["acceptance"] is None else f"{r['acceptance']:.2f}"
        eq = f"{r['equal_to_ar']}/{r['n']}" if "equal_to_ar" in r else "-"
        lines.append(f"| {mode} | {block} | {thr} | {lora} | {r['accuracy']:.1f} | {r['tpf']:.2f} | {acc} | {eq} |")
    return f"Command: `{command}`\n\n" + "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:arith")
    ap.add_argument("--lora-path", default="linear_spec_lora")
    ap.add_argument("--data-dir", default=None, help="prepared data (default: the shipped sample)")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--quick", action="store_true", help="only the modes the acceptance checks need")
    ap.add_argument("--out", default=None, help="also write the markdown table here")
    args = ap.parse_args(argv)
    from xp.model import ModelLoadError, load_model
    from xp.nemo_skills.data import MissingDataError

    try:
        bundle = load_model(args.model, dtype=args.dtype, device="cpu", lora_path=args.lora_path)
        rows = load_problems(args.data_dir, args.limit)
    except (ModelLoadError, MissingDataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = measure(bundle, rows, QUICK if args.quick else FULL, args.batch_size, args.max_new_tokens)
    command = "python bench/arith_modes.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = markdown(table, command.strip())
    print(md)
    if args.out:
        Path(args.out).write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
