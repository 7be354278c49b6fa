"""The emulator over HTTP: a threaded server, its control API, and a client for that API.

- API: `http://HOST:PORT/iredadmin/api/...`, answered by `Emulator.handle()`.
- Control: `http://HOST:PORT/_emulator/...` (JSON), for tests and benchmarks in any process:

  | Method | Path | Does |
  |---|---|---|
  | GET | `/_emulator/stats` | counters (requests, connections, logins, calls, created, ...) |
  | POST | `/_emulator/stats/reset` | zero the counters |
  | GET, POST | `/_emulator/config` | read / change knobs (JSON object of `Config` fields) |
  | GET, POST, DELETE | `/_emulator/faults` | list / add (object or list) / clear faults |
  | POST | `/_emulator/sessions/expire` | end every session now |
  | GET | `/_emulator/accounts` | domain and mailbox names |
  | GET | `/_emulator/mailboxes/<email>` | one mailbox's profile (404 if missing) |
  | POST | `/_emulator/seed` | add domains and mailboxes (see `EmulatorControl.seed`) |
  | POST | `/_emulator/reset` | forget all accounts, sessions, faults, knobs and counters |

The control API has no authentication: bind the emulator to a loopback address only.
"""

import contextlib
import json
import logging
import socket
import threading
from dataclasses import asdict
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

import requests

from apps.iredadmin.emulator import ApiRequest, Emulator, Fault, Reply

