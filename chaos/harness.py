"""The real pieces, started and broken on purpose: PostgreSQL, Redis, the emulator, workers.

`Environment` creates a fresh PostgreSQL database (dropped at the end), runs a private
redis-server it can kill, pause and flush, the emulator as a subprocess (faults and counters
through its control API), and real `celery worker` / `celery beat` processes it can SIGKILL.
This process plays the web server: it submits and approves through the same services and
views the portal uses, and reads the outcome from the shared database.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
import requests
from cryptography.fernet import Fernet
from psycopg import sql

PROJECT_DIR = Path(__file__).resolve().parents[1]
ADMIN = "chaos-admin@admin.example.net"
ADMIN_PASSWORD = "Chaos-Admin-Pa55!"
MAILBOX_PASSWORD = "Chaos-Mailb0x-Pa55!"
USER_PASSWORD = "Chaos-User-Pa55!"
DOMAIN = "example.com"

# Short timings, so that recovery windows are seconds, not minutes.
TIMINGS = {
    "IREDADMIN_TIMEOUT": "5",
    "IREDADMIN_LOGIN_RETRY_SECONDS": "3",
    "MAILDESK_LEASE_SECONDS": "12",
    "MAILDESK_SWEEP_SECONDS": "2",
    "MAILDESK_QUEUED_GRACE_SECONDS": "4",
    "MAILDESK_RETRY_BASE_SECONDS": "0.5",
    "MAILDESK_RETRY_MAX_SECONDS": "3",
    "MAILDESK_MAX_ATTEMPTS": "8",
    "MAILDESK_PUBLISH_TIMEOUT": "1",
    "CELERY_REDIS_SOCKET_TIMEOUT": "3",
    "CELERY_REDIS_CONNECT_TIMEOUT": "1",
    "CELERY_REDIS_HEALTH_CHECK_SECONDS": "2",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting {timeout:.0f} s for {what}")
        time.sleep(step)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def postgres_admin_url() -> str:
    """A PostgreSQL server URL whose role may create databases (the benchmarks' too)."""
    return os.environ.get(
        "MAILDESK_CHAOS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


@dataclass
class Environment:
    workdir: Path
    postgres_admin_url: str = field(default_factory=postgres_admin_url)
    # Settings on top of the defaults here (the benchmarks run with production settings).
    overrides: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    # --- Setting up and tearing down ---------------------------------------------------------

    def __enter__(self) -> "Environment":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.database = f"maildesk_chaos_{uuid.uuid4().hex[:10]}"
        self.redis_port = free_port()
        self.emulator_port = free_port()
        self.queue = f"chaos-{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.postgres_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        base = self.postgres_admin_url.rsplit("/", 1)[0]
        self.database_url = f"{base}/{self.database}"
        self.environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "MAILDESK_ENV_FILE": "",
            "MAILDESK_VAR_DIR": str(self.workdir / "var"),
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "MAILDESK_QUEUE": self.queue,
            "MAILDESK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "DJANGO_ALLOWED_HOSTS": "localhost,testserver",
            "IREDADMIN_URL": f"http://127.0.0.1:{self.emulator_port}/iredadmin/api",
            "IREDADMIN_USERNAME": ADMIN,
            "IREDADMIN_PASSWORD": ADMIN_PASSWORD,
            "MAILDESK_LOG_LEVEL": "INFO",
            **TIMINGS,
            **self.overrides,
        }
        try:
            self.start_redis()
            # This process is the web server: it reads the same settings as the workers.
            os.environ.update(self.environment)
            import django

            django.setup()
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
            self._create_people()
            self.start_emulator()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for process in reversed(self.processes):
            if process.alive():
                process.kill(signal.SIGCONT)  # a paused redis-server cannot stop
                process.kill(signal.SIGTERM)
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with psycopg.connect(self.postgres_admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)
                )
            )

    def _create_people(self) -> None:
        from django.contrib.auth import get_user_model

        from apps.accounts.models import Delegation, MailDomain

        domain = MailDomain.objects.create(name=DOMAIN)
        users = get_user_model().objects
        self.alice = users.create_user("alice", password=USER_PASSWORD)
        self.bob = users.create_user("bob", password=USER_PASSWORD)
        Delegation.objects.create(user=self.alice, domain=domain, role="requester")
        Delegation.objects.create(user=self.bob, domain=domain, role="approver")

    # --- Processes ---------------------------------------------------------------------------

    def _spawn(
        self, name: str, command: list[str], *, cwd: Path = PROJECT_DIR, **overrides: str
    ) -> Process:
        log = self.workdir / f"{name}-{len(self.processes)}.log"
        with log.open("w") as output:
            popen = subprocess.Popen(
                command,
                cwd=cwd,
                env={**self.environment, **overrides},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start_redis(self) -> Process:
        process = self._spawn(
            "redis",
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
        )  # fmt: skip
        self.redis_process = process
        wait_for(self.redis_answers, 10, "redis-server to start")
        return process

    def redis_answers(self) -> bool:
        try:
            return bool(self.redis().ping())
        except redis.RedisError:
            return False

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, socket_timeout=2, socket_connect_timeout=1)

    def start_emulator(self) -> None:
        from apps.iredadmin.emulator_http import EmulatorControl

        self._spawn(
            "emulator",
            [sys.executable, "manage.py", "iredadmin_emulator", "--port", str(self.emulator_port),
             "--admin-username", ADMIN, "--domain", DOMAIN],
        )  # fmt: skip
        self.control = EmulatorControl(f"http://127.0.0.1:{self.emulator_port}/_emulator")

        def answers() -> bool:
            try:
                self.control.stats()
            except Exception:
                return False
            return True

        wait_for(answers, 30, "the emulator to start")

    def reset_emulator(self) -> None:
        """Forget accounts, faults, knobs and counters; keep example.com."""
        self.control.reset()
        self.control.seed(domains=[{"domain": DOMAIN}])

    def start_worker(
        self,
        *,
        concurrency: int = 4,
        wait: bool = True,
        launcher: str = "celery",
        project_dir: Path = PROJECT_DIR,
        **overrides: str,
    ) -> Process:
        """A `celery worker` process (`launcher`: the module run with -m, celery's or a wrapper;
        `project_dir`: the checkout whose code it runs, this one or another revision's)."""
        name = f"worker{len(self.processes)}"
        process = self._spawn(
            name,
            [sys.executable, "-m", launcher, "-A", "portal", "worker", "--pool", "threads",
             "--concurrency", str(concurrency), "--loglevel", "INFO", "-n", f"{name}@chaos",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=project_dir,
            **overrides,
        )  # fmt: skip
        if wait:
            wait_for(lambda: " ready." in process.text() or not process.alive(), 60,
                     f"{name} to be ready")  # fmt: skip
            if not process.alive():
                raise RuntimeError(f"{name} died:\n{process.text()}")
        return process

    def start_web(self, *, workers: int = 2, threads: int = 4, wsgi: str = "portal.wsgi") -> str:
        """gunicorn with the production configuration; returns its base URL once it answers."""
        port = free_port()
        process = self._spawn(
            f"web{len(self.processes)}",
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", wsgi],
            MAILDESK_BIND=f"127.0.0.1:{port}",
            MAILDESK_WEB_PROCESSES=str(workers),
            MAILDESK_WEB_THREADS=str(threads),
        )
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            """The portal itself answers (not only gunicorn's socket): the app loaded."""
            if not process.alive():
                raise RuntimeError(f"gunicorn died:\n{process.text()}")
            try:
                health = requests.get(f"{url}/healthz", headers={"Host": "localhost"}, timeout=2)
            except requests.RequestException:
                return False
            return health.status_code == 200

        wait_for(answers, 30, "gunicorn to serve the portal")
        return url

    def start_beat(self) -> Process:
        return self._spawn(
            "beat",
            [sys.executable, "-m", "celery", "-A", "portal", "beat", "--loglevel", "INFO",
             "-s", str(self.workdir / "beat-schedule")],
        )  # fmt: skip

    def stop(self, process: Process) -> None:
        if process.alive():
            process.kill(signal.SIGTERM)

    # --- The portal's side: requests ----------------------------------------------------------

    def submit_and_approve(
        self, addresses: list[str], *, approve: bool = True, ticket: str = "CHAOS-1"
    ) -> list[int]:
        """Open a create-mailbox request per address (alice) and approve each one (bob)."""
        from apps.provisioning import services

        ids = []
        for address in addresses:
            request = services.request_submit(
                requester=self.alice,
                kind="create_mailbox",
                target=address,
                parameters={"name": address.split("@")[0], "language": "", "quota_mb": None},
                password=MAILBOX_PASSWORD,
                ticket=ticket,
                reason="fault injection",
            )
            if approve:
                services.request_approve(request=request, actor=self.bob)
            ids.append(request.pk)
        return ids

    def approve_together(self, ids: list[int], ticket: str) -> None:
        """bob approves these requests of `ticket` together, as reviewed, up to
        LARGEST_APPROVAL at a time (give them a ticket of their own: the review must match)."""
        from apps.provisioning import services
        from apps.provisioning.selectors import LARGEST_APPROVAL

        for start in range(0, len(ids), LARGEST_APPROVAL):
            reviewed = ids[start : start + LARGEST_APPROVAL]
            services.requests_approve_together(actor=self.bob, ticket=ticket, reviewed=reviewed)

    def requests(self, ids: list[int]) -> list:
        from apps.provisioning.models import ProvisioningRequest

        return with_database(lambda: list(ProvisioningRequest.objects.filter(pk__in=ids)))

    def wait_finished(self, ids: list[int], timeout: float) -> bool:
        from apps.provisioning.models import ProvisioningRequest

        terminal = ProvisioningRequest.TERMINAL_STATUSES

        def finished() -> bool:
            return all(r.status in terminal for r in self.requests(ids))

        try:
            wait_for(finished, timeout, "every request to finish", step=0.25)
        except TimeoutError:
            return False
        return True


def with_database(read: Callable, attempts: int = 60):
    """Run an ORM read, riding out a database restart (reconnect and try again)."""
    from django.db import DatabaseError, close_old_connections, connections

    for attempt in range(attempts):
        try:
            return read()
        except DatabaseError:
            if attempt == attempts - 1:
                raise
            connections.close_all()
            close_old_connections()
            time.sleep(0.5)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    elapsed: list[float] = []
    started = time.monotonic()
    try:
        yield elapsed
    finally:
        elapsed.append(time.monotonic() - started)
