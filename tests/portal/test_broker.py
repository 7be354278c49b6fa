"""portal.broker: kombu's Redis transport with one client object per connection pool."""

import uuid

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue

from portal import broker


def test_redis_urls_use_the_transport_and_still_show_as_redis():
    for url in ("redis://127.0.0.1:6379/15", "rediss://127.0.0.1:6380/0"):
        connection = Connection(url)
        assert isinstance(connection.transport, broker.Transport)
        # Wherever the broker's address is printed (the worker's banner, its log), it reads
        # as what the operator configured.
        assert connection.as_uri().startswith(url.split("//")[0] + "//")
    assert not isinstance(Connection("memory://").transport, broker.Transport)


class _CountingClients:
    """Counts the synchronous client objects a channel builds (the polling loop's are apart)."""

    def __init__(self, channel) -> None:
        self.count = 0
        self._build = channel._create_client
        channel._create_client = self

    def __call__(self, asynchronous: bool = False) -> redis.Redis:
        if not asynchronous:
            self.count += 1
        return self._build(asynchronous=asynchronous)


@pytest.fixture
def queue(redis_url):
    name = f"test-broker-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    with Connection(redis_url) as connection:
        yield connection, queue
        queue(connection.default_channel).delete()


def _publish(connection: Connection, queue: Queue, bodies: list[int]) -> None:
    producer = Producer(connection.default_channel)
    for body in bodies:
        producer.publish(body, exchange=queue.exchange, routing_key=queue.routing_key,
                         declare=[queue], serializer="json")  # fmt: skip


def _receive_and_ack(connection: Connection, queue: Queue, count: int) -> list[int]:
    received: list[int] = []

    def on_message(body: int, message) -> None:
        received.append(body)
        message.ack()

    with Consumer(connection.default_channel, [queue], callbacks=[on_message]):
        while len(received) < count:
            connection.drain_events(timeout=5)
    return received


def test_deliveries_and_acks_share_one_client(queue):
    connection, queue = queue
    clients = _CountingClients(connection.default_channel)
    _publish(connection, queue, list(range(20)))

    received = _receive_and_ack(connection, queue, 20)

    assert received == list(range(20))
    # Each delivery is noted among the unacknowledged and then acked: two commands apiece,
    # for each of which kombu's own channel builds a new client object (83 here in all).
    assert clients.count == 1
    server = redis.Redis(connection_pool=connection.default_channel.pool)
    unacked = server.hgetall(connection.default_channel.unacked_key)
    assert not [tag for tag, payload in unacked.items() if queue.name.encode() in payload]


def test_a_replaced_pool_gets_a_client_of_its_own(queue):
    connection, queue = queue
    channel = connection.default_channel
    clients = _CountingClients(channel)
    _publish(connection, queue, [1])
    assert _receive_and_ack(connection, queue, 1) == [1]

    channel._disconnect_pools()  # what kombu does after a connection error
    _publish(connection, queue, [2])

    assert _receive_and_ack(connection, queue, 1) == [2]
    assert clients.count == 2
    with channel.conn_or_acquire() as client:
        assert client.connection_pool is channel.pool