logger = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    # Idle keep-alive connections are closed after this many seconds, as nginx does.
    timeout = 75
    # Headers and body leave in separate writes; with Nagle's algorithm on, the body waits
    # for the client's delayed ACK (~40 ms per call on a keep-alive connection).
    disable_nagle_algorithm = True
    server: "_Server"

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)
        self.server.emulator.note_connection()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        # Called for every request: format only when someone reads debug output.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s %s", self.client_address[0], format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        raw_path, _, raw_query = self.path.partition("?")
        if raw_path.startswith("/_emulator/"):
            self._control(raw_path.removeprefix("/_emulator/"), body)
            return
        emulator = self.server.emulator
        if not raw_path.startswith(emulator.prefix + "/"):
            self._write(Reply(404, b"not found", "text/html; charset=utf-8"))
            return
        # The server reads the bodies of POST/PUT/PATCH only (DELETE options go in the query).
        form = _form_fields(self.headers.get("Content-Type", ""), body)
        if self.command not in ("POST", "PUT", "PATCH"):
            form = {}
        request = ApiRequest(
            method=self.command,
            path=unquote(raw_path.removeprefix(emulator.prefix), errors="replace"),
            query=dict(parse_qsl(raw_query, keep_blank_values=True)),
            form=form,
            session_id=self._session_cookie(),
            client_ip=self.client_address[0],
        )
        self._write(emulator.handle(request))

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            self._write(Reply(411, b"length required", "text/plain"))
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._write(Reply(400, b"bad request", "text/plain"))
            return None
        return self.rfile.read(length) if length else b""

    def _session_cookie(self) -> str | None:
        name = self.server.emulator.cookie_name
        for part in self.headers.get("Cookie", "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name and value:
                return value
        return None

    def _write(self, reply: Reply) -> None:
        if reply.drop:
            # Close without a byte of answer: the caller cannot know what happened.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        if reply.location:
            self.send_header("Location", reply.location)
        cookie = self._cookie_header(reply)
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _cookie_header(self, reply: Reply) -> str | None:
        emulator = self.server.emulator
        attributes = f"HttpOnly; SameSite=Strict; Path={emulator.cookie_path}"
        if reply.expire_cookie:
            return (
                f"{emulator.cookie_name}=; expires=Thu, 01 Jan 1970 00:00:00 GMT; "
                f"Max-Age=0; {attributes}"
            )
        if reply.session_id:
            return f"{emulator.cookie_name}={reply.session_id}; {attributes}"
        return None

    # --- Control API ---------------------------------------------------------------------------

    def _control(self, path: str, body: bytes) -> None:
        try:
            payload = json.loads(body) if body else {}
            status, answer = self._control_answer(self.command, path.rstrip("/"), payload)
        except (ValueError, TypeError, KeyError) as exc:
            status, answer = 400, {"error": str(exc)}
        self._write(Reply(status, json.dumps(answer).encode()))

    def _control_answer(self, method: str, path: str, payload: Any) -> tuple[int, Any]:
        emulator = self.server.emulator
        if (method, path) == ("GET", "stats"):
            return 200, emulator.stats()
        if (method, path) == ("POST", "stats/reset"):
            emulator.reset_stats()
            return 200, {"ok": True}
        if path == "config" and method in ("GET", "POST"):
            if method == "GET":
                return 200, emulator.configure()
            return 200, emulator.configure(**payload)
        if path == "faults":
            if method == "POST":
                for item in payload if isinstance(payload, list) else [payload]:
                    emulator.add_fault(Fault(**item))
                return 200, emulator.faults()
            if method == "DELETE":
                emulator.clear_faults()
                return 200, []
            if method == "GET":
                return 200, emulator.faults()
        if (method, path) == ("POST", "sessions/expire"):
            return 200, {"expired": emulator.expire_sessions()}
        if (method, path) == ("GET", "accounts"):
            return 200, emulator.accounts()
        if method == "GET" and path.startswith("mailboxes/"):
            profile = emulator.mailbox(unquote(path.removeprefix("mailboxes/")))
            return (200, profile) if profile else (404, {"error": "no such mailbox"})
        if (method, path) == ("POST", "seed"):
            for domain in payload.get("domains", []):
                emulator.add_domain(**domain)
            for mailbox in payload.get("mailboxes", []):
                emulator.add_mailbox(**mailbox)
            return 200, emulator.accounts()
        if (method, path) == ("POST", "reset"):
            emulator.reset()
            return 200, {"ok": True}
        return 404, {"error": f"no control endpoint {method} /_emulator/{path}"}


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """Form fields of a url-encoded or multipart body; other bodies (JSON) are not understood."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if kind == "multipart/form-data":
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        fields = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                payload = part.get_payload(decode=True) or b""
                fields[name] = payload.decode("utf-8", "replace")
        return fields
    return {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Benchmarks open dozens of connections at once; the default backlog of 5 would refuse.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.emulator = emulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class EmulatorServer:
    """An emulator listening on a real socket; `port=0` picks a free port.

    >>> with EmulatorServer(port=0) as server:
    ...     server.emulator.add_admin("admin@example.net", "Secret-123")
    ...     IRedAdminClient(server.url, "admin@example.net", "Secret-123").list_domains()
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.emulator = emulator or Emulator()
        self._server = _Server((host, port), self.emulator)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The API base URL, as IREDADMIN_URL would give it."""
        return f"{self.root_url}{self.emulator.prefix}/api"

    @property
    def control_url(self) -> str:
        return f"{self.root_url}/_emulator"

    def start(self) -> "EmulatorServer":
        """Serve in a background thread."""
        # A short poll interval makes stop() quick: shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="iredadmin-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def drop_connections(self) -> None:
        """Close every open client connection (keep-alive ones included)."""
        self._server.close_connections()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "EmulatorServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class EmulatorControl:
    """The control API from another process (a test driving a worker, a benchmark)."""

    def __init__(self, control_url: str, *, timeout: float = 10.0) -> None:
        self.control_url = control_url.rstrip("/")
        self._http = requests.Session()
        self._timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        response = self._http.request(
            method, f"{self.control_url}/{path}", json=payload, timeout=self._timeout
        )
        if response.status_code == 404 and path.startswith("mailboxes/"):
            return None
        if response.status_code != 200:
            raise RuntimeError(f"emulator control {method} {path}: {response.text}")
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "stats")

    def reset_stats(self) -> None:
        self._call("POST", "stats/reset")

    def configure(self, **knobs: Any) -> dict[str, Any]:
        return self._call("POST", "config", knobs)

    def add_fault(self, fault: Fault | dict[str, Any]) -> None:
        item = fault if isinstance(fault, dict) else asdict(fault)
        self._call("POST", "faults", item)

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def expire_sessions(self) -> int:
        return self._call("POST", "sessions/expire")["expired"]

    def accounts(self) -> dict[str, list[str]]:
        return self._call("GET", "accounts")

    def mailbox(self, email: str) -> dict[str, Any] | None:
        return self._call("GET", f"mailboxes/{quote(email, safe='@')}")

    def seed(self, *, domains: list[dict] = (), mailboxes: list[dict] = ()) -> None:
        self._call("POST", "seed", {"domains": list(domains), "mailboxes": list(mailboxes)})

    def reset(self) -> None:
        self._call("POST", "reset")
