"""The scenarios of issue 4: what breaks, and what must still hold.

Every approved request must end in exactly one of succeeded or failed, with at most one effect
on the mail server (the emulator's creation counter per address), whatever breaks in between.
Each scenario returns its row of the report; `problems` lists every expectation it missed.
"""

import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from chaos.harness import PROJECT_DIR, TIMINGS, Environment, timed, wait_for, with_database

SUCCEEDED, FAILED = "succeeded", "failed"
TERMINAL = {"succeeded", "failed", "rejected", "cancelled"}


@dataclass
class Result:
    scenario: str
    runs: int = 0
    requests: int = 0
    terminal: int = 0
    duplicates: int = 0
    lost: int = 0
    max_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)


def addresses(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{number}@example.com" for number in range(count)]


def account(env: Environment, result: Result, ids: list[int], *, expect: str = SUCCEEDED) -> None:
    """Count the outcome of these requests into the row, and note what is wrong."""
    rows = env.requests(ids)
    created = env.control.stats()["created"]
    result.requests += len(ids)
    for row in rows:
        effects = created.get(f"user:{row.target}", 0)
        if row.status in TERMINAL:
            result.terminal += 1
        else:
            result.lost += 1
            result.problems.append(f"{row.code} ({row.target}) left {row.status}")
        if effects > 1:
            result.duplicates += 1
            result.problems.append(f"{row.target} created {effects} times")
        if row.status == SUCCEEDED and effects != 1:
            result.problems.append(f"{row.code} succeeded but {row.target} was created {effects}x")
        if row.status in TERMINAL and row.status != expect:
            result.problems.append(f"{row.code} ended {row.status} ({row.result_code})")
        if row.finished_at and row.decided_at:
            seconds = (row.finished_at - row.decided_at).total_seconds()
            result.max_seconds = max(result.max_seconds, seconds)


def noop_deliveries(workers) -> int:
    return sum(worker.text().count("nothing to do") for worker in workers)


def start_with_held_creations(env: Environment, *, seconds: float):
    """Beat and a worker, against a server that holds every creation `seconds`, then performs
    it even if the caller died."""
    env.reset_emulator()
    env.control.add_fault({"kind": "delay", "delay": seconds, "method": "POST", "route": "user",
                           "times": 0})  # fmt: skip
    return env.start_beat(), env.start_worker()


def kill_mid_call(env: Environment, worker, result: Result, *, pause: tuple[float, float]):
    """SIGKILL `worker` a random while (`pause`, seconds) into a held call; returns a new one."""
    try:
        wait_for(lambda: env.control.stats()["in_flight"] > 0, 20, "a POST to be held")
    except TimeoutError:
        result.problems.append(f"run {result.runs}: no call in flight to interrupt")
    time.sleep(random.uniform(*pause))
    worker.kill(signal.SIGKILL)
    result.runs += 1
    return env.start_worker(wait=False)


def account_after_kills(
    env: Environment, result: Result, ids: list[int], *, work_seconds: int
) -> int:
    """Wait out the recovery, count the outcomes; returns how many were reconciled."""
    # The lease twice: a request claimed one attempt ahead (a message of several) holds two.
    recovery = work_seconds + sum(
        int(TIMINGS[name])
        for name in (
            "MAILDESK_LEASE_SECONDS",
            "MAILDESK_LEASE_SECONDS",
            "MAILDESK_SWEEP_SECONDS",
            "MAILDESK_QUEUED_GRACE_SECONDS",
        )
    )
    result.expect(env.wait_finished(ids, recovery), "not every request finished in time")
    env.control.clear_faults()
    account(env, result, ids)
    return with_database(lambda: _reconciled(ids))


# --- 1 ----------------------------------------------------------------------------------------


def worker_killed_mid_call(env: Environment) -> Result:
    """SIGKILL the worker while the emulator holds a POST, again and again."""
    result = Result("1 worker killed mid-call")
    beat, worker = start_with_held_creations(env, seconds=1.0)
    ids: list[int] = []
    for run in range(20):
        ids += env.submit_and_approve(addresses(f"kill{run}-", 3))
        worker = kill_mid_call(env, worker, result, pause=(0.05, 0.8))  # anywhere in the call
    reconciled = account_after_kills(env, result, ids, work_seconds=40)
    result.notes.append(f"{result.runs} SIGKILLs; {reconciled} reconciled by reading back")
    env.stop(worker)
    env.stop(beat)
    return result


# --- 2 ----------------------------------------------------------------------------------------


def redis_down_or_hanging(env: Environment) -> Result:
    """Approve while Redis is down, then while it hangs: each approval answers within 2 s."""
    from django.test import Client

    from apps.provisioning.models import ProvisioningRequest

    result = Result("2 Redis down or hanging")
    env.reset_emulator()
    beat = env.start_beat()
    worker = env.start_worker()
    browser = Client()
    browser.force_login(env.bob)
    ids: list[int] = []
    slowest = 0.0
    for phase, (stop, resume) in {
        "down": (lambda: env.redis_process.kill(signal.SIGKILL), env.start_redis),
        "hanging": (
            lambda: env.redis_process.kill(signal.SIGSTOP),
            lambda: env.redis_process.kill(signal.SIGCONT),
        ),
    }.items():
        pending = env.submit_and_approve(addresses(f"{phase}-", 5), approve=False)
        stop()
        for request in ProvisioningRequest.objects.filter(pk__in=pending):
            with timed() as elapsed:
                answer = browser.post(f"/requests/{request.code}/approve/")
            slowest = max(slowest, elapsed[0])
            result.expect(
                answer.status_code == 302, f"{phase}: approval answered {answer.status_code}"
            )
            request.refresh_from_db()
            result.expect(request.status == "queued", f"{phase}: {request.code} not committed")
        time.sleep(2)  # the broker stays broken for a while
        resume()
        result.runs += 1
        ids += pending
    result.expect(slowest < 2.0, f"an approval took {slowest:.2f} s")
    result.expect(env.wait_finished(ids, 60), "not every request finished after Redis returned")
    account(env, result, ids)
    result.notes.append(f"slowest approval {slowest:.2f} s")
    env.stop(worker)
    env.stop(beat)
    return result


# --- 3 ----------------------------------------------------------------------------------------


def broker_loses_messages(env: Environment) -> Result:
    """FLUSHALL while requests are queued and running: the sweeper recovers them all."""
    result = Result("3 broker loses its messages")
    env.reset_emulator()
    env.control.add_fault({"kind": "delay", "delay": 0.5, "method": "POST", "route": "user",
                           "times": 0})  # fmt: skip
    beat = env.start_beat()
    worker = env.start_worker(concurrency=2)
    ids: list[int] = []
    for run in range(3):
        ids += env.submit_and_approve(addresses(f"flush{run}-", 12))
        wait_for(lambda: env.control.stats()["in_flight"] > 0, 20, "requests to be running")
        env.redis().flushall()
        result.runs += 1
    result.expect(env.wait_finished(ids, 90), "not every request finished after the flushes")
    env.control.clear_faults()
    account(env, result, ids)
    env.stop(worker)
    env.stop(beat)
    return result


# --- 4 ----------------------------------------------------------------------------------------


def duplicate_delivery(env: Environment) -> Result:
    """Every task message delivered five times: one effect, four no-ops, no redelivery loop."""
    from celery import current_app

    result = Result("4 duplicate delivery")
    env.reset_emulator()
    workers = [env.start_worker(), env.start_worker()]
    extra = 4
    ids = env.submit_and_approve(addresses("dup-", 20), approve=False)
    from apps.provisioning import services
    from apps.provisioning.models import ProvisioningRequest

    for request in ProvisioningRequest.objects.filter(pk__in=ids):
        services.request_approve(request=request, actor=env.bob)
        for _ in range(extra):
            current_app.send_task("provisioning.execute_request", args=[request.pk])
    result.runs = 1
    result.expect(env.wait_finished(ids, 60), "not every request finished")

    def all_delivered() -> bool:
        return noop_deliveries(workers) >= extra * len(ids)

    try:
        wait_for(all_delivered, 30, "every extra delivery")
    except TimeoutError:
        result.problems.append(f"only {noop_deliveries(workers)} of {extra * len(ids)} no-ops")
    time.sleep(3)
    queued = env.redis().llen(env.queue)
    noops = noop_deliveries(workers)
    result.expect(queued == 0, f"{queued} messages still queued")
    result.expect(noops == extra * len(ids), f"{noops} no-ops for {extra * len(ids)} extras")
    account(env, result, ids)
    result.notes.append(f"{noops} extra deliveries were no-ops")
    for worker in workers:
        env.stop(worker)
    return result


# --- 5 ----------------------------------------------------------------------------------------


def ambiguous_outcomes(env: Environment) -> Result:
    """The server does the work, then the answer is lost or late: read back, never twice."""
    result = Result("5 ambiguous outcome")
    env.reset_emulator()
    beat = env.start_beat()
    worker = env.start_worker()
    ours = addresses("lost-", 10)
    for number, address in enumerate(ours):
        fault = {"kind": "drop"} if number % 2 else {"kind": "delay", "delay": 7.0}
        env.control.add_fault({**fault, "route": "user", "method": "POST", "target": address,
                               "effect": True})  # fmt: skip
    ids = env.submit_and_approve(ours)
    result.runs += 1
    result.expect(env.wait_finished(ids, 90), "not every request finished")
    account(env, result, ids)
    reconciled = with_database(lambda: _reconciled(ids))
    result.expect(reconciled == len(ids), f"{reconciled} of {len(ids)} reconciled by reading back")

    # Addresses that existed before our first attempt: a failure, never our success.
    theirs = addresses("theirs-", 5)
    env.control.seed(mailboxes=[{"email": a, "password": "Someone-Elses-1!"} for a in theirs])
    for address in theirs:
        env.control.add_fault({"kind": "drop", "route": "user", "method": "POST",
                               "target": address})  # fmt: skip
    before = env.control.stats()["created"]
    foreign = env.submit_and_approve(theirs)
    result.runs += 1
    result.expect(env.wait_finished(foreign, 90), "not every pre-existing address finished")
    result.expect(env.control.stats()["created"] == before, "a pre-existing address was created")
    account(env, result, foreign, expect=FAILED)
    result.notes.append(f"{reconciled} reconciled; {len(theirs)} pre-existing reported as failures")
    env.stop(worker)
    env.stop(beat)
    return result


def _reconciled(ids: list[int]) -> int:
    from apps.audit.models import AuditEvent
    from apps.provisioning.models import ProvisioningRequest

    codes = ProvisioningRequest.objects.filter(pk__in=ids).values("code")
    return AuditEvent.objects.filter(
        request_code__in=codes, action="api.succeeded", details__reconciled=True
    ).count()


# --- 6 ----------------------------------------------------------------------------------------


def error_matrix(env: Environment) -> Result:
    """Every row of docs/reliability.md's error table, asserted by its test."""
    result = Result("6 error matrix")
    answer = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/provisioning/test_error_matrix.py", "-q",
         "-p", "no:cacheprovider"],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    passed = re.search(r"(\d+) passed", answer.stdout)
    failed = re.search(r"(\d+) failed", answer.stdout)
    result.runs = result.requests = result.terminal = int(passed.group(1)) if passed else 0
    if failed or answer.returncode != 0:
        result.problems.append(f"error-matrix test failed:\n{answer.stdout[-3000:]}")
    result.notes.append("each row: both dialects, one request per row")
    return result


