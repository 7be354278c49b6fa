"""The portal with publishing stubbed out, for bench.approval's baseline only.

An approval then does all it does, except hand the request to the broker.
"""

from portal.wsgi import application  # sets Django up

__all__ = ["application"]


def _not_published(request_id: int, *, countdown: float | None = None) -> bool:
    return True


def _stub_publishing() -> None:
    from apps.provisioning import services  # only once Django is set up

    services.publish_execution = _not_published


_stub_publishing()
