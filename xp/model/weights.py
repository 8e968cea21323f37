"""Reading checkpoint weights (safetensors, single file or sharded index) and writing them.

Checkpoint names are the model's own module names (`encoder.*`, `diffusion_head.weight`), so
loading is a strict key-for-key copy with shape checks.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from xp.model.errors import ModelLoadError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


def weight_files(ckpt_dir: Path) -> list[Path]:
    """The safetensors files of a checkpoint: the single file or every shard named by the index."""
    index = ckpt_dir / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ModelLoadError(f"{index} is malformed ({e!r}); expected {{'weight_map': {{name: file}}}}") from None
        files = [ckpt_dir / f for f in sorted(set(weight_map.values()))]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ModelLoadError(f"shards listed in {index} are missing: {', '.join(missing)}; "
                                 "re-download the checkpoint")
        return files
    single = ckpt_dir / SINGLE_NAME
    if single.is_file():
        return [single]
    raise ModelLoadError(f"no weights in {ckpt_dir}: expected {SINGLE_NAME} or {INDEX_NAME}")


def read_state_dict(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for f in weight_files(ckpt_dir):
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError) as e:
            raise ModelLoadError(f"cannot read weights {f}: {e}; the file is damaged or not safetensors") from None
    return state


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Copy `state` into `model` exactly: every parameter present, shapes equal, no extras."""
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(state))
    if missing:
        raise ModelLoadError(f"{where}: weights missing {len(missing)} tensors (e.g. {missing[:3]}); "
                             "is this a Nemotron-Labs-Diffusion checkpoint?")
    unexpected = sorted(set(state) - set(params))
    if unexpected:
        raise ModelLoadError(f"{where}: unexpected tensors {unexpected[:3]} (config does not match weights)")
    with torch.no_grad():
        for name, p in params.items():
            t = state[name]
            if tuple(t.shape) != tuple(p.shape):
                raise ModelLoadError(f"{where}: tensor {name} has shape {tuple(t.shape)}, config implies "
                                     f"{tuple(p.shape)}")
            p.copy_(t.to(p.dtype))


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": "pt"})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state_dict(state: dict[str, torch.Tensor], out_dir: Path, max_shard_bytes: int | None = None) -> None:
    """Write `model.safetensors`, or shards plus `model.safetensors.index.json` when a shard size is given."""
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    if max_shard_bytes is None:
        _atomic_save(state, out_dir / SINGLE_NAME)
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _atomic_save(shard, out_dir / fname)
        weight_map.update({name: fname for name in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    atomic_write_text(out_dir / INDEX_NAME, json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
