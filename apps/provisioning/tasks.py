"""Celery tasks: thin wrappers that take ids and call the execution service."""

from celery import shared_task

from apps.provisioning import execution
from apps.provisioning.publishing import EXECUTE_TASK, EXECUTE_TOGETHER_TASK


@shared_task(name=EXECUTE_TASK, ignore_result=True)
def execute_request(request_id: int) -> None:
    # The message carries the id only: everything else, the password included, is read from
    # the database by the attempt itself.
    execution.request_execute(request_id=request_id)


@shared_task(name=EXECUTE_TOGETHER_TASK, ignore_result=True)
def execute_requests(request_ids: list[int]) -> None:
    """Requests approved together, one after the other on this thread (publishing.py)."""
    execution.requests_execute(request_ids)


@shared_task(name="provisioning.sweep_requests", ignore_result=True)
def sweep_requests() -> int:
    return execution.requests_sweep()
