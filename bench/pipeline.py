"""How close does the pipeline come to the server's own limit?

    python -m bench.pipeline [--quick] [--throughput-only] [--count N]

Every figure is a ratio of runs made side by side in this one run, on the production setup
(bench.environment): PostgreSQL, Redis, `celery worker` processes with the threads pool, the
emulator in its own process with added latency standing in for a slow server.

- Throughput: N approved create-mailbox requests, from the moment the queue is released to the
  last one succeeded (the time the worker recorded it), divided by a bare `requests` loop
  making the same N calls with the same number of threads, one logged-in session each. The N
  are one ticket approved together, as a new customer's mailboxes are; also approved one by
  one (a message per request), and with the approvals made inside the timed window. N is
  --count (500) for 8 threads and as many per thread for more (2,000 for 32).
- Sessions: the emulator's counters of logins and TCP connections per call, beside a
  deliberately naive worker that makes a client (a login and a connection) per task.
- Scaling: 16 worker threads against 4, and the emulator's CPU per call (its ceiling).
- Memory: a worker's resident memory after 1,000 and after 10,000 requests.
- CPU: seconds per request of the worker, PostgreSQL and the emulator, and so how many cores
  a run would need to reach the target.
"""

import argparse
import itertools
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.environment import production_environment
from bench.measure import (
    cpu_seconds,
    postgres_cpu_seconds,
    rss_mib,
    verdict,
)
from chaos.harness import (
    ADMIN,
    ADMIN_PASSWORD,
    DOMAIN,
    MAILBOX_PASSWORD,
    PROJECT_DIR,
    Environment,
    Process,
)

TARGET_THROUGHPUT = 0.90
# The rows at the targets' latency are measured this many times, each pipeline run beside its
# own bare loop, and the median reported: one run of a few seconds moves by a few hundredths.
TARGET_LATENCY = 0.05
TARGET_ROUNDS = 3
# The threads of the throughput runs for which --count is meant; more threads get as many
# requests per thread (`requests_for`).
COUNT_THREADS = 8
# (latency in seconds, worker threads in all, worker processes they are spread over); the
# last row shows 32 threads where the two cores are not the limit.
THROUGHPUT_RUNS = [
    (0.05, 8, 1), (0.05, 8, 2), (0.05, 32, 2), (0.005, 8, 1), (0.005, 8, 2), (0.005, 32, 2),
    (0.2, 32, 2),
]  # fmt: skip
_runs = itertools.count(1)


@dataclass
class Run:
    """One timed run: how many requests (or calls), how long, and what it cost."""

    threads: int
    count: int
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)  # process kind -> CPU seconds
    stats: dict = field(default_factory=dict)  # the emulator's counters

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def cpu_per_item_ms(self, kind: str) -> float:
        return 1000 * self.cpu.get(kind, 0.0) / self.count

    @property
    def api_calls(self) -> int:
        return sum(self.stats.get("calls", {}).values())


class CpuMeter:
    """CPU seconds spent by the processes of a run, by kind, between start() and stop()."""

    def __init__(self, workers: list[Process], emulator_pid: int) -> None:
        self.readers: dict[str, Callable[[], float]] = {
            "worker": lambda: sum(cpu_seconds(worker.popen.pid) for worker in workers),
            "postgres": postgres_cpu_seconds,
            "emulator": lambda: cpu_seconds(emulator_pid),
        }

    def start(self) -> None:
        self.before = {kind: read() for kind, read in self.readers.items()}

    def stop(self) -> dict[str, float]:
        return {kind: read() - self.before[kind] for kind, read in self.readers.items()}


def emulator_pid(env: Environment) -> int:
    return next(p.popen.pid for p in env.processes if p.name == "emulator" and p.alive())


def prepare_emulator(env: Environment, latency: float) -> None:
    env.reset_emulator()
    env.control.configure(latency=latency)


# --- The bare loop -----------------------------------------------------------------------------


