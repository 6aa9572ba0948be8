"""The `hfsoup` command line: `main` runs it (see `command.py`); `parser.py` and `output.py` hold its flags and prints."""

from .command import main

__all__ = ["main"]
