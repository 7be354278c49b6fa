"""Celery tasks: thin wrappers that take ids and call the execution service."""

import logging

from celery import shared_task

from apps.provisioning import execution
from apps.provisioning.publishing import EXECUTE_TASK, EXECUTE_TOGETHER_TASK

logger = logging.getLogger(__name__)


@shared_task(name=EXECUTE_TASK, ignore_result=True)
def execute_request(request_id: int) -> None:
    # The message carries the id only: everything else, the password included, is read from
    # the database by the attempt itself.
    execution.request_execute(request_id=request_id)


@shared_task(name=EXECUTE_TOGETHER_TASK, ignore_result=True)
def execute_requests(request_ids: list[int]) -> None:
    """Requests approved together, one after the other on this thread (publishing.py)."""
    for request_id in request_ids:
        try:
            execution.request_execute(request_id=request_id)
        except Exception:
            # One request's trouble (the database went away) must not strand the others of the
            # message. This one is left as a lone task's would be: still queued (the sweeper
            # publishes it again) or, if its claim was written, running until its lease ends
            # (then read back before anything is done again).
            logger.exception(
                "Request %s: its attempt failed before its outcome was recorded; the sweeper "
                "takes it over",
                request_id,
            )


@shared_task(name="provisioning.sweep_requests", ignore_result=True)
def sweep_requests() -> int:
    return execution.requests_sweep()
