"""Throughput of the whole pipeline (eval.sh, local executor) with 1, 2, 4, ... GPUs.

    python bench/pipeline_scaling.py --model CKPT --data-dir DIR --gpus 1,2,4,8 --out-dir OUT
    python bench/pipeline_scaling.py --build-8b /tmp/nld-8b ...     # write the 8B architecture first

Each point is one real `eval.sh --executor local` run (workers, balancer, client, markers); throughput
is read from the NFE logs (first batch start to last batch end, so worker start-up is excluded) and
the output files. Prints one table and writes OUT/pipeline_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_point(args, mode: str, gpus: int) -> dict:
    exp = f"pipe_{mode}_g{gpus}"
    cmd = ["bash", str(ROOT / "eval.sh"), "--mode", mode, "--executor", "local", "--gpus", str(gpus),
           "--model", args.model, "--benchmarks", "gsm8k:0", "--limit", str(args.limit),
           "--tokens", str(args.tokens), "--batch-size", str(args.batch_size), "--data-dir", args.data_dir,
           "--out-dir", args.out_dir, "--exp-name", exp]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    eval_dir = sorted((Path(args.out_dir) / exp / "hf_base").glob("eval_*"))[-1]
    return summarize(eval_dir, mode, gpus, wall, proc.returncode)


def summarize(eval_dir: Path, mode: str, gpus: int, wall: float, rc: int) -> dict:
    batches = [json.loads(line) for line in (eval_dir / "nfe_group0" / "nfe_log.jsonl").read_text().splitlines()]
    start = min(b["time"] - b["seconds"] for b in batches)
    end = max(b["time"] for b in batches)
    per_worker = Counter()
    for b in batches:
        per_worker[b["worker"]] += b["batch_size"]
    tokens = sum(sum(b["completion_tokens"]) for b in batches)
    problems = sum(b["batch_size"] for b in batches)
    span = max(end - start, 1e-9)
    return {"mode": mode, "gpus": gpus, "state": "COMPLETED" if (eval_dir / "COMPLETED_group0").exists()
            else "FAILED", "rc": rc, "workers": len(per_worker), "requests_per_worker": dict(per_worker),
            "problems": problems, "tokens": tokens, "decode_seconds": span, "wall_seconds": wall,
            "problems_per_s": problems / span, "tokens_per_s": tokens / span,
            "mean_batch": problems / len(batches), "eval_dir": str(eval_dir)}


def table(rows: list[dict]) -> str:
    base = {r["mode"]: r["tokens_per_s"] for r in rows if r["gpus"] == min(x["gpus"] for x in rows
                                                                          if x["mode"] == r["mode"])}
    lines = ["| mode | GPUs | state | workers used | requests per worker | problems/s | tokens/s | "
             "speed-up | mean batch | wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        spread = "/".join(str(v) for _, v in sorted(r["requests_per_worker"].items()))
        lines.append(f"| {r['mode']} | {r['gpus']} | {r['state']} | {r['workers']} | {spread} | "
                     f"{r['problems_per_s']:.2f} | {r['tokens_per_s']:.0f} | "
                     f"{r['tokens_per_s'] / base[r['mode']]:.2f}x | {r['mean_batch']:.1f} | {r['wall_seconds']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="checkpoint dir (written first with --build-8b)")
    ap.add_argument("--build-8b", action="store_true", help="write the 8B architecture (random bf16) to --model")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--gpus", default="1,2,4,8", help="GPU counts for the scaling mode")
    ap.add_argument("--scaling-mode", default="dlm")
    ap.add_argument("--other-modes", default="ar,linear_spec", help="run once at the largest GPU count")
    ap.add_argument("--limit", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--json", default=None, help="also write the rows here after every point")
    args = ap.parse_args()
    if args.build_8b and not (Path(args.model) / "config.json").exists():
        subprocess.run([sys.executable, "-m", "xp.model.tiny", "--out", args.model, "--preset", "8b",
                        "--device", "cuda", "--max-shard-gb", "5"], check=True, cwd=ROOT)
    counts = [int(g) for g in args.gpus.split(",")]
    points = [(args.scaling_mode, g) for g in counts]
    points += [(m, max(counts)) for m in args.other_modes.split(",") if m]
    rows = []
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for mode, g in points:
        rows.append(run_point(args, mode, g))
        for path in filter(None, [out / "pipeline_scaling.json", args.json]):
            Path(path).write_text(json.dumps(rows, indent=2))
        print(table(rows).splitlines()[-1], flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
