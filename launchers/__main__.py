"""`python -m launchers ...` is what eval.sh runs."""
import sys

from launchers.cli import main

sys.exit(main())
