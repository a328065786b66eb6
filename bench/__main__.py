"""Entry point for `python -m bench`: runs every benchmark and prints its table."""

from __future__ import annotations

import sys

from bench import engine_bench


def main() -> int:
    engine_bench.main(sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