# --- 7 ----------------------------------------------------------------------------------------


def session_expiry(env: Environment) -> Result:
    """Sessions forced to expire every N calls, and by idle time: no request fails for it."""
    result = Result("7 session expiry")
    env.reset_emulator()
    threads = 4
    env.control.configure(expire_session_every=7)
    worker = env.start_worker(concurrency=threads)
    ids = env.submit_and_approve(addresses("expire-", 60))
    result.runs += 1
    result.expect(env.wait_finished(ids, 60), "not every request finished")
    stats = env.control.stats()
    allowed = threads + stats["sessions_expired"]
    result.expect(stats["logins"] <= allowed, f"{stats['logins']} logins for {allowed} allowed")
    result.notes.append(
        f"{stats['logins']} logins for {threads} threads and {stats['sessions_expired']} expiries"
    )
    env.control.configure(expire_session_every=0, session_timeout=1.5)
    idle = env.submit_and_approve(addresses("idle-a-", 8))
    env.wait_finished(idle, 30)
    time.sleep(2.5)  # longer than the idle timeout
    idle += env.submit_and_approve(addresses("idle-b-", 8))
    result.runs += 1
    result.expect(env.wait_finished(idle, 30), "not every request finished after idling")
    account(env, result, ids + idle)
    env.stop(worker)
    return result


