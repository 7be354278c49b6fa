"""This checkout's worker against another revision's, side by side in one run.

    python -m bench.versus REVISION [--threads 32] [--processes 2] [--count 1000]
                                    [--rounds 4] [--latency-ms 50] [--together]

The machines this runs on are noisy: the same run can be 20% slower an hour later, so a change
is measured against its base in the same environment, alternating, not against yesterday's
table. Both workers serve the same PostgreSQL database, Redis and emulator; REVISION is checked
out into a temporary worktree and its workers run its code with this checkout's environment.
Only for revisions with the same database schema: the database is migrated by this checkout.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.environment import production_environment
from bench.measure import median
from bench.pipeline import Run, pipeline
from chaos.harness import PROJECT_DIR, Environment


def worktree(revision: str, into: Path) -> Path:
    """A checkout of `revision` (a commit, branch or tag) under `into`."""
    path = into / "base"
    result = subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), revision],
        cwd=PROJECT_DIR, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode:
        raise SystemExit(f"Cannot check out {revision!r}: {result.stderr.strip()}")
    return path


def summary(name: str, runs: list[Run]) -> dict[str, float]:
    figures = {
        "requests/s": median([run.rate for run in runs]),
        "worker CPU ms": median([run.cpu_per_item_ms("worker") for run in runs]),
        "PostgreSQL CPU ms": median([run.cpu_per_item_ms("postgres") for run in runs]),
    }
    print(f"   {name:6} " + "  ".join(f"{key} {value:7.2f}" for key, value in figures.items()))
    return figures


def alternate(env: Environment, base: Path, args: argparse.Namespace) -> dict[str, list[Run]]:
    """`args.rounds` runs of each worker, alternating which goes first."""
    latency = args.latency_ms / 1000
    runs: dict[str, list[Run]] = {"base": [], "this": []}
    for number in range(args.rounds):
        for name in ["base", "this"] if number % 2 == 0 else ["this", "base"]:
            run = pipeline(
                env, threads=args.threads, count=args.count, latency=latency,
                processes=args.processes, project_dir=base if name == "base" else PROJECT_DIR,
                # A message per request unless asked: what every revision's worker reads.
                together=args.together,
            )  # fmt: skip
            runs[name].append(run)
            worker = run.cpu_per_item_ms("worker")
            print(f"   round {number + 1}, {name}: {run.rate:.0f} requests/s, "
                  f"worker {worker:.2f} ms CPU per request")  # fmt: skip
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="the base to compare with, e.g. HEAD~3 or a commit")
    parser.add_argument("--threads", type=int, default=32, help="worker threads in all")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--count", type=int, default=1000, help="requests per run")
    parser.add_argument("--rounds", type=int, default=4, help="runs of each, alternating")
    parser.add_argument("--latency-ms", type=float, default=50, help="the emulator's latency")
    parser.add_argument(
        "--together", action="store_true",
        help="approve each run's requests together (both revisions must have the task)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.count < 10 or args.rounds < 1 or args.threads % args.processes:
        parser.error("need --count >= 10, --rounds >= 1, threads that split over processes")
    print(
        f"{args.revision} (base) against this checkout (this): {args.threads} threads in "
        f"{args.processes} process(es), {args.count} requests, {args.latency_ms:.0f} ms\n"
    )
    with tempfile.TemporaryDirectory(prefix="maildesk-versus-") as temporary:
        base = worktree(args.revision, Path(temporary))
        try:
            with production_environment(Path(temporary) / "environment") as env:
                runs = alternate(env, base, args)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)],
                           cwd=PROJECT_DIR, check=False)  # fmt: skip
    print("\n   medians:")
    before, after = summary("base", runs["base"]), summary("this", runs["this"])
    ratios = ", ".join(f"{key} {after[key] / before[key]:.3f}" for key in before)
    print(f"   this / base: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
