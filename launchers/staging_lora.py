"""The bundled LoRA adapter: the `linear_spec_lora/` subfolder of a model repo, copied into a local folder.

    python -m launchers.staging_lora [--model HF_ID] [--subfolder NAME] [--dest DIR]

(what scripts/fetch_bundled_lora.sh runs). The subfolder goes through the HF cache (HF_HOME) like any
staged repo, then each file is copied into DEST through a temp file and a rename, and a stamp with
sizes and hashes is written last: an interrupted copy never looks like a complete adapter.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from launchers.staging_check import ADAPTER_FILES, BUNDLED_LORA_DIR, LORA_STAMP, check_lora_dir
from launchers.staging_fetch import Log, StageError, fetch_repo
from launchers.staging_hub import DEFAULT_LORA_REPO, LORA_SUBFOLDER, human


def stage_adapter(cache: Path, repo: str, subfolder: str, dest: Path, log: Log, command: str) -> None:
    current = check_lora_dir(dest, command)
    if current.staged and _stamp_source(dest) in (None, f"{repo}/{subfolder}"):
        log(f"lora {dest}: already there ({current.note})")
        return
    files = [f"{subfolder}/{name}" for name in ADAPTER_FILES]
    snapshot = fetch_repo(cache, repo, [f"{subfolder}/*"], "lora source", command, log, fallback=files)
    src = snapshot / subfolder
    missing = [n for n in ADAPTER_FILES if not (src / n).is_file()]
    if missing:
        raise StageError(f"{repo} has no adapter in {subfolder}/ (missing {', '.join(missing)}): "
                         "check --model / --subfolder")
    install_adapter(src, dest, f"{repo}/{subfolder}@{snapshot.name}")
    log(f"lora {dest}: copied from {repo}/{subfolder} ({human(sum((dest / n).stat().st_size for n in ADAPTER_FILES))})")


def install_adapter(src: Path, dest: Path, source: str) -> None:
    """Copies the adapter files (temp + rename each) and writes the stamp last."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / LORA_STAMP).unlink(missing_ok=True)
    stamp = {"source": source, "files": {}}
    for name in ADAPTER_FILES:
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, open(src / name, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        stamp["files"][name] = {"size": (dest / name).stat().st_size, "sha256": _sha256(dest / name)}
    tmp = dest / f".{LORA_STAMP}.tmp"
    tmp.write_text(json.dumps(stamp, indent=1))
    os.replace(tmp, dest / LORA_STAMP)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _stamp_source(dest: Path) -> str | None:
    """'repo/subfolder' the adapter was staged from (None when a user put it there by hand)."""
    try:
        source = json.loads((dest / LORA_STAMP).read_text())["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return source.split("@")[0]


def main(argv: list[str] | None = None) -> int:
    from launchers.staging_fetch import os_error_line
    from launchers.staging_hub import hub_cache

    p = argparse.ArgumentParser(prog="fetch_bundled_lora.sh",
                                description="Fetch a LoRA adapter subfolder of a HF model repo into a local folder.")
    p.add_argument("--model", default=DEFAULT_LORA_REPO, help=f"HF model id (default: {DEFAULT_LORA_REPO})")
    p.add_argument("--subfolder", default=LORA_SUBFOLDER, help=f"adapter subfolder (default: {LORA_SUBFOLDER})")
    p.add_argument("--dest", default=str(BUNDLED_LORA_DIR), help=f"target folder (default: {BUNDLED_LORA_DIR})")
    args = p.parse_args(argv)
    hf_home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    dest = Path(args.dest).expanduser().resolve()
    command = "bash scripts/fetch_bundled_lora.sh" + (f" --model {args.model}" if args.model != DEFAULT_LORA_REPO else "")
    try:
        stage_adapter(hub_cache(hf_home), args.model, args.subfolder.strip("/"), dest, print, command)
    except StageError as exc:
        print(f"fetch_bundled_lora.sh: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"fetch_bundled_lora.sh: error: {os_error_line(exc, dest)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fetch_bundled_lora.sh: interrupted (rerun to resume)", file=sys.stderr)
        return 130
    print("Done. Use it with: bash eval.sh --mode linear_spec --lora" +
          ("" if dest == BUNDLED_LORA_DIR else f" --lora-path {dest}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
