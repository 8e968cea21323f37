"""Ask the model one question in 'ar' mode: the message comes from stdin, the reply and its NFE/TPF go to stdout.

Autoregressive decoding: one token per forward pass.

    echo "What is 7 * 8?" | python chat/chat_ar.py [--model builtin:tiny] [--max-new-tokens 256]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a plain script from anywhere

from chat.cli import run_single_turn  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_single_turn("ar", __doc__.splitlines()[0]))