def bare_loop(env: Environment, *, threads: int, count: int, latency: float) -> Run:
    """`count` create-mailbox calls by `threads` threads, each with one logged-in session."""
    prepare_emulator(env, latency)
    url = env.environment["IREDADMIN_URL"]
    prefix = f"bare{next(_runs)}"
    numbers = itertools.count()
    lock = threading.Lock()
    errors: list[str] = []

    def work() -> None:
        try:
            calls()
        except Exception as error:  # a thread's failure must fail the run, not shorten it
            errors.append(repr(error))

    def calls() -> None:
        session = requests.Session()
        session.post(f"{url}/login", data={"username": ADMIN, "password": ADMIN_PASSWORD})
        while True:
            with lock:
                number = next(numbers)
            if number >= count:
                return
            local = f"{prefix}-{number}"
            answer = session.post(
                f"{url}/user/{local}@{DOMAIN}",
                data={"password": MAILBOX_PASSWORD, "name": local},
                allow_redirects=False,
                timeout=30,
            )
            if answer.json().get("_success") is not True:
                errors.append(answer.text)

    started = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"the bare loop's calls failed: {errors[:3]}")
    return Run(threads, count, seconds)


# --- The pipeline ------------------------------------------------------------------------------


def start_workers(
    env: Environment,
    *,
    threads: int,
    processes: int,
    launcher: str = "celery",
    project_dir: Path = PROJECT_DIR,
) -> list[Process]:
    if threads % processes:
        raise ValueError(f"{threads} threads do not split over {processes} processes")
    return [
        env.start_worker(
            concurrency=threads // processes, launcher=launcher, project_dir=project_dir
        )
        for _ in range(processes)
    ]


def stop_workers(env: Environment, workers: list[Process]) -> None:
    for worker in workers:
        worker.kill(signal.SIGCONT)
        env.stop(worker)


def queue_directly(env: Environment, count: int, prefix: str) -> list[int]:
    """`count` approved requests written in bulk, then published (setup for long runs only:
    their submission and approval rows are not in the audit log)."""
    from django.utils import timezone

    from apps.core.encryption import seal
    from apps.provisioning.models import ProvisioningRequest
    from apps.provisioning.publishing import publish_execution

    now = timezone.now()
    sealed = seal(MAILBOX_PASSWORD)
    rows = ProvisioningRequest.objects.bulk_create(
        [
            ProvisioningRequest(
                kind=ProvisioningRequest.Kind.CREATE_MAILBOX,
                status=ProvisioningRequest.Status.QUEUED,
                domain=DOMAIN,
                target=f"{prefix}-{number}@{DOMAIN}",
                parameters={"name": f"{prefix}-{number}", "language": "", "quota_mb": None},
                sealed_password=sealed,
                ticket="BENCH-1",
                reason="benchmark",
                requested_by=env.alice,
                decided_by=env.bob,
                decided_at=now,
                queued_at=now,
            )
            for number in range(count)
        ],
        batch_size=1000,
    )
    ids = [row.pk for row in rows]
    for request_id in ids:
        publish_execution(request_id)
    return ids


def submit(env: Environment, count: int, prefix: str) -> list:
    """`count` create-mailbox requests opened by alice (pending), through the services, on a
    ticket of their own (`PREFIX-1`)."""
    from apps.provisioning.models import ProvisioningRequest

    addresses = [f"{prefix}-{n}@{DOMAIN}" for n in range(count)]
    ids = env.submit_and_approve(addresses, approve=False, ticket=f"{prefix.upper()}-1")
    return list(ProvisioningRequest.objects.filter(pk__in=ids).order_by("pk"))


def approve(env: Environment, pending: list, *, together: bool = False) -> None:
    """bob approves them one by one, each published alone, or `together` as the approver of a
    new customer's mailboxes would (their ticket's review)."""
    from apps.provisioning import services

    if together:
        env.approve_together([request.pk for request in pending], pending[0].ticket)
        return
    for request in pending:
        services.request_approve(request=request, actor=env.bob)


