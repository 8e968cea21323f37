"""--help text; the defaults shown are read from configs/modes.yaml and the benchmark registry."""
from __future__ import annotations

from launchers.config import BenchmarkRegistry, ModeTable


def _per_mode(table: ModeTable, key: str) -> str:
    return ", ".join(f"{m}={table.modes[m].get(key)}" for m in table.modes)


def help_text(table: ModeTable, registry: BenchmarkRegistry) -> str:
    sh = table.shared
    suite = ",".join(registry.default_suite)
    return f"""Usage: bash eval.sh --mode {{{'|'.join(table.modes)}}} [options]
       bash eval.sh --status EVAL_DIR
       bash eval.sh --rerun-failed EVAL_DIR [--dry-run]
       bash eval.sh --mode MODE --sweep "knob=v1,v2;knob=..." [options]   (status/rerun: pass the sweep dir)
       bash eval.sh --report DIR... [--out OUTDIR]

Evaluates a tri-mode diffusion LM: one job per --benchmarks entry (group N = N-th entry, from 0).
Each job starts one worker per GPU, a load balancer and the eval client, and ends with
COMPLETED_group<N> or FAILED_group<N> in the eval dir. Defaults: configs/modes.yaml.

Required:
  --mode MODE                {', '.join(table.modes)}

Model:
  --model ID_OR_DIR          HF id, local dir or builtin:tiny (default: {sh['model']})
  --tokenizer ID_OR_DIR      tokenizer (default: the model's own)
  --exp-name NAME            experiment name (default: <model>_<mode>_tok<T>_blk<B>_temp<t>[_lora_<dir>][_draft_only][_thr<x>])

LoRA (linear_spec only):
  --lora / --no-lora         attach the draft LoRA adapter (default: off)
  --lora-path DIR            adapter dir (default: <project>/{sh['lora_path']})
  --draft-lora-only [BOOL]   LoRA in draft passes only (default: {str(sh['draft_lora_only']).lower()})

Generation (defaults per mode):
  --benchmarks LIST          comma-separated name:reps (default: {suite})
  --tokens N                 max completion tokens (default: {sh['tokens']})
  --steps N                  diffusion steps (default: {sh['steps']})
  --block-length N           ({_per_mode(table, 'block_length')})
  --threshold X              unmasking confidence threshold, 0..1 or none ({_per_mode(table, 'threshold')})
  --temperature T            (default: {sh['temperature']})
  --max-thinking-tokens N    (default: {sh['max_thinking_tokens']})
  --max-model-len N          ({_per_mode(table, 'max_model_len')})
  --max-pos-emb N            ({_per_mode(table, 'max_pos_emb')})
  --batch-size N             per-worker batch (default: {sh['batch_size']})
  --enable-thinking [BOOL]   thinking mode (default: {str(sh['enable_thinking']).lower()})
  --no-eos-early-stop        keep generating after EOS (default: stop at EOS)
  --limit N                  only the first N problems of each benchmark (smoke tests)
  --data-dir DIR             prepared benchmark data (DIR/<bench>/<split>.jsonl; default: client's)

Cluster:
  --gpus N                   GPUs per job, one worker each; 0 = {sh['cpu_workers']} CPU worker(s) (default: {sh['gpus']})
  --partition P              (default: {sh['partition']}; env SERVER_PARTITION)
  --account A                SLURM account, required to submit (env ACCOUNT)
  --time T                   time limit per job (default: {sh['time']}; env SERVER_TIME)
  --executor E               slurm | local | auto (default: {sh['executor']}: slurm when sbatch is on PATH)
  --container-image IMG      enroot .sqsh or image for pyxis (env CONTAINER_IMAGE); 'none' = run on the
                             nodes' own Python. Required for a real SLURM submission.
  --container-mounts M       extra SRC:DST[,...]; the project, output, HF_HOME and data dirs are added

Output and control:
  --out-dir DIR              results root (default: ./{sh['out_dir']}; env OUT_DIR); HF cache: env HF_HOME
  --dry-run                  print the settings and every script; write nothing, submit nothing
  --status EVAL_DIR          table per group: COMPLETED/FAILED/RUNNING/PENDING/LOST, job, accuracy, TPF
  --rerun-failed EVAL_DIR    resubmit only FAILED and LOST groups (settings from plan.json; finished
                             samples are kept)
  --stage                    with the run's flags: download the model, adapter and data the run needs
                             (+ --from-raw DIR, --only model,lora,data; see docs/staging.md), then jobs
                             run offline (HF_HUB_OFFLINE=1). --dry-run and submissions report what is missing.
  --sweep SPEC               one experiment per grid point, e.g. "block_length=4,8,16;threshold=0.7,0.9";
                             knobs: block_length threshold temperature tokens max_thinking_tokens
                             lora (on/off) mode. Index: OUT_DIR/sweeps/<name>/sweep.json; --status and
                             --rerun-failed take that sweep dir (docs/sweeps.md)
  --report DIR...            tables per benchmark (accuracy, TPF, NFE, tokens/s, acceptance length) as
                             CSV/markdown, accuracy-vs-TPF plots with the Pareto front, one HTML page
                             (+ --out OUTDIR; default DIR/report)
  -h, --help                 this help

Examples:
  # the local default: the small trained model, CPU worker, 50 arith problems, no SLURM needed
  bash eval.sh --mode dlm --executor local --gpus 0 --model builtin:arith --benchmarks arith --limit 50 --tokens 128 --batch-size 8

  # full suite on SLURM, diffusion mode, 8 GPUs per job
  bash eval.sh --mode dlm --gpus 8 --account myacct --container-image /shared/nld-eval.sqsh

  # linear self-speculation with the draft LoRA, two benchmarks, inspect first
  bash eval.sh --mode linear_spec --lora --lora-path ./miscs/linear_spec_lora --benchmarks gsm8k:1,math-500:1 --dry-run

  # block length x threshold sweep, then the accuracy-vs-TPF report over it
  bash eval.sh --mode dlm --sweep "block_length=4,8,16;threshold=0.7,0.8,0.9" --benchmarks gsm8k:1 --dry-run
  bash eval.sh --report eval_suit_results/sweeps/sweep_<timestamp>

  # follow and repair
  bash eval.sh --status eval_suit_results/<exp>/hf_base/eval_<timestamp>
  bash eval.sh --rerun-failed eval_suit_results/<exp>/hf_base/eval_<timestamp>
"""
