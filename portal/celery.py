"""The Celery application: `celery -A portal worker`.

Configuration comes from Django settings (the `CELERY_` names in portal/settings.py).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("maildesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
