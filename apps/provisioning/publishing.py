"""Telling the workers that a request is ready. A hint only: the database is the truth.

Publishing can fail (the broker is down) or hang (the broker stopped answering). The change
it announces is committed already, and the sweeper re-publishes every request left queued, so
a publish is given at most MAILDESK_PUBLISH_TIMEOUT seconds: an approver's page never waits on
the broker, and a failure is logged, not raised.
"""

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as PublishTimeout
from typing import Any

from celery import current_app
from django.conf import settings

logger = logging.getLogger(__name__)

EXECUTE_TASK = "provisioning.execute_request"
EXECUTE_TOGETHER_TASK = "provisioning.execute_requests"
# The most requests of an approval together that one message carries (apps.provisioning.tasks).
# Each message costs its thread a wait at each end (its first claim, its last outcome): with 32
# threads and 2,000 requests, 16 made 1.02 times the requests per second of 8 (docs/performance.md).
LARGEST_MESSAGE = 16


_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None


def _publisher() -> ThreadPoolExecutor:
    """This process's publishing threads (made after a fork, never inherited from the parent)."""
    global _executor, _executor_pid
    with _lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="maildesk-publish")
            _executor_pid = os.getpid()
        return _executor


def _send(request_id: int, countdown: float | None) -> None:
    # No retries inside: a down broker is the sweeper's business.
    current_app.send_task(EXECUTE_TASK, args=[request_id], countdown=countdown, retry=False)


def _send_together(messages: list[list[int]], deadline: float) -> None:
    for request_ids in messages:
        if time.monotonic() > deadline:
            return  # the approver stopped waiting: the rest is the sweeper's, not this thread's
        current_app.send_task(EXECUTE_TOGETHER_TASK, args=[request_ids], retry=False)


def publish_execution(request_id: int, *, countdown: float | None = None) -> bool:
    """Publish the execution of one request, by id only. True if the broker took it in time."""
    return _publish(f"request {request_id}", _send, request_id, countdown)


def publish_executions_together(request_ids: Sequence[int]) -> bool:
    """Publish the executions of many requests approved together, several ids per message.

    A message costs a worker about as much CPU as a request's own database work, so a large
    approval goes out in messages of several requests, each run one after the other by one
    worker thread (`messages_for`).
    """
    if not request_ids:
        return True
    messages = messages_for(list(request_ids), settings.MAILDESK_WORKER_THREADS_TOTAL)
    deadline = time.monotonic() + settings.MAILDESK_PUBLISH_TIMEOUT
    return _publish(
        f"{len(request_ids)} requests approved together", _send_together, messages, deadline
    )


def messages_for(request_ids: list[int], threads: int) -> list[list[int]]:
    """`request_ids` cut into messages, in order, for `threads` worker threads.

    Each message takes a `threads`-th of the requests still left, at least one and at most
    LARGEST_MESSAGE: large messages first, while there is work for every thread after them,
    then ever smaller ones, and single requests at the end. The threads then finish together:
    one that took a large message early is not still working through it when the others have
    run out (guided scheduling).
    """
    messages = []
    start = 0
    while start < len(request_ids):
        size = max(1, min(LARGEST_MESSAGE, (len(request_ids) - start) // threads))
        messages.append(request_ids[start : start + size])
        start += size
    return messages


def _publish(what: str, send: Callable[..., None], *args: Any) -> bool:
    """Run `send(*args)` on a publishing thread for at most MAILDESK_PUBLISH_TIMEOUT seconds."""
    future = _publisher().submit(send, *args)
    try:
        future.result(timeout=settings.MAILDESK_PUBLISH_TIMEOUT)
    except PublishTimeout:
        logger.warning(
            "Publishing %s is taking too long (is the broker hanging?); the sweeper will "
            "publish it again",
            what,
        )
        return False
    except Exception:
        logger.warning(
            "Could not publish %s; the sweeper will publish it again", what, exc_info=True
        )
        return False
    return True
