"""``python -m actors stats|dlq ...``: the operator's command line (see :mod:`conveyor.ops.cli`)."""

from __future__ import annotations

from conveyor.ops.cli import main

if __name__ == "__main__":
    main()
