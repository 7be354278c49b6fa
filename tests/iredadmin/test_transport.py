"""The client's HTTP exchange (`apps.iredadmin.transport`): the same bytes on the wire as the
requests Session it replaced, and the server's session cookie kept as a cookie jar keeps it."""

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import responses

from apps.iredadmin.transport import Transport

BASE = "http://mail.example.com/iredadmin/api"
COOKIE = "iRedAdmin-Pro-PGSQL"
ATTRIBUTES = "HttpOnly; SameSite=Strict; Path=/iredadmin/"


# --- On the wire -------------------------------------------------------------------------------


class CapturingServer:
    """Answers every request on a real socket with one fixed answer, and keeps what it read."""

    BODY = b'{"_success": true}'
    ANSWER = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
        f"Set-Cookie: {COOKIE}=abc; {ATTRIBUTES}\r\n\r\n"
    ).encode() + BODY

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/iredadmin/api"
        self.requests: list[bytes] = []
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            while request := self._read_request(connection):
                self.requests.append(request)
                connection.sendall(self.ANSWER)

    @staticmethod
    def _read_request(connection: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length:")),
            0,
        )  # fmt: skip
        while len(body) < length:
            body += connection.recv(65536)
        return head + b"\r\n\r\n" + body

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def server() -> Iterator[CapturingServer]:
    server = CapturingServer()
    yield server
    server.close()


def the_session_it_replaced() -> requests.Session:
    """The client's Session before the transport: settings read once, JSON asked for."""
    session = requests.Session()
    session.trust_env = False
    session.headers["Accept"] = "application/json"
    return session


@pytest.mark.parametrize(
    ("method", "path", "form", "query"),
    [
        ("POST", "/login", {"username": "admin@example.com", "password": "s3cret & more"}, None),
        ("POST", "/user/j%C3%BCrgen@example.com", {"name": "Jürgen Ö", "quota": "1024"}, None),
        ("PUT", "/domain/example.com", {"language": "de_DE"}, None),
        ("GET", "/domains", None, None),
        ("DELETE", "/user/a@example.com", None, {"keep_mailbox_days": "30"}),
        ("POST", "/verify_password/user/a@example.com", None, None),
    ],
    ids=["login", "non-ascii-form", "put", "get", "delete-with-query", "post-without-form"],
)
def test_it_sends_what_a_requests_session_sent(server, method, path, form, query):
    session = the_session_it_replaced()
    transport = Transport(server.url, verify=True)
    # Both log in first, so that both send the cookie the server set.
    session.request("POST", server.url + "/login", data={"u": "1"}, allow_redirects=False)
    transport.send("POST", "/login", form={"u": "1"}, timeout=5)

    session.request(
        method, server.url + path, data=form, params=query, allow_redirects=False, timeout=5
    )
    transport.send(method, path, form=form, query=query, timeout=5)

    session_call, transport_call = server.requests[2], server.requests[3]
    assert transport_call == session_call
    assert f"Cookie: {COOKIE}=abc\r\n".encode() in transport_call
    # And the login itself, which had no cookie to send.
    assert server.requests[1] == server.requests[0]


def test_the_answer_is_read_and_the_connection_kept(server):
    transport = Transport(server.url, verify=True)
    answers = [transport.send("GET", "/domains", timeout=5) for _ in range(3)]
    assert [answer.json() for answer in answers] == [{"_success": True}] * 3
    assert len(server.requests) == 3
    assert server.connections == 1


def test_an_idn_host_is_sent_in_ascii():
    assert Transport("https://bücher.example/iredadmin/api/", verify=True).base_url == (
        "https://xn--bcher-kva.example/iredadmin/api"
    )


# --- The session cookie ------------------------------------------------------------------------


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


def exchange(
    http: responses.RequestsMock, transport: Transport, *answers: str | tuple | None
) -> None:
    """One GET per answer, each answered with that Set-Cookie (None: none). An answer is a
    Set-Cookie value for /domains, or (path, Set-Cookie) for another path."""
    for answer in answers:
        path, set_cookie = answer if isinstance(answer, tuple) else ("/domains", answer)
        headers = {"Set-Cookie": set_cookie} if set_cookie else {}
        http.add(responses.GET, BASE + path, json={"_success": True}, headers=headers)
        transport.send("GET", path, timeout=5)


def cookies_sent(http: responses.RequestsMock) -> list[str]:
    return [call.request.headers.get("Cookie", "") for call in http.calls]


def test_the_cookie_follows_what_the_server_sets(http):
    exchange(
        http,
        Transport(BASE, verify=True),
        f"{COOKIE}=first; {ATTRIBUTES}",
        f"{COOKIE}=first; {ATTRIBUTES}",  # the same again: kept
        None,  # none at all: kept
        f"{COOKIE}=second; {ATTRIBUTES}",  # a new session
        f"{COOKIE}=; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; {ATTRIBUTES}",
        None,
    )
    assert cookies_sent(http) == [
        "",
        f"{COOKIE}=first",
        f"{COOKIE}=first",
        f"{COOKIE}=first",
        f"{COOKIE}=second",
        "",  # expired by the server: gone, as from a cookie jar
    ]


@pytest.mark.parametrize(
    "set_cookie",
    [f"{COOKIE}=elsewhere; Path=/other/", f"{COOKIE}=tls-only; Secure; {ATTRIBUTES}"],
    ids=["for-another-path", "secure-over-plain-http"],
)
def test_a_cookie_a_jar_would_not_send_here_is_not_sent(http, set_cookie):
    exchange(http, Transport(BASE, verify=True), set_cookie, None)
    assert cookies_sent(http) == ["", ""]


def test_a_cookie_that_expires_is_no_longer_sent(http, monkeypatch):
    transport = Transport(BASE, verify=True)
    exchange(http, transport, f"{COOKIE}=brief; Max-Age=60; {ATTRIBUTES}", None)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 120)  # two minutes on, without a new one
    exchange(http, transport, None)

    assert cookies_sent(http) == ["", f"{COOKIE}=brief", ""]


@pytest.mark.parametrize(
    "set_cookie",
    [f"{COOKIE}=users-only; Path=/iredadmin/api/user", f"{COOKIE}=users-only"],
    ids=["a-path-under-the-base", "no-path-set-by-an-answer-under-user"],
)
def test_a_cookie_for_part_of_the_api_is_sent_there_only(http, set_cookie):
    exchange(
        http,
        Transport(BASE, verify=True),
        ("/user/a@example.com", set_cookie),
        ("/user/b@example.com", None),
        None,
    )
    assert cookies_sent(http) == ["", f"{COOKIE}=users-only", ""]
