"""How fast is the emulator, and what does the client cost on top of bare HTTP?

Run with `make bench BENCH_ARGS="--only emulator"` (or `python -m bench.emulator_bench`).
Every figure is a ratio of two measurements taken side by side in this one run, so machine
noise affects both sides alike.
The emulator runs in its own process (`manage.py iredadmin_emulator`), as it does beside the
portal's worker, so the clients measured here do not share its interpreter lock.
Bounded: about 20 seconds.

1. Client overhead: create-mailbox calls/s through IRedAdminClient, divided by the same calls
   made with a bare `requests.Session` (form body, cookie reused), alternated in rounds.
2. Emulator ceiling: 8 client threads for 3 s with no added latency; CPU seconds per call of
   the emulator process (from /proc) beside those of the client process. The emulator serves
   from one interpreter, so one core divided by its CPU per call is its ceiling; the ratio
   client / emulator says how many client processes of this kind one emulator can feed.
3. Latency fidelity: with 50 ms added per call and 32 client threads, measured calls/s divided
   by the ideal 32 / 0.05 s = 640 calls/s: whether the emulator can stand in for a slow server
   at the concurrency the pipeline benchmarks use.
"""

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIR))

from apps.iredadmin.client import IRedAdminClient  # noqa: E402 (needs the path above)
from apps.iredadmin.emulator_http import EmulatorControl  # noqa: E402
from bench.measure import cpu_seconds, median, own_cpu_seconds  # noqa: E402
from chaos.harness import free_port  # noqa: E402

ADMIN = "bench@admin.example.net"
ADMIN_PASSWORD = "Bench-Admin-1!"  # noqa: S105 (throwaway, for a local emulator)
MAILBOX_PASSWORD = "Bench-Mailb0x!"  # noqa: S105


@dataclass
class RunningEmulator:
    url: str
    control: EmulatorControl
    pid: int


@contextlib.contextmanager
def emulator_process(latency: float = 0.0) -> Iterator[RunningEmulator]:
    """`manage.py iredadmin_emulator` in its own process, on a free port."""
    port = free_port()
    command = [
        sys.executable, "manage.py", "iredadmin_emulator", "--port", str(port),
        "--admin-username", ADMIN, "--latency", str(latency), "--domain", "example.com",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=PROJECT_DIR,
        env={**os.environ, "MAILDESK_ENV_FILE": "", "IREDADMIN_PASSWORD": ADMIN_PASSWORD},
        stdout=subprocess.DEVNULL,
    )
    running = RunningEmulator(
        url=f"http://127.0.0.1:{port}/iredadmin/api",
        control=EmulatorControl(f"http://127.0.0.1:{port}/_emulator"),
        pid=process.pid,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                running.control.stats()
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=10)


def bare_session(server: RunningEmulator) -> requests.Session:
    session = requests.Session()
    answer = session.post(
        f"{server.url}/login", data={"username": ADMIN, "password": ADMIN_PASSWORD}, timeout=10
    )
    answer.raise_for_status()
    return session


def bare_create(session: requests.Session, server: RunningEmulator, address: str) -> None:
    answer = session.post(
        f"{server.url}/user/{address}",
        data={"password": MAILBOX_PASSWORD},
        allow_redirects=False,
        timeout=10,
    )
    if answer.json().get("_success") is not True:
        raise RuntimeError(answer.text)


def calls_per_second(work: Callable[[int], None], count: int) -> float:
    started = time.perf_counter()
    for number in range(count):
        work(number)
    return count / (time.perf_counter() - started)


def client_overhead(rounds: int = 5, calls: int = 300) -> tuple[float, float]:
    """Median calls/s of the client and of bare requests, measured in alternating rounds."""
    with emulator_process() as server:
        client = IRedAdminClient(server.url, ADMIN, ADMIN_PASSWORD)
        client.login()
        session = bare_session(server)
        client_rates, bare_rates = [], []
        for round_ in range(rounds):

            def through_client(number: int, round_: int = round_) -> None:
                client.create_user(f"c{round_}-{number}@example.com", password=MAILBOX_PASSWORD)

            def bare(number: int, round_: int = round_) -> None:
                bare_create(session, server, f"b{round_}-{number}@example.com")

            client_rates.append(calls_per_second(through_client, calls))
            bare_rates.append(calls_per_second(bare, calls))
        return median(client_rates), median(bare_rates)


def threaded_calls(server: RunningEmulator, threads: int, seconds: float) -> tuple[int, float]:
    """(calls made, seconds taken) by `threads` threads, each with its own logged-in client."""
    clients = [IRedAdminClient(server.url, ADMIN, ADMIN_PASSWORD) for _ in range(threads)]
    for client in clients:
        client.login()
    counts = [0] * threads
    prefix = f"t{threads}-{time.monotonic_ns()}"
    deadline = time.perf_counter() + seconds

    def work(index: int) -> None:
        while time.perf_counter() < deadline:
            address = f"{prefix}-{index}-{counts[index]}@example.com"
            clients[index].create_user(address, password=MAILBOX_PASSWORD)
            counts[index] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts), time.perf_counter() - started


def main() -> None:
    print("Emulator benchmark (ratios of side-by-side measurements in this run)\n")

    client_rate, bare_rate = client_overhead()
    print("1. Client overhead (sequential, no latency, median of 5 alternating rounds)")
    print(f"   IRedAdminClient {client_rate:8.0f} calls/s")
    print(f"   bare requests   {bare_rate:8.0f} calls/s")
    print(f"   ratio client / bare = {client_rate / bare_rate:.2f}\n")

    with emulator_process() as server:
        emulator_before, client_before = cpu_seconds(server.pid), own_cpu_seconds()
        calls, elapsed = threaded_calls(server, 8, 3.0)
        rate = calls / elapsed
        emulator_per_call = (cpu_seconds(server.pid) - emulator_before) / calls
        client_per_call = (own_cpu_seconds() - client_before) / calls
    print(f"2. Emulator ceiling (8 client threads, no latency, 3 s): {rate:.0f} calls/s")
    print(
        f"   CPU per call: emulator {emulator_per_call * 1e6:.0f} us, client "
        f"{client_per_call * 1e6:.0f} us (client / emulator = "
        f"{client_per_call / emulator_per_call:.1f})"
    )
    print(f"   emulator ceiling on one core: about {1 / emulator_per_call:.0f} calls/s\n")

    latency, threads = 0.05, 32
    with emulator_process(latency=latency) as server:
        calls, elapsed = threaded_calls(server, threads, 3.0)
        rate = calls / elapsed
        in_flight_max = server.control.stats()["in_flight_max"]
    ideal = threads / latency
    print(f"3. Latency fidelity ({latency * 1000:.0f} ms per call, {threads} threads, 3 s)")
    print(f"   measured {rate:6.0f} calls/s, ideal {ideal:.0f}: ratio {rate / ideal:.2f}")
    print(f"   in-flight maximum {in_flight_max} of {threads}")


if __name__ == "__main__":
    main()