def wait_succeeded(
    ids: list[int], timeout: float, on_progress: Callable[[int], None] | None = None
) -> datetime:
    """Wait until every request succeeded; returns when the worker recorded the last one."""
    from django.db.models import Max

    from apps.provisioning.models import ProvisioningRequest

    Status = ProvisioningRequest.Status
    mine = ProvisioningRequest.objects.filter(pk__gte=min(ids), pk__lte=max(ids))
    deadline = time.monotonic() + timeout
    while True:
        done = mine.filter(status=Status.SUCCEEDED).count()
        if on_progress:
            on_progress(done)
        if done == len(ids):
            return mine.aggregate(last=Max("updated_at"))["last"]
        failed = mine.filter(status__in=[Status.FAILED, Status.CANCELLED]).count()
        if failed or time.monotonic() > deadline:
            raise RuntimeError(f"{done} of {len(ids)} succeeded, {failed} failed")
        time.sleep(0.05)


def pipeline(
    env: Environment,
    *,
    threads: int,
    count: int,
    latency: float,
    processes: int = 1,
    launcher: str = "celery",
    approvals_in_window: bool = False,
    together: bool = True,
    project_dir: Path = PROJECT_DIR,
) -> Run:
    """`count` approved requests through `processes` workers of `threads` threads in all.

    The queue is filled while the workers are stopped (SIGSTOP) and released at once, so the
    clock measures the pipeline, not this process approving; with `approvals_in_window` the
    workers run and the clock starts before the first approval (made one by one). `together`:
    approved together as one ticket (several requests per message), else one by one.
    `project_dir`: the checkout whose code the workers run (bench.versus runs another
    revision's beside this one).
    """
    from django.test.utils import override_settings

    prepare_emulator(env, latency)
    prefix = f"pipe{next(_runs)}"
    pending = submit(env, count, prefix)
    workers = start_workers(
        env, threads=threads, processes=processes, launcher=launcher, project_dir=project_dir
    )
    meter = CpuMeter(workers, emulator_pid(env))
    try:
        if not approvals_in_window:
            for worker in workers:
                worker.kill(signal.SIGSTOP)
            # What a deployment of this many threads sets (docs/deploy.md): this process
            # publishes.
            with override_settings(MAILDESK_WORKER_THREADS_TOTAL=threads):
                approve(env, pending, together=together)
        env.control.reset_stats()
        meter.start()
        released = datetime.now(UTC)
        if approvals_in_window:
            approve(env, pending, together=False)  # one by one, as people approve
        else:
            for worker in workers:
                worker.kill(signal.SIGCONT)
        finished = wait_succeeded([request.pk for request in pending], timeout=600)
        cpu = meter.stop()
        stats = env.control.stats()
    finally:
        stop_workers(env, workers)
    return Run(threads, count, (finished - released).total_seconds(), cpu, stats)


def memory(
    env: Environment, *, threads: int, count: int, latency: float
) -> tuple[dict[int, float], Run]:
    """A worker's resident memory (MiB) once 1,000 and once `count` requests succeeded, and
    the run itself (its emulator counters give the sessions of a long run)."""
    prepare_emulator(env, latency)
    (worker,) = start_workers(env, threads=threads, processes=1)
    samples: dict[int, float] = {}

    def sample(done: int) -> None:
        for mark in (1000, count):
            if done >= mark and mark not in samples:
                samples[mark] = rss_mib(worker.popen.pid)

    try:
        env.control.reset_stats()
        released = datetime.now(UTC)
        ids = queue_directly(env, count, f"mem{next(_runs)}")
        finished = wait_succeeded(ids, timeout=1800, on_progress=sample)
        stats = env.control.stats()
    finally:
        stop_workers(env, [worker])
    run = Run(threads, count, (finished - released).total_seconds(), stats=stats)
    return samples, run


# --- Report ------------------------------------------------------------------------------------


