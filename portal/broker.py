"""The Redis broker transport, without a new client object for every command.

kombu's Redis channel builds a new `redis.Redis` for each command it sends outside its polling
loop: twice per task (noting the delivery among the unacknowledged, then the ack). Building one
copies redis-py's table of about 170 reply handlers, upper-casing every name (redis-py issue
#3624): 63 µs each here; Celery's own CPU per task is 5-6% less without them. A client holds no
connection (each command borrows one from the pool) and is safe to share between threads, so
the channel keeps one per pool, and makes a new one when kombu replaces the pool after a
connection error.

`install()` (called by portal/celery.py) makes redis:// and rediss:// broker URLs use it.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client: redis.Redis | None = None

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        if client:
            yield client
            return
        pool = self.pool
        shared = self._shared_client
        if shared is None or shared.connection_pool is not pool:
            # Two threads may both get here: each makes one, the last one stays; both work.
            shared = self._shared_client = self._create_client()
        yield shared


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Use this transport for redis:// and rediss:// URLs, through kombu's table of transport
    names (a CELERY_BROKER_TRANSPORT setting would do too, but would then show its own name
    instead of redis:// wherever the broker's address is printed)."""
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
