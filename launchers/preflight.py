"""Checks that only matter for a real submission (a dry run stays permissive, as upstream)."""
from __future__ import annotations

from pathlib import Path

from launchers import slurm
from launchers.errors import UserError
from launchers.settings import Settings


def _looks_like_path(image: str) -> bool:
    return image.startswith(("/", "./", "../", "~")) or image.endswith((".sqsh", ".squashfs"))


def check_submission(s: Settings) -> None:
    image = s.container_image
    if s.executor == "local":
        if image and image != "none":
            raise UserError("--container-image needs SLURM with pyxis; with --executor local the job runs on this "
                            "machine's Python: drop --container-image (or use --executor slurm)")
        return
    if not image:
        raise UserError("no container image for the SLURM jobs: pass --container-image IMAGE.sqsh (or export "
                        "CONTAINER_IMAGE=...), or --container-image none to run on the nodes' own Python")
    if image != "none" and _looks_like_path(image) and not Path(image).expanduser().is_file():
        raise UserError(f"container image file not found: {image} (build it: see containers/README.md)")
    if not s.account:
        raise UserError("no SLURM account: pass --account ACCOUNT (or export ACCOUNT=...)")
    if not slurm.available():
        raise UserError("--executor slurm: sbatch is not on PATH; run on a SLURM login node or use --executor local")
