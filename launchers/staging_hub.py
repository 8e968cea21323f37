"""The Hugging Face hub cache as huggingface_hub lays it out, read without the network.

    <cache>/models--org--name/refs/main            commit hash of 'main'
    <cache>/models--org--name/snapshots/<commit>/  the repo's files (symlinks into blobs/)
    <cache>/models--org--name/blobs/<etag>[.incomplete]
    <cache>/models--org--name/trees/<commit>.json  the repo listing (size, git blob id, LFS sha256)

A file counts as staged only when it exists in the snapshot, parses (JSON) or has the size its
safetensors header declares, and matches the listing's size when huggingface_hub saved one. Hashes
(sha256 for LFS files, git blob sha1 for the rest) are checked after each download (`verify_hashes`).
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

LORA_SUBFOLDER = "linear_spec_lora"
# What xp.model.loader asks the cache for (its HUB_PATTERNS; huggingface_hub checks a cached snapshot
# against them), plus the adapter subfolder. Copied, not imported: the loader pulls in torch, which a
# dry run must not wait for; tests/test_stage_fetch.py fails if the two lists drift apart.
LOADER_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.model", "*.txt"]
DEFAULT_LORA_REPO = "nvidia/Nemotron-Labs-Diffusion-8B"
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Entry:
    """One file of the remote listing (from trees/<commit>.json)."""

    size: int
    blob_id: str
    sha256: str | None


def model_patterns() -> list[str]:
    """Weights, config, tokenizer files and the bundled adapter subfolder of a model repo."""
    return [*LOADER_PATTERNS, f"{LORA_SUBFOLDER}/*"]


def is_hub_id(name: str | None) -> bool:
    """The loader's rule: 'org/name' that is not an existing path."""
    if not name or name.startswith(("builtin:", ".", "/", "~")) or name.count("/") != 1:
        return False
    return not Path(name).expanduser().exists()


def hub_cache(hf_home: str) -> Path:
    """Where huggingface_hub keeps repos for a job with HF_HOME=hf_home (HF_HUB_CACHE wins, as in the job)."""
    return Path(os.environ.get("HF_HUB_CACHE") or Path(hf_home) / "hub")


def repo_folder(cache: Path, repo: str) -> Path:
    return cache / ("models--" + repo.replace("/", "--"))


def snapshot_commit(cache: Path, repo: str, revision: str = "main") -> str | None:
    ref = repo_folder(cache, repo) / "refs" / revision
    if ref.is_file():
        return ref.read_text().strip() or None
    return revision if _HEX40.fullmatch(revision) else None


def snapshot_dir(cache: Path, repo: str, revision: str = "main") -> Path | None:
    commit = snapshot_commit(cache, repo, revision)
    path = repo_folder(cache, repo) / "snapshots" / commit if commit else None
    return path if path is not None and path.is_dir() else None


def read_listing(cache: Path, repo: str, commit: str) -> dict[str, Entry] | None:
    """huggingface_hub's saved listing for a commit, or None when it saved none (older versions)."""
    path = repo_folder(cache, repo) / "trees" / f"{commit}.json"
    try:
        data = json.loads(path.read_text())
        return {name: Entry(int(info["size"]), str(info["blob_id"]), info.get("lfs_sha256"))
                for name, info in data["files"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def matching(names, patterns: list[str]) -> list[str]:
    """huggingface_hub's allow_patterns rule: fnmatch on the repo path ('*' also crosses '/')."""
    return sorted(n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns))


def required_without_listing(snapshot: Path) -> list[str]:
    """Files a checkpoint cannot load without, when no listing says what the repo holds."""
    need = ["config.json", "tokenizer_config.json"]
    need.append("tokenizer.model" if (snapshot / "tokenizer.model").exists() else "tokenizer.json")
    index = snapshot / "model.safetensors.index.json"
    if index.exists():
        need.append(index.name)
        try:
            need += sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # the index itself is reported as damaged by file_problem
    else:
        need.append("model.safetensors")
    return need


def safetensors_problem(path: Path) -> str | None:
    """A truncated or overlong safetensors file, judged from its own header (no full read)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{size} bytes, too short for safetensors"
            (n,) = struct.unpack("<Q", head)
            if n > min(size, 100_000_000):
                return "safetensors header length is corrupt"
            header = json.loads(f.read(n))
    except (OSError, ValueError) as exc:
        return f"unreadable safetensors header ({exc})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    want = 8 + n + max(ends, default=0)
    return None if size == want else f"{size} bytes, its header says {want} (truncated download?)"


def file_problem(path: Path, entry: Entry | None) -> str | None:
    """Why an existing snapshot file is not usable, or None."""
    if not path.exists():
        return "missing" if not path.is_symlink() else "missing (dangling link into blobs/)"
    size = path.stat().st_size
    if entry is not None and size != entry.size:
        return f"{size} bytes, the hub listing says {entry.size}"
    if path.suffix == ".safetensors":
        return safetensors_problem(path)
    if path.suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return f"not valid JSON ({exc.__class__.__name__})"
    return None if size > 0 or entry is not None else "empty file"


def partial_blob(cache: Path, repo: str, entry: Entry | None) -> Path | None:
    """An interrupted download of this file (huggingface_hub's blobs/<etag>.incomplete)."""
    if entry is None:
        return None
    blobs = repo_folder(cache, repo) / "blobs"
    for etag in (entry.sha256, entry.blob_id):
        if etag and (blobs / f"{etag}.incomplete").exists():
            return blobs / f"{etag}.incomplete"
    return None


def incomplete_blobs(cache: Path, repo: str) -> list[Path]:
    return sorted((repo_folder(cache, repo) / "blobs").glob("*.incomplete"))


def content_hash(path: Path, entry: Entry) -> tuple[str, str]:
    """(expected, actual): sha256 for LFS files, git's blob sha1 for small ones."""
    if entry.sha256:
        h = hashlib.sha256()
    else:
        h = hashlib.sha1()
        h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return (entry.sha256 or entry.blob_id), h.hexdigest()


def verify_hashes(snapshot: Path, listing: dict[str, Entry], names: list[str]) -> list[str]:
    """Hash-checks `names`; a mismatching file is deleted (link and blob) so the next run fetches it again."""
    bad = []
    for name in names:
        path = snapshot / name
        if name not in listing or not path.exists():
            continue
        want, got = content_hash(path, listing[name])
        if want != got:
            blob = path.resolve()
            path.unlink()
            if blob != path and blob.exists():
                blob.unlink()
            bad.append(f"{name} (hash {got[:12]}, expected {want[:12]}; removed)")
    return bad


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
