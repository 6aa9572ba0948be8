"""`python -m hfsoup`: the `hfsoup` command."""

import sys

from .cli import main

sys.exit(main())
