"""Every benchmark, one after the other: `make bench` (about 6 minutes; --quick: about 2).

    python -m bench [--quick] [--only pipeline,pages]

Each part prints its own table of ratios measured side by side; docs/performance.md holds a
run's output and what it says.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]

PARTS = {
    "emulator": "bench.emulator_bench",  # the client and the emulator (~20 s)
    "pipeline": "bench.pipeline",  # throughput, sessions, scaling, memory (~3.5 min)
    "approval": "bench.approval",  # the approve POST with and without publishing (~15 s)
    "pages": "bench.pages",  # list pages over 1M audit rows and 100k requests (~100 s)
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--only", help=f"comma-separated parts: {', '.join(PARTS)}")
    args = parser.parse_args()
    chosen = [part.strip() for part in args.only.split(",")] if args.only else list(PARTS)
    unknown = [part for part in chosen if part not in PARTS]
    if unknown:
        parser.error(f"no such part: {', '.join(unknown)} (choose from {', '.join(PARTS)})")
    started = time.monotonic()
    failed = []
    for part in chosen:
        print(f"\n===== {part} =====\n", flush=True)
        # Each part in its own process: each sets Django up on its own fresh database.
        command = [sys.executable, "-m", PARTS[part]]
        if args.quick and part != "emulator":  # the emulator part is fixed: it takes seconds
            command.append("--quick")
        if subprocess.run(command, cwd=PROJECT_DIR, check=False).returncode:
            failed.append(part)
    print(f"\nAll benchmarks done in {time.monotonic() - started:.0f} s")
    if failed:
        print(f"These parts stopped with an error: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
