"""Publishing never holds the approver: a down or hanging broker costs at most the timeout."""

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from apps.provisioning import publishing
from apps.provisioning.publishing import (
    EXECUTE_TOGETHER_TASK,
    LARGEST_MESSAGE,
    messages_for,
    publish_execution,
    publish_executions_together,
)
from tests.conftest import use_broker


@pytest.fixture
def hanging_broker() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a Redis that stopped."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.fixture
def refusing_broker() -> str:
    """An address where nothing listens: a Redis that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize("broker", ["hanging_broker", "refusing_broker"])
@pytest.mark.parametrize("together", [False, True], ids=["one", "together"])
def test_a_broken_broker_costs_the_caller_at_most_the_publish_timeout(
    request, settings, monkeypatch, broker, together
):
    settings.MAILDESK_PUBLISH_TIMEOUT = 0.5
    # Publishing threads of this test's own: a send left stuck on the broken broker must not
    # hold the threads the next test publishes with (the previous ones come back afterwards).
    monkeypatch.setattr(publishing, "_executor", None)
    use_broker(request.getfixturevalue(broker))
    try:
        started = time.monotonic()
        delivered = publish_executions_together(range(500)) if together else publish_execution(42)
        elapsed = time.monotonic() - started
    finally:
        use_broker("memory://")

    assert delivered is False
    assert elapsed < 1.5


def test_a_working_broker_gets_the_message_at_once(published):
    assert publish_execution(7) is True
    assert [args for _, args, _ in published()] == [[7]]


@pytest.mark.parametrize(
    ("approved", "threads", "sizes"),
    [
        (12, 2, [6, 3, 1, 1, 1]),  # each thread ends up with 6: the first message, or the rest
        (40, 32, [1] * 40),  # fewer requests than two per thread: one per message
        (1, 32, [1]),
        (0, 32, []),
    ],
)
def test_requests_approved_together_go_out_in_ever_smaller_messages(
    settings, published, approved, threads, sizes
):
    settings.MAILDESK_WORKER_THREADS_TOTAL = threads
    ids = list(range(1000, 1000 + approved))

    assert publish_executions_together(ids) is True

    messages = published()
    assert {task for task, _, _ in messages} <= {EXECUTE_TOGETHER_TASK}
    assert [len(args[0]) for _, args, _ in messages] == sizes
    assert [request_id for _, args, _ in messages for request_id in args[0]] == ids


@pytest.mark.parametrize("approved", [500, 1000, 5000])
def test_a_large_approval_saves_most_messages_and_still_ends_in_single_requests(approved):
    ids = list(range(approved))

    messages = messages_for(ids, 32)

    sizes = [len(message) for message in messages]
    assert [request_id for message in messages for request_id in message] == ids
    # A thread's share of what is left, at most LARGEST_MESSAGE.
    assert sizes[0] == min(LARGEST_MESSAGE, approved // 32)
    assert max(sizes) == sizes[0]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-32:] == [1] * 32  # each thread's last message: one request
    assert len(messages) < approved * 0.3


def test_a_together_publish_stops_once_the_approver_stopped_waiting(published):
    publishing._send_together([[1], [2, 3]], time.monotonic() - 1)
    assert published() == []

    publishing._send_together([[1], [2, 3]], time.monotonic() + 60)
    assert [args for _, args, _ in published()] == [[[1]], [[2, 3]]]
