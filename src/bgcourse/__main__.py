"""`python -m bgcourse`: the instructors' command line (release and grade)."""

from __future__ import annotations

import sys

from bgcourse._cli import main

if __name__ == "__main__":
    sys.exit(main())
