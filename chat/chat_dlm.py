"""Ask the model one question in 'dlm' mode: the message comes from stdin, the reply and its NFE/TPF go to stdout.

Block diffusion: each block is denoised in parallel, committing every token whose confidence passes the threshold.

    echo "What is 7 * 8?" | python chat/chat_dlm.py [--model builtin:tiny] [--max-new-tokens 256]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a plain script from anywhere

from chat.cli import run_single_turn  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_single_turn("dlm", __doc__.splitlines()[0]))
