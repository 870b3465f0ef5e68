"""Allow ``python -m authsome``."""

from __future__ import annotations

import sys

from authsome.cli import main

sys.exit(main())
