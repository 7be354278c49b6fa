"""The HTTP exchange of one client with one server: requests' adapter, without its Session.

`requests.Session.request` does, on every call, work that is the same for every call of a
client that talks to one base URL and never follows a redirect: it merges the session's
settings with the call's, copies the cookie jar, prepares the request through a dozen checks
(since requests 2.34, several runtime `Protocol` checks, slow on Python 3.11), and parses every
response's cookies twice. That was half of the client's CPU per call, and a worker's CPU is
what limits its throughput. Here the parts that do not change are made once: the headers, the
proxies, the TLS settings, and the `Cookie` header, rebuilt when the server sends a different
`Set-Cookie` or a cookie expires (a cookie for only part of the API is looked up per call, as
a jar would).

What goes on the wire is what `Session.request` sent (the same headers, body and URL), and
the answer is a `requests.Response` read to its end, so errors are requests' own exceptions:
the adapter does the sending, as in a Session (and `responses` stubs it in tests).
"""

import os
import time
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar, get_cookie_header
from requests.structures import CaseInsensitiveDict
from requests.utils import default_headers, get_environ_proxies


class Transport:
    """Sends requests under one base URL and keeps the server's session cookie.

    Not thread-safe, like the client it belongs to.
    """

    def __init__(self, base_url: str, *, verify: bool | str) -> None:
        # requests normalises the URL (an IDN host in ASCII, say); once here, not per call.
        # Every call's URL is this plus percent-encoded path segments.
        self.base_url = requests.Request("GET", base_url).prepare().url.rstrip("/")
        # The environment's proxies and CA bundle are read once, not on every call.
        self._proxies = get_environ_proxies(self.base_url)
        self._verify = _ca_bundle_from_environment() if verify is True else verify
        # No automatic retries at the HTTP layer: a repeated POST must be the client's decision.
        self._adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
        self._headers = default_headers()
        self._headers["Accept"] = "application/json"
        self._cookies = RequestsCookieJar()
        # Cookies are read from an answer only when its Set-Cookie headers differ from the last
        # ones read: the server repeats the same one on every answer (contract §3.2), with its
        # Path, so the same header is the same cookie whatever the path it answered.
        self._last_set_cookie: list[str] = []
        # The Cookie header of every call while each cookie applies to the whole base URL
        # (None: looked up per call), and when the first of them expires (then made again).
        self._cookie_header: str | None = None
        self._same_for_every_call = True
        self._header_expires: float | None = None

    def close(self) -> None:
        self._adapter.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        form: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float],
    ) -> requests.Response:
        """`method` on base URL + `path` (already percent-encoded), the form as the body.

        Raises requests' exceptions (a ConnectionError, a Timeout, an SSLError...). The
        answer's body is read before it returns, so the connection is free for the next call.
        """
        request = requests.PreparedRequest()
        request.method = method
        request.url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        request.headers = CaseInsensitiveDict(self._headers)
        request.hooks = {"response": []}
        # The headers in the order a Session puts them (tests compare the bytes sent).
        cookie_header = self._cookie_header_for(request)
        if cookie_header:
            request.headers["Cookie"] = cookie_header
        request.body = None
        if form:
            request.body = urlencode(form)
            request.headers["Content-Length"] = str(len(request.body.encode()))
            request.headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif method not in ("GET", "HEAD"):
            request.headers["Content-Length"] = "0"
        response = self._adapter.send(
            request, timeout=timeout, verify=self._verify, proxies=self._proxies
        )
        self._keep_cookies(request, response)
        response.content  # noqa: B018 (read to the end now, as a Session does)
        return response

    def _keep_cookies(self, request: requests.PreparedRequest, response: requests.Response) -> None:
        set_cookie = response.raw.headers.getlist("Set-Cookie")
        if set_cookie == self._last_set_cookie:
            return
        extract_cookies_to_jar(self._cookies, request, response.raw)
        self._last_set_cookie = set_cookie
        self._make_cookie_header()

    def _cookie_header_for(self, request: requests.PreparedRequest) -> str | None:
        if self._header_expires is not None and time.time() >= self._header_expires:
            self._make_cookie_header()  # a cookie expired: the jar leaves it out now
        if not self._same_for_every_call:
            return get_cookie_header(self._cookies, request)
        return self._cookie_header

    def _make_cookie_header(self) -> None:
        """The Cookie header for every call, if each cookie applies to the whole base URL."""
        self._cookies.clear_expired_cookies()
        base_path = urlsplit(self.base_url).path + "/"
        self._same_for_every_call = all(
            _path_covers(cookie.path, base_path) for cookie in self._cookies
        )
        expiries = [cookie.expires for cookie in self._cookies if cookie.expires is not None]
        self._header_expires = min(expiries, default=None)
        # Every call is under the base URL: the cookies for it are the cookies for every call.
        base = requests.PreparedRequest()
        base.url, base.headers = self.base_url + "/", CaseInsensitiveDict()
        self._cookie_header = get_cookie_header(self._cookies, base)


def _ca_bundle_from_environment() -> bool | str:
    """The CA bundle the environment names (as requests reads it), else True: the system's."""
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        bundle = os.environ.get(variable)
        if bundle:
            if not os.path.isfile(bundle):
                raise ValueError(f"{variable} names {bundle!r}, which does not exist")
            return bundle
    return True


def _path_covers(cookie_path: str, request_path: str) -> bool:
    """Whether a cookie of `cookie_path` is sent with a request for `request_path` and every
    path under it (RFC 6265 §5.1.4, path-match)."""
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path) : len(cookie_path) + 1] == "/"
    )
