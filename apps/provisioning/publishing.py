"""Telling the workers that a request is ready. A hint only: the database is the truth.

Publishing can fail (the broker is down) or hang (the broker stopped answering). The change
it announces is committed already, and the sweeper re-publishes every request left queued, so
a publish is given at most MAILDESK_PUBLISH_TIMEOUT seconds: an approver's page never waits on
the broker, and a failure is logged, not raised.
"""

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as PublishTimeout

from celery import current_app
from django.conf import settings

logger = logging.getLogger(__name__)

EXECUTE_TASK = "provisioning.execute_request"

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


def publish_execution(request_id: int, *, countdown: float | None = None) -> bool:
    """Publish the execution of one request, by id only. True if the broker took it in time."""
    future = _publisher().submit(_send, request_id, countdown)
    try:
        future.result(timeout=settings.MAILDESK_PUBLISH_TIMEOUT)
    except PublishTimeout:
        logger.warning(
            "Publishing request %s is taking too long (is the broker hanging?); the sweeper "
            "will publish it again",
            request_id,
        )
        return False
    except Exception:
        logger.warning(
            "Could not publish request %s; the sweeper will publish it again",
            request_id,
            exc_info=True,
        )
        return False
    return True
