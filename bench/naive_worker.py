"""A deliberately naive worker, for comparison only: a new client for every task.

Every task then logs in and opens a new TCP connection, as a worker would that made its client
inside the task. Run like celery: `python -m bench.naive_worker -A portal worker ...`.
"""

import sys

import django
from celery.__main__ import main

django.setup()

from apps.iredadmin import config  # noqa: E402 (Django must be set up first)
from apps.provisioning import execution  # noqa: E402

execution.thread_client = config.client_from_settings

if __name__ == "__main__":
    sys.exit(main())