# --- 8 ----------------------------------------------------------------------------------------


def operator_problems(env: Environment) -> Result:
    """A wrong admin password, then an API closed to this host: no login storm, requests wait
    and say why, and continue once it is fixed."""
    from django.test import Client

    result = Result("8 wrong password / IP refused")
    env.reset_emulator()
    beat = env.start_beat()
    # Requests wait for the operator 6 s here (an hour by default), then fail.
    wrong = env.start_worker(
        IREDADMIN_PASSWORD="Not-The-Password-1!", MAILDESK_OPERATOR_WAIT_SECONDS="6"
    )
    started = time.monotonic()
    failing = env.submit_and_approve(addresses("wrongpw-", 20))
    result.runs += 1
    result.expect(env.wait_finished(failing, 60), "requests with a wrong password never ended")
    elapsed = time.monotonic() - started
    failed_logins = env.control.stats()["failed_logins"]
    # One login per refusal window (3 s) per worker process, not one per attempt.
    allowed = 1 + int(elapsed / 3) + 1
    result.expect(failed_logins <= allowed, f"{failed_logins} failed logins (allowed {allowed})")
    account(env, result, failing, expect=FAILED)
    browser = Client()
    browser.force_login(env.alice)
    page = browser.get("/").content.decode()
    result.expect("cannot work with the mail server" in page, "the dashboard does not say it")
    result.expect("IREDADMIN_PASSWORD" in page, "the dashboard does not say what to fix")
    env.stop(wrong)

    worker = env.start_worker()
    env.control.configure(allowed_clients=["10.0.0.0/8"])
    waiting = env.submit_and_approve(addresses("closed-", 10))
    time.sleep(4)
    rows = env.requests(waiting)
    result.expect(all(r.status == "queued" and r.needs_operator for r in rows),
                  "requests did not wait for the operator")  # fmt: skip
    env.control.configure(allowed_clients=[])  # the operator fixes the allow-list
    result.runs += 1
    result.expect(env.wait_finished(waiting, 60), "requests did not continue once fixed")
    account(env, result, waiting)
    attempts = sum(r.attempts for r in env.requests(failing))
    result.notes.append(f"{failed_logins} failed logins for {attempts} attempts")
    env.stop(worker)
    env.stop(beat)
    return result


