"""Telling the workers that a request is ready. A hint only: the database is the truth.

Publishing can fail (the broker is down or slow); the approval is committed already, and the
sweeper re-publishes every request left queued, so a failure here is logged, not raised.
"""

import logging

from celery import current_app

logger = logging.getLogger(__name__)

EXECUTE_TASK = "provisioning.execute_request"


def publish_execution(request_id: int, *, countdown: float | None = None) -> bool:
    """Publish the execution of one request, by id only. True if the broker took it."""
    try:
        # No retries here: a down broker must not hold the approver's page; the sweeper retries.
        current_app.send_task(EXECUTE_TASK, args=[request_id], countdown=countdown, retry=False)
    except Exception:
        logger.warning(
            "Could not publish request %s; the sweeper will publish it again",
            request_id,
            exc_info=True,
        )
        return False
    return True
