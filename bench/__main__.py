"""Entry point for `python -m bench`: runs the benchmarks and prints one table.

    python -m bench                   every benchmark
    python -m bench engine proxy      a subset, in the order given
    python -m bench --quick           fewer iterations (a smoke run; rows say so)

The table is also written to bench/results.json. Figures are measured, never asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from bench import (
    engine_bench,
    fairness_bench,
    learned_bench,
    memory_bench,
    proxy_bench,
    redis_bench,
    session_bench,
    spec_bench,
    stream_bench,
)
from bench.harness import Harness
from bench.report import RESULTS, Report, RunOptions

Benchmark = Callable[[RunOptions, Report, Harness], None]


def _engine(options: RunOptions, report: Report, harness: Harness) -> None:
    engine_bench.run(options, report)  # pure: needs no server


def _learned(options: RunOptions, report: Report, harness: Harness) -> None:
    learned_bench.run(options, report)  # pure: needs no server


BENCHMARKS: dict[str, Benchmark] = {
    "engine": _engine,
    "learned": _learned,
    "redis": redis_bench.run,
    "proxy": proxy_bench.run,
    "stream": stream_bench.run,
    "session": session_bench.run,
    "memory": memory_bench.run,
    "spec": spec_bench.run,
    "fairness": fairness_bench.run,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "names",
        nargs="*",
        metavar="benchmark",
        help=f"any of: {', '.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--repeat", type=int, default=None, help="engine runs per figure")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    options = RunOptions(quick=args.quick, repeat=args.repeat)
    report = Report(options)
    started = time.monotonic()
    with Harness() as harness:
        for name in args.names or BENCHMARKS:
            print(f"==> {name}", flush=True)
            began = time.monotonic()
            BENCHMARKS[name](options, report, harness)
            print(f"    ({time.monotonic() - began:.0f} s)\n", flush=True)
    print(report.table())
    if args.markdown:
        print()
        print(report.markdown())
    report.write()
    print(f"\nwritten: bench/{RESULTS.name} ({time.monotonic() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