# --- 9 ----------------------------------------------------------------------------------------

AUDIT_DOWN = """
CREATE FUNCTION chaos_audit_down() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'audit storage down'; END; $$ LANGUAGE plpgsql;
CREATE TRIGGER chaos_audit_down BEFORE INSERT ON audit_auditevent
    FOR EACH ROW WHEN (NEW.action IN ('api.call', 'request.approved'))
    EXECUTE FUNCTION chaos_audit_down();
"""
AUDIT_UP = """
DROP TRIGGER chaos_audit_down ON audit_auditevent;
DROP FUNCTION chaos_audit_down();
"""


def audit_write_fails(env: Environment) -> Result:
    """While audit rows cannot be written: no approval happens and no API call is made."""
    from django.db import connection
    from django.test import Client

    from apps.provisioning.models import ProvisioningRequest

    result = Result("9 audit write fails")
    env.reset_emulator()
    # Approved before the audit storage fails, and not yet taken by any worker.
    queued = env.submit_and_approve(addresses("audit-q-", 10))
    pending = env.submit_and_approve(addresses("audit-p-", 5), approve=False)
    with connection.cursor() as cursor:
        cursor.execute(AUDIT_DOWN)
    beat = env.start_beat()
    worker = env.start_worker()
    browser = Client()
    browser.force_login(env.bob)
    for request in ProvisioningRequest.objects.filter(pk__in=pending):
        page = browser.post(f"/requests/{request.code}/approve/", follow=True)
        result.expect("nothing was done" in page.content.decode(), "no message for the approver")
    time.sleep(6)  # workers and the sweeper try, and must not call the API
    calls = env.control.stats()["calls"].get("POST user", 0)
    result.expect(calls == 0, f"{calls} API calls made without their audit row")
    statuses = {r.status for r in env.requests(pending)}
    result.expect(statuses == {"pending"}, f"approvals happened without audit: {statuses}")
    statuses = {r.status for r in env.requests(queued)}
    result.expect(statuses <= {"queued"}, f"queued requests moved without audit: {statuses}")
    with connection.cursor() as cursor:
        cursor.execute(AUDIT_UP)
    for request in ProvisioningRequest.objects.filter(pk__in=pending):
        browser.post(f"/requests/{request.code}/approve/")
    result.runs += 1
    result.expect(env.wait_finished(queued + pending, 60), "requests did not finish afterwards")
    account(env, result, queued + pending)
    result.notes.append("0 API calls and 0 approvals while the audit log was down")
    env.stop(worker)
    env.stop(beat)
    return result


