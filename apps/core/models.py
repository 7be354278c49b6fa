from django.db import models


class TimeStampedModel(models.Model):
    """Base for every Maildesk model: when a row was created and last changed."""

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
