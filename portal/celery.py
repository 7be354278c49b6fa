"""The Celery application: `celery -A portal worker`.

Configuration comes from Django settings (the `CELERY_` names in portal/settings.py).
"""

import os
from typing import Any

from celery import Celery
from celery.signals import task_prerun

from portal import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

broker.install()
app = Celery("maildesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _check_database_connections(**kwargs: Any) -> None:
    """Before each task, what Django does between web requests.

    Connections persist across tasks (CELERY_DB_REUSE_MAX); this closes one that broke (the
    database restarted) or outlived CONN_MAX_AGE, so the next query opens a fresh one. Once
    per task is enough: checking again after the task would find what the next check finds.
    """
    from django.db import close_old_connections

    close_old_connections()