# --- 10 ---------------------------------------------------------------------------------------


def database_restarts(env: Environment) -> Result:
    """PostgreSQL restarts while the worker runs: the same worker carries on."""
    result = Result("10 database restarts")
    env.reset_emulator()
    env.control.add_fault({"kind": "delay", "delay": 0.3, "method": "POST", "route": "user",
                           "times": 0})  # fmt: skip
    beat = env.start_beat()
    worker = env.start_worker()
    ids = env.submit_and_approve(addresses("dbrestart-", 30))
    time.sleep(1.0)
    cluster = subprocess.run(["ls", "/etc/postgresql"], capture_output=True, text=True).stdout
    restart = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster.split()[0], "main", "restart"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    result.expect(restart.returncode == 0, f"could not restart PostgreSQL: {restart.stderr}")
    result.runs += 1
    with_database(lambda: env.requests(ids))  # the database answers again
    after = env.submit_and_approve(addresses("dbafter-", 10))
    result.expect(env.wait_finished(ids + after, 90), "not every request finished")
    result.expect(worker.alive(), "the worker died")
    account(env, result, ids + after)
    env.control.clear_faults()
    result.notes.append(f"worker pid {worker.popen.pid} kept running")
    env.stop(worker)
    env.stop(beat)
    return result


# --- 11 ---------------------------------------------------------------------------------------


def approved_together_killed(env: Environment) -> Result:
    """A ticket approved together, its worker killed inside messages of several requests.

    Five tickets of 40, each approved in one step, and the worker SIGKILLed each time while it
    works through the messages."""
    from django.test.utils import override_settings

    result = Result("11 approved together, worker killed")
    beat, worker = start_with_held_creations(env, seconds=0.3)
    ids: list[int] = []
    # Published for the 4 threads of the worker: 40 requests go out as 10, 7, 5, 4, 3, 2, 2 and
    # seven single ones (publishing.messages_for).
    with override_settings(MAILDESK_WORKER_THREADS_TOTAL=4):
        for run in range(5):
            ticket = f"CHAOS-{11_00 + run}"  # its own: the review must match exactly
            pending = env.submit_and_approve(
                addresses(f"together{run}-", 40), approve=False, ticket=ticket
            )
            env.approve_together(pending, ticket)
            ids += pending
            # Inside a message of several, or between two.
            worker = kill_mid_call(env, worker, result, pause=(0.1, 1.5))
    reconciled = account_after_kills(env, result, ids, work_seconds=60)
    result.notes.append(
        f"{result.runs} SIGKILLs inside messages of up to 10 requests; {reconciled} reconciled"
    )
    env.stop(worker)
    env.stop(beat)
    return result


SCENARIOS = [
    worker_killed_mid_call,
    redis_down_or_hanging,
    broker_loses_messages,
    duplicate_delivery,
    ambiguous_outcomes,
    error_matrix,
    session_expiry,
    operator_problems,
    audit_write_fails,
    database_restarts,
    approved_together_killed,
]