def requests_for(threads: int, count: int) -> int:
    """The requests of a throughput run with this many threads: `count` for COUNT_THREADS
    threads, and as many per thread for more. 500 requests are 16 calls for each of 32
    threads, a run of one second whose start and end weigh as much as its middle: its ratio
    moved by a tenth from one run to the next."""
    return max(count, count * threads // COUNT_THREADS)


def throughput_section(env: Environment, count: int) -> dict[tuple, tuple[Run, Run]]:
    print(
        f"1. Throughput: create-mailbox requests per run ({count} for {COUNT_THREADS} threads, "
        f"as many per thread for more), pipeline / bare loop"
    )
    print(f"   at 50 ms (the targets' rows): the median of {TARGET_ROUNDS} rounds, each "
          "pipeline run beside a bare loop of its own (the rounds' range at the end)")  # fmt: skip
    print("   latency threads procs requests  bare/s pipeline/s  ratio  CPU ms per request: "
          "worker + PostgreSQL + emulator  cores for 0.90")  # fmt: skip
    results = {}
    # 8 threads in one process, and spread over two as deploy/Procfile spreads its threads.
    for latency, threads, processes in THROUGHPUT_RUNS:
        requests_here = requests_for(threads, count)
        rounds = []
        for _ in range(TARGET_ROUNDS if latency == TARGET_LATENCY else 1):
            bare = bare_loop(env, threads=threads, count=requests_here, latency=latency)
            run = pipeline(
                env, threads=threads, count=requests_here, latency=latency, processes=processes
            )
            rounds.append((run.rate / bare.rate, bare, run))
        rounds.sort(key=lambda round_: round_[0])
        ratio, bare, run = rounds[len(rounds) // 2]
        spread = f"  ({rounds[0][0]:.3f} to {rounds[-1][0]:.3f})" if len(rounds) > 1 else ""
        cpu = [run.cpu_per_item_ms(kind) for kind in ("worker", "postgres", "emulator")]
        # The CPU the pipeline would burn per second at 0.90 of the bare loop's rate.
        cores = sum(cpu) / 1000 * TARGET_THROUGHPUT * bare.rate
        print(
            f"   {latency * 1000:4.0f} ms {threads:7d} {processes:5d} {requests_here:8,d} "
            f"{bare.rate:7.0f} "
            f"{run.rate:10.0f} {ratio:6.3f}  {cpu[0]:5.2f} + {cpu[1]:4.2f} + {cpu[2]:4.2f}"
            f"{'':27}{cores:5.1f}  {verdict(ratio >= TARGET_THROUGHPUT)}{spread}"
        )
        results[latency, threads, processes] = (bare, run)
    in_window = pipeline(env, threads=8, count=count, latency=0.05, approvals_in_window=True)
    bare = results[0.05, 8, 1][0]
    print(
        f"   the same at 8 threads and 50 ms, with the {count} approvals made one by one inside "
        f"the window: {in_window.rate:.0f}/s, ratio {in_window.rate / bare.rate:.3f}"
    )
    for threads, processes in ((8, 1), (32, 2)):
        alone = pipeline(
            env,
            threads=threads,
            count=requests_for(threads, count),
            latency=0.05,
            processes=processes,
            together=False,
        )
        bare, together = results[0.05, threads, processes]
        print(
            f"   approved one by one (a message each) instead, {threads} threads at 50 ms: "
            f"{alone.rate:.0f}/s, ratio {alone.rate / bare.rate:.3f} (together: "
            f"{together.rate / bare.rate:.3f}; worker CPU {alone.cpu_per_item_ms('worker'):.2f} "
            f"against {together.cpu_per_item_ms('worker'):.2f} ms per request)"
        )
    return results


def sessions_section(env: Environment, count: int, results: dict, long_run: Run) -> None:
    """The targets are judged on the long run: a short run's few logins (one per thread)
    weigh more per call than they would over a day's work."""
    print("2. Sessions: the emulator's counters")
    good = results[0.05, 8, 1][1]
    naive = pipeline(env, threads=8, count=count, latency=0.05, launcher="bench.naive_worker")
    print("   run                         requests/s  logins  calls  connections  "
          "logins/1,000 calls  connections/call")  # fmt: skip
    for what, run in [(f"{count} requests, 8 threads", good), (f"{count}, naive worker", naive),
                      (f"{long_run.count:,}, 16 threads", long_run)]:  # fmt: skip
        logins = run.stats.get("logins", 0)
        calls = run.api_calls  # the emulator counts logins among the calls
        connections = run.stats.get("connections", 0)
        print(
            f"   {what:28} {run.rate:10.0f} {logins:7d} {calls:6d} {connections:12d} "
            f"{1000 * logins / calls:19.1f} {connections / calls:17.4f}"
        )
    per_thousand = 1000 * long_run.stats.get("logins", 0) / long_run.api_calls
    per_call = long_run.stats.get("connections", 0) / long_run.api_calls
    print(
        f"   over {long_run.count:,} requests: logins per 1,000 calls {per_thousand:.1f} (target "
        f"<= {long_run.threads} threads: {verdict(per_thousand <= long_run.threads)}), "
        f"connections per call {per_call:.4f} (target <= 0.01: {verdict(per_call <= 0.01)})"
    )
    print(f"   speed-up of the pipeline over the naive worker: {good.rate / naive.rate:.2f}")


def scaling_section(env: Environment, count: int) -> None:
    print("3. Scaling: 16 worker threads / 4 threads (2 processes each)")
    for latency in (0.05, 0.2):
        four = pipeline(env, threads=4, count=count // 2, latency=latency, processes=2)
        sixteen = pipeline(env, threads=16, count=count, latency=latency, processes=2)
        ratio = sixteen.rate / four.rate
        busy = sum(sixteen.cpu[kind] for kind in ("worker", "postgres", "emulator"))
        print(
            f"   {latency * 1000:4.0f} ms: {four.rate:5.0f}/s with 4, {sixteen.rate:5.0f}/s with "
            f"16: ratio {ratio:.2f} (target >= 3.5: {verdict(ratio >= 3.5)}); the 16 kept "
            f"{busy / sixteen.seconds:.2f} of 2 cores busy"
        )
    ceiling = pipeline(env, threads=16, count=count, latency=0.0, processes=2)
    emulator_per_call = ceiling.cpu["emulator"] / max(1, ceiling.api_calls)
    print(
        f"   the emulator spends {emulator_per_call * 1e6:.0f} us CPU per call: its ceiling is "
        f"{1 / emulator_per_call:,.0f} calls/s on one core. With no latency at all the pipeline"
        f" made {ceiling.rate:.0f}/s and kept the emulator "
        f"{ceiling.cpu['emulator'] / ceiling.seconds:.0%} busy: the emulator is never the limit"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument(
        "--throughput-only", action="store_true", help="only the throughput rows (section 1)"
    )
    parser.add_argument(
        "--count",
        type=int,
        help="requests per throughput run of 8 threads, as many per thread for more "
        "(default 500; 100 with --quick)",
    )
    args = parser.parse_args(argv)
    count = args.count or (100 if args.quick else 500)
    if count < 10:
        parser.error("--count must be at least 10")
    memory_count = 1500 if args.quick else 10_000
    started = time.monotonic()

    def took() -> str:
        return f"   ({time.monotonic() - started:.0f} s so far)\n"

    print("Pipeline benchmark (ratios of runs side by side in this run; production settings)\n")
    with production_environment(Path(tempfile.mkdtemp(prefix="maildesk-bench-"))) as env:
        results = throughput_section(env, count)
        print(took())
        if args.throughput_only:
            return 0
        samples, long_run = memory(env, threads=16, count=memory_count, latency=0.005)
        sessions_section(env, count, results, long_run)
        print(took())
        scaling_section(env, count)
        print(took())
        growth = samples[memory_count] / samples[1000] - 1
        print(f"4. Memory: one worker process (16 threads, 5 ms), {memory_count:,} requests")
        print(
            f"   RSS after 1,000: {samples[1000]:.1f} MiB; after {memory_count:,}: "
            f"{samples[memory_count]:.1f} MiB: {growth:+.1%} (target within 10%: "
            f"{verdict(abs(growth) <= 0.10)})"
        )
    print(f"\nPipeline benchmark done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
