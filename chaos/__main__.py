"""Run the fault-injection scenarios against the real pieces and print what held.

    python -m chaos            every scenario (about 3 minutes)
    python -m chaos --only 1,4 some of them

Exits 1 if any expectation failed. Needs PostgreSQL (MAILDESK_CHAOS_POSTGRES_URL, a role that
may create databases; default postgresql://postgres@127.0.0.1:5432/postgres), redis-server on
the PATH, and permission to restart the PostgreSQL cluster (scenario 10).
"""

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

from chaos.harness import Environment
from chaos.scenarios import SCENARIOS, Result

COLUMNS = ["scenario", "runs", "requests", "terminal", "duplicates", "lost", "max s to terminal"]


def table(results: list[Result]) -> str:
    rows = [COLUMNS] + [
        [r.scenario, str(r.runs), str(r.requests), str(r.terminal), str(r.duplicates),
         str(r.lost), f"{r.max_seconds:.1f}"]
        for r in results
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"
             for row in rows]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated scenario numbers, e.g. 1,4")
    parser.add_argument("--time-limit", type=float, default=1200, help="seconds for the whole run")
    options = parser.parse_args()
    chosen = SCENARIOS
    if options.only:
        numbers = {int(n) for n in options.only.split(",")}
        chosen = [s for i, s in enumerate(SCENARIOS, 1) if i in numbers]

    results: list[Result] = []
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="maildesk-chaos-"))
    with Environment(workdir) as env:
        for scenario in chosen:
            if time.monotonic() - started > options.time_limit:
                results.append(Result(scenario.__name__, problems=["time limit reached"]))
                continue
            print(f"... {scenario.__doc__.splitlines()[0]}", flush=True)
            begun = time.monotonic()
            try:
                result = scenario(env)
            except Exception:
                result = Result(scenario.__name__, problems=[traceback.format_exc()])
            result.notes.append(f"{time.monotonic() - begun:.0f} s")
            results.append(result)
            for problem in result.problems:
                print(f"    PROBLEM: {problem}", flush=True)

    print()
    print(table(results))
    print()
    for result in results:
        print(f"{result.scenario}: {'; '.join(result.notes)}")
    failed = [r for r in results if r.problems]
    print(f"\n{len(results) - len(failed)} of {len(results)} scenarios held, "
          f"in {time.monotonic() - started:.0f} s. Process logs: {workdir}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
