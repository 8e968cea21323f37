"""`python -m launchers ...` is what eval.sh runs."""
import os
import sys

from launchers.cli import main


def _run() -> int:
    try:
        return main()
    except BrokenPipeError:
        # `eval.sh --status DIR | head`: the reader went away; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


sys.exit(_run())
