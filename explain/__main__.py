"""``python -m explain FOLDER --architecture ... --method ... --out DIR``; see explain/cli.py."""
import sys

from .cli import main

sys.exit(main())
