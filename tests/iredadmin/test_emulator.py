"""The iRedAdmin-Pro emulator against the wire contract (docs/iredadmin-pro-api.md).

Everything goes over the emulator's real socket with plain `requests`, never through the
project's client, so that the emulator is checked independently of the code that trusts it.
"""

import contextlib
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

from apps.iredadmin.emulator import CURRENT, LEGACY, ApiRequest, Emulator, Fault
from apps.iredadmin.emulator_http import EmulatorControl, EmulatorServer
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME

TIMEOUT = 10
COOKIE_NAME = "iRedAdmin-Pro-MYSQL"
MAILBOX_PASSWORD = "Mailb0x-Pass!"
FAULT_KINDS_HIDING_THE_OUTCOME = ["status", "html", "non_json", "drop", "error"]


# --- Helpers ---------------------------------------------------------------------------------


def call(http, method: str, url: str, **kwargs) -> requests.Response:
    """One request that never follows redirects (`http` is `requests` or a Session)."""
    return http.request(method, url, allow_redirects=False, timeout=TIMEOUT, **kwargs)


def post_login(
    server, username: str = ADMIN_USERNAME, password: str = ADMIN_PASSWORD, *, http=requests
) -> requests.Response:
    return call(
        http, "POST", server.url + "/login", data={"username": username, "password": password}
    )


def login(server, username: str = ADMIN_USERNAME, password: str = ADMIN_PASSWORD):
    """Log in with a plain POST and return a Session holding the session cookie."""
    response = requests.post(
        server.url + "/login",
        data={"username": username, "password": password},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert succeeded(server, response), response.text
    http = requests.Session()
    http.cookies.update(response.cookies)
    return http


def envelope_keys(server) -> tuple[str, str]:
    return ("success", "msg") if server.emulator.dialect == LEGACY else ("_success", "_msg")


def succeeded(server, response: requests.Response) -> bool:
    assert response.status_code == 200, response.text
    return response.json()[envelope_keys(server)[0]] is True


def failure_code(server, response: requests.Response) -> str:
    """The failure code of a JSON answer (HTTP 200 with success false)."""
    assert response.status_code == 200, response.text
    success_key, message_key = envelope_keys(server)
    body = response.json()
    assert body[success_key] is False, body
    return body[message_key]


def read_data(response: requests.Response):
    """`_data` of a current-dialect read success."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["_success"] is True, body
    return body["_data"]


def post_domain(http, server, domain: str, **fields) -> requests.Response:
    return call(http, "POST", f"{server.url}/domain/{domain}", data=fields)


def post_user(http, server, email: str, **fields) -> requests.Response:
    fields.setdefault("password", MAILBOX_PASSWORD)
    return call(http, "POST", f"{server.url}/user/{email}", data=fields)


def cookie_parts(header: str) -> tuple[str, str, dict[str, str]]:
    """(name, value, {lower-cased attribute: value}) of one raw Set-Cookie header."""
    first, *attributes = (part.strip() for part in header.split(";"))
    name, _, value = first.partition("=")
    parsed = {}
    for attribute in attributes:
        key, _, attribute_value = attribute.partition("=")
        parsed[key.strip().lower()] = attribute_value.strip()
    return name, value, parsed


def assert_cookie_expired(header: str) -> None:
    name, value, attributes = cookie_parts(header)
    assert name == COOKIE_NAME
    assert value == ""
    expired_by_age = attributes.get("max-age") == "0"
    expired_by_date = "expires" in attributes and parsedate_to_datetime(
        attributes["expires"]
    ) < datetime.now(UTC)
    assert expired_by_age or expired_by_date, header


def location_of(response: requests.Response) -> tuple[str, str]:
    """(path, query) of a redirect's Location, whether relative or absolute."""
    parts = urlsplit(response.headers["Location"])
    return parts.path, parts.query


class _SourceAddressAdapter(HTTPAdapter):
    """Connect from a chosen local address (another loopback IP)."""

    def __init__(self, source_ip: str) -> None:
        self._source_address = (source_ip, 0)
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:
        kwargs["source_address"] = self._source_address
        super().init_poolmanager(*args, **kwargs)


def session_from(source_ip: str, cookies=None) -> requests.Session:
    http = requests.Session()
    http.mount("http://", _SourceAddressAdapter(source_ip))
    if cookies is not None:
        http.cookies.update(cookies)
    return http


class _RecordingEmulator(Emulator):
    """The real emulator, keeping the requests the HTTP layer hands it."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.seen: list[ApiRequest] = []

    def handle(self, request: ApiRequest):
        self.seen.append(request)
        return super().handle(request)


@pytest.fixture
def recording_server():
    emulator = _RecordingEmulator()
    emulator.add_admin(ADMIN_USERNAME, ADMIN_PASSWORD)
    server = EmulatorServer(emulator).start()
    yield server
    server.stop()


# --- 1. Dialects -------------------------------------------------------------------------------


def test_current_dialect_answers_with_underscored_envelopes(emulator_server):
    server = emulator_server
    good = post_login(server)
    bad = post_login(server, ADMIN_USERNAME, "Wrong-pass1!")
    http = login(server)
    created = post_domain(http, server, "example.com")
    read = call(http, "GET", server.url + "/domain/example.com")

    assert good.json() == {"_success": True}
    assert bad.json() == {"_success": False, "_msg": "INVALID_CREDENTIALS"}
    assert created.json() == {"_success": True}
    assert set(read.json()) == {"_success", "_data"}
    assert read.json()["_data"]["domain"] == "example.com"


def test_legacy_dialect_answers_with_success_and_msg(make_emulator):
    server = make_emulator(LEGACY)
    good = post_login(server)
    bad = post_login(server, ADMIN_USERNAME, "Wrong-pass1!")
    http = login(server)
    created = post_domain(http, server, "example.com")
    refused = post_domain(http, server, "example.com")

    assert good.json() == {"success": True}
    assert bad.json() == {"success": False, "msg": "INVALID_CREDENTIALS"}
    assert created.json() == {"success": True}
    assert refused.json() == {"success": False, "msg": "ALREADY_EXISTS"}


def test_current_dialect_reads_new_domain_field_names_and_ignores_legacy_ones(emulator_server):
    server = emulator_server
    http = login(server)

    post_domain(
        http,
        server,
        "new.example",
        name="New Name",
        cn="Legacy Name",
        language="de_DE",
        preferredLanguage="fr_FR",
    )
    post_domain(http, server, "legacy.example", cn="Legacy Name", preferredLanguage="fr_FR")

    new = read_data(call(http, "GET", server.url + "/domain/new.example"))
    legacy = read_data(call(http, "GET", server.url + "/domain/legacy.example"))
    assert new["description"] == "New Name"
    assert new["settings"]["default_language"] == "de_DE"
    assert legacy["description"] == ""
    assert legacy["settings"].get("default_language", "") == ""


def test_current_dialect_reads_new_user_field_names_and_ignores_legacy_ones(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com", default_user_quota=100)
    http = login(server)

    post_user(
        http,
        server,
        "new@example.com",
        name="Jane New",
        cn="Jane Legacy",
        quota="300",
        mailQuota="700",
        language="de_DE",
        preferredLanguage="fr_FR",
    )
    post_user(
        http,
        server,
        "old@example.com",
        cn="Jane Legacy",
        mailQuota="700",
        preferredLanguage="fr_FR",
    )

    new = read_data(call(http, "GET", server.url + "/user/new@example.com"))
    old = read_data(call(http, "GET", server.url + "/user/old@example.com"))
    assert (new["name"], new["quota"], new["language"]) == ("Jane New", 300, "de_DE")
    assert (old["name"], old["quota"], old["language"]) == ("", 100, "")


def test_legacy_dialect_reads_legacy_domain_field_names_and_ignores_new_ones(make_emulator):
    server = make_emulator(LEGACY)
    http = login(server)

    assert succeeded(
        server,
        post_domain(
            http,
            server,
            "legacy.example",
            cn="Legacy Name",
            name="New Name",
            preferredLanguage="fr_FR",
            language="de_DE",
            quota="5000",
        ),
    )
    assert succeeded(server, post_domain(http, server, "new.example", name="N", language="de_DE"))

    legacy = server.emulator.domain("legacy.example")
    new = server.emulator.domain("new.example")
    assert legacy["description"] == "Legacy Name"
    assert legacy["settings"]["default_language"] == "fr_FR"
    assert legacy["maxquota"] == 5000
    assert new["description"] == ""
    assert new["settings"].get("default_language", "") == ""


def test_legacy_dialect_reads_legacy_user_field_names_and_ignores_new_ones(make_emulator):
    server = make_emulator(LEGACY)
    server.emulator.add_domain("example.com", default_user_quota=100)
    http = login(server)

    assert succeeded(
        server,
        post_user(
            http,
            server,
            "old@example.com",
            cn="Jane Legacy",
            name="Jane New",
            mailQuota="300",
            quota="700",
            preferredLanguage="fr_FR",
            language="de_DE",
        ),
    )
    assert succeeded(
        server,
        post_user(http, server, "new@example.com", name="Jane New", quota="700", language="de_DE"),
    )

    old = server.emulator.mailbox("old@example.com")
    new = server.emulator.mailbox("new@example.com")
    assert (old["name"], old["quota"], old["language"]) == ("Jane Legacy", 300, "fr_FR")
    assert (new["name"], new["quota"], new["language"]) == ("", 100, "")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/domain/example.com", 405),
        ("/user/jane@example.com", 405),
        ("/domains", 404),
        ("/users/example.com", 404),
    ],
)
def test_legacy_dialect_has_no_read_endpoints(make_emulator, path, status):
    server = make_emulator(LEGACY)
    server.emulator.add_domain("example.com")
    server.emulator.add_mailbox("jane@example.com", MAILBOX_PASSWORD)
    http = login(server)

    response = call(http, "GET", server.url + path)

    assert response.status_code == status


# --- 2. Framework answers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/iredadmin/api/nothing", "/iredadmin/api/domain", "/iredadmin/nothing", "/elsewhere"],
)
def test_it_answers_404_not_found_for_an_unknown_path(emulator_server, path):
    http = login(emulator_server)

    response = call(http, "GET", emulator_server.root_url + path)

    assert response.status_code == 404
    assert response.text == "not found"
    assert response.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/domain/example.com"),
        ("POST", "/domains"),
        ("DELETE", "/domains"),
        ("PATCH", "/user/jane@example.com"),
        ("POST", "/users/example.com"),
    ],
)
def test_it_answers_405_for_a_known_route_with_an_unsupported_method(emulator_server, method, path):
    http = login(emulator_server)

    response = call(http, method, emulator_server.url + path)

    assert response.status_code == 405
    assert response.text == "method not allowed"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/domain/example.COM"),
        ("POST", "/domain/example.COM"),
        ("DELETE", "/domain/example.Com"),
        ("GET", "/users/example.COM"),
    ],
)
def test_it_answers_404_for_an_upper_case_tld(emulator_server, method, path):
    emulator_server.emulator.add_domain("example.com")
    http = login(emulator_server)

    response = call(http, method, emulator_server.url + path)

    assert response.status_code == 404
    assert emulator_server.emulator.domain("example.com") is not None


def test_it_lower_cases_path_values_after_matching(emulator_server):
    server = emulator_server
    http = login(server)

    assert succeeded(server, post_domain(http, server, "Example.com"))
    assert succeeded(server, post_user(http, server, "Jane.Doe@EXAMPLE.com"))

    assert server.emulator.accounts() == {
        "domains": ["example.com"],
        "users": ["jane.doe@example.com"],
    }


@pytest.mark.parametrize("path", ["/api/domains/", "/api/domain/example.com/", "/api/nothing/"])
def test_it_redirects_a_get_with_a_trailing_slash_to_the_path_without_it(emulator_server, path):
    http = login(emulator_server)

    response = call(http, "GET", emulator_server.root_url + "/iredadmin" + path)

    assert response.status_code == 303
    assert location_of(response)[0] == "/iredadmin" + path.rstrip("/")


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_it_answers_405_for_other_methods_with_a_trailing_slash(emulator_server, method):
    http = login(emulator_server)

    response = call(http, method, emulator_server.url + "/domain/example.com/")

    assert response.status_code == 405
    assert emulator_server.emulator.domain("example.com") is None


def test_it_does_not_understand_a_json_login_body(any_dialect_server):
    server = any_dialect_server

    response = call(
        requests,
        "POST",
        server.url + "/login",
        json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD},
    )

    assert failure_code(server, response) == "INVALID_USERNAME"


def test_it_ignores_fields_sent_in_a_json_body(emulator_server):
    server = emulator_server
    http = login(server)

    response = call(
        http, "POST", server.url + "/domain/example.com", json={"name": "Acme", "quota": 500}
    )

    assert succeeded(server, response)
    stored = server.emulator.domain("example.com")
    assert (stored["description"], stored["maxquota"]) == ("", 0)


def test_it_reads_form_fields_from_the_query_string_and_the_body(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)

    response = call(
        http,
        "POST",
        server.url + "/user/jane@example.com",
        params={"name": "Jane From Query"},
        data={"password": MAILBOX_PASSWORD, "quota": "250"},
    )

    assert succeeded(server, response)
    stored = server.emulator.mailbox("jane@example.com")
    assert (stored["name"], stored["quota"]) == ("Jane From Query", 250)


def test_it_logs_in_with_credentials_in_the_query_string(any_dialect_server):
    server = any_dialect_server

    response = call(
        requests,
        "POST",
        server.url + "/login",
        params={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD},
    )

    assert succeeded(server, response)


def test_it_reads_multipart_form_fields(emulator_server):
    """§1: request bodies are urlencoded "(or multipart)" form fields."""
    server = emulator_server

    response = call(
        requests,
        "POST",
        server.url + "/login",
        files={"username": (None, ADMIN_USERNAME), "password": (None, ADMIN_PASSWORD)},
    )

    assert response.headers["Content-Type"].startswith("application/json")
    assert succeeded(server, response)


def test_it_ignores_a_delete_body_but_reads_the_delete_query_string(recording_server):
    server = recording_server
    http = login(server)

    response = call(
        http,
        "DELETE",
        server.url + "/user/jane@example.com",
        params={"keep_mailbox_days": "0"},
        data={"keep_archive": "no"},
    )

    assert succeeded(server, response)
    seen = server.emulator.seen[-1]
    assert (seen.method, seen.path) == ("DELETE", "/api/user/jane@example.com")
    assert seen.query == {"keep_mailbox_days": "0"}
    assert seen.form == {}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/login"),
        ("GET", "/login"),
        ("GET", "/domains"),
        ("POST", "/domain/example.com"),
        ("GET", "/user/jane@example.com"),
    ],
)
def test_it_answers_404_everywhere_when_the_api_is_disabled(emulator_server, method, path):
    server = emulator_server
    http = login(server)
    server.emulator.configure(api_enabled=False)

    response = call(
        http,
        method,
        server.url + path,
        data={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD},
    )

    assert response.status_code == 404
    assert response.text == "not found"
    assert server.emulator.domain("example.com") is None


# --- 3. Sessions -------------------------------------------------------------------------------


def test_login_sets_the_session_cookie_with_the_servers_attributes(emulator_server):
    response = post_login(emulator_server)

    name, value, attributes = cookie_parts(response.headers["Set-Cookie"])
    assert name == COOKIE_NAME
    assert re.fullmatch(r"[0-9a-f]{40}", value)
    assert "httponly" in attributes
    assert attributes["samesite"] == "Strict"
    assert attributes["path"] == "/iredadmin/"
    assert "secure" not in attributes
    assert "expires" not in attributes


def test_each_login_gets_a_new_session_id(emulator_server):
    first = login(emulator_server).cookies[COOKIE_NAME]
    second = login(emulator_server).cookies[COOKIE_NAME]

    assert first != second


def test_an_anonymous_protected_call_gets_a_cookie_and_login_required(any_dialect_server):
    server = any_dialect_server

    response = call(requests, "DELETE", server.url + "/domain/example.com")

    assert failure_code(server, response) == "LOGIN_REQUIRED"
    name, value, _ = cookie_parts(response.headers["Set-Cookie"])
    assert name == COOKIE_NAME
    assert re.fullmatch(r"[0-9a-f]{40}", value)


def test_an_anonymous_session_cookie_does_not_grant_access(emulator_server):
    server = emulator_server
    first = call(requests, "GET", server.url + "/domains")
    anonymous_id = first.cookies[COOKIE_NAME]

    second = call(requests, "GET", server.url + "/domains", cookies={COOKIE_NAME: anonymous_id})

    assert failure_code(server, second) == "LOGIN_REQUIRED"


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("nobody@admin.example.net", ADMIN_PASSWORD),
        (ADMIN_USERNAME, "Wrong-pass1!"),
        (ADMIN_USERNAME, ""),
        ("not-an-email", ADMIN_PASSWORD),
    ],
)
def test_a_failed_login_still_sets_a_cookie(emulator_server, username, password):
    """§3.2: Set-Cookie is sent on every response, including failed logins."""
    response = post_login(emulator_server, username, password)

    assert response.json()["_success"] is False
    assert "Set-Cookie" in response.headers
    assert cookie_parts(response.headers["Set-Cookie"])[0] == COOKIE_NAME


@pytest.mark.parametrize(
    ("method", "knobs", "code"),
    [
        ("GET", {}, "INVALID_HTTP_METHOD"),
        ("POST", {"allowed_clients": ["10.1.2.3"]}, "NOT_AUTHORIZED"),
    ],
)
def test_other_anonymous_json_refusals_still_set_a_cookie(emulator_server, method, knobs, code):
    """§3.2: Set-Cookie is sent on every response, including anonymous ones."""
    emulator_server.emulator.configure(**knobs)

    response = call(requests, method, emulator_server.url + "/login")

    assert failure_code(emulator_server, response) == code
    assert "Set-Cookie" in response.headers
    assert cookie_parts(response.headers["Set-Cookie"])[0] == COOKIE_NAME


def test_get_login_answers_invalid_http_method(any_dialect_server):
    server = any_dialect_server

    response = call(
        requests,
        "GET",
        server.url + "/login",
        params={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD},
    )

    assert failure_code(server, response) == "INVALID_HTTP_METHOD"
    assert server.emulator.stats()["logins"] == 0


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [
        ("not-an-email", ADMIN_PASSWORD, "INVALID_USERNAME"),
        ("", ADMIN_PASSWORD, "INVALID_USERNAME"),
        (ADMIN_USERNAME, "", "EMPTY_PASSWORD"),
        ("nobody@admin.example.net", ADMIN_PASSWORD, "INVALID_CREDENTIALS"),
        (ADMIN_USERNAME, "Wrong-pass1!", "INVALID_CREDENTIALS"),
    ],
)
def test_login_refusals_use_the_contract_codes(any_dialect_server, username, password, code):
    server = any_dialect_server

    response = post_login(server, username, password)

    assert failure_code(server, response) == code
    assert server.emulator.stats()["sessions"] == 0


def test_login_strips_and_lower_cases_the_username(emulator_server):
    response = post_login(emulator_server, f"  {ADMIN_USERNAME.upper()} ", ADMIN_PASSWORD)

    assert response.json() == {"_success": True}


def test_a_protected_call_without_a_cookie_answers_login_required(any_dialect_server):
    server = any_dialect_server
    server.emulator.add_domain("example.com")

    response = call(requests, "POST", server.url + "/user/jane@example.com", data={})

    assert failure_code(server, response) == "LOGIN_REQUIRED"
    assert server.emulator.mailbox("jane@example.com") is None


def test_a_session_expires_after_the_idle_timeout(emulator_server):
    server = emulator_server
    server.emulator.configure(session_timeout=0.2)
    http = login(server)
    assert read_data(call(http, "GET", server.url + "/domains")) == {}

    time.sleep(0.35)
    response = call(http, "GET", server.url + "/domains")

    assert failure_code(server, response) == "LOGIN_REQUIRED"
    assert server.emulator.stats()["sessions_expired"] == 1


def test_each_call_refreshes_the_idle_timeout(emulator_server):
    server = emulator_server
    server.emulator.configure(session_timeout=0.4)
    http = login(server)

    answers = []
    for _ in range(4):
        time.sleep(0.15)
        answers.append(call(http, "GET", server.url + "/domains").json()["_success"])

    assert answers == [True, True, True, True]
    assert server.emulator.stats()["sessions_expired"] == 0


def test_forced_expiry_answers_login_required_every_nth_call(emulator_server):
    server = emulator_server
    server.emulator.configure(expire_session_every=3)

    outcomes = []
    for _ in range(2):
        http = login(server)
        for _ in range(3):
            body = call(http, "GET", server.url + "/domains").json()
            outcomes.append(body.get("_msg", "OK"))

    assert outcomes == ["OK", "OK", "LOGIN_REQUIRED"] * 2
    assert server.emulator.stats()["sessions_expired"] == 2


def test_forced_expiry_in_redirect_style_answers_303_session_expired(emulator_server):
    server = emulator_server
    server.emulator.configure(expire_session_every=2, session_expiry_style="redirect")
    http = login(server)

    first = call(http, "GET", server.url + "/domains")
    second = call(http, "GET", server.url + "/domains")
    third = call(http, "GET", server.url + "/domains")

    assert first.json()["_success"] is True
    assert second.status_code == 303
    assert location_of(second) == ("/iredadmin/login", "msg=SESSION_EXPIRED")
    assert_cookie_expired(second.headers["Set-Cookie"])
    assert failure_code(server, third) == "LOGIN_REQUIRED"


def test_a_session_used_from_another_ip_is_expired_with_a_303(emulator_server):
    server = emulator_server
    http = login(server)
    elsewhere = session_from("127.0.0.2", http.cookies)

    moved = call(elsewhere, "GET", server.url + "/domains")
    back_home = call(http, "GET", server.url + "/domains")

    assert moved.status_code == 303
    assert location_of(moved) == ("/iredadmin/login", "msg=SESSION_EXPIRED")
    assert_cookie_expired(moved.headers["Set-Cookie"])
    assert failure_code(server, back_home) == "LOGIN_REQUIRED"


def test_a_client_outside_the_allow_list_is_not_authorized(any_dialect_server):
    server = any_dialect_server
    server.emulator.add_domain("example.com")
    http = login(server)
    server.emulator.configure(allowed_clients=["10.1.2.3", "192.168.0.0/16"])

    refused_login = post_login(server)
    refused_call = post_user(http, server, "jane@example.com")

    assert failure_code(server, refused_login) == "NOT_AUTHORIZED"
    assert failure_code(server, refused_call) == "NOT_AUTHORIZED"
    assert server.emulator.mailbox("jane@example.com") is None


def test_a_client_inside_the_allow_list_is_served(emulator_server):
    server = emulator_server
    server.emulator.configure(allowed_clients=["10.1.2.3", "127.0.0.2"])

    allowed = post_login(server, http=session_from("127.0.0.2"))
    refused = post_login(server)

    assert allowed.json() == {"_success": True}
    assert failure_code(server, refused) == "NOT_AUTHORIZED"


def test_a_global_admin_outside_the_admin_ip_list_is_redirected(emulator_server):
    server = emulator_server
    server.emulator.configure(global_admin_ips=["10.0.0.0/8"])

    response = post_login(server)

    assert response.status_code == 303
    assert location_of(response) == ("/iredadmin/login", "msg=NOT_ALLOWED_IP")
    assert server.emulator.stats()["sessions"] == 0


def test_expire_sessions_ends_every_session(emulator_server):
    server = emulator_server
    first, second = login(server), login(server)

    ended = server.emulator.expire_sessions()

    assert ended == 2
    assert failure_code(server, call(first, "GET", server.url + "/domains")) == "LOGIN_REQUIRED"
    assert failure_code(server, call(second, "GET", server.url + "/domains")) == "LOGIN_REQUIRED"
    assert server.emulator.stats()["sessions_expired"] == 2


# --- 4. Domains --------------------------------------------------------------------------------


def test_it_creates_a_domain_with_every_field_and_returns_its_profile(emulator_server):
    server = emulator_server
    http = login(server)

    created = post_domain(
        http,
        server,
        "example.com",
        name="Example Ltd",
        quota="10240",
        language="de_DE",
        transport="relay:[10.0.0.5]",
        defaultQuota="512",
        maxUserQuota="2048",
        numberOfUsers="50",
        numberOfAliases="20",
        numberOfLists="5",
    )
    profile = read_data(call(http, "GET", server.url + "/domain/example.com"))

    assert created.json() == {"_success": True}
    assert profile["domain"] == "example.com"
    assert profile["description"] == "Example Ltd"
    assert profile["maxquota"] == 10240
    assert profile["transport"] == "relay:[10.0.0.5]"
    assert (profile["mailboxes"], profile["aliases"], profile["maillists"]) == (50, 20, 5)
    assert profile["settings"]["default_user_quota"] == 512
    assert profile["settings"]["max_user_quota"] == 2048
    assert profile["settings"]["default_language"] == "de_DE"
    assert profile["active"] == 1
    assert (profile["num_existing_users"], profile["allocated_quota"]) == (0, 0)
    for key in ("disclaimer", "quota", "backupmx", "created", "modified", "expired"):
        assert key in profile
    assert isinstance(profile["catchall"], list)
    assert isinstance(profile["alias_domains"], list)
    assert isinstance(profile["sbcc_addr"], str)
    assert isinstance(profile["relayhost"], str)


def test_a_domain_profile_counts_its_users_and_their_quota(emulator_server):
    server = emulator_server
    http = login(server)
    post_domain(http, server, "example.com", quota="1000")
    post_user(http, server, "a@example.com", quota="100")
    post_user(http, server, "b@example.com", quota="250")

    profile = read_data(call(http, "GET", server.url + "/domain/example.com"))

    assert (profile["num_existing_users"], profile["allocated_quota"]) == (2, 350)


def test_an_unknown_domain_language_becomes_empty(emulator_server):
    server = emulator_server
    http = login(server)

    assert succeeded(server, post_domain(http, server, "example.com", language="xx_YY"))

    profile = read_data(call(http, "GET", server.url + "/domain/example.com"))
    assert profile["settings"].get("default_language", "") == ""


def test_creating_an_existing_domain_answers_already_exists(any_dialect_server):
    server = any_dialect_server
    http = login(server)
    assert succeeded(server, post_domain(http, server, "example.com", quota="10"))

    again = post_domain(http, server, "example.com", quota="99")
    upper = post_domain(http, server, "EXAMPLE.com")

    assert failure_code(server, again) == "ALREADY_EXISTS"
    assert failure_code(server, upper) == "ALREADY_EXISTS"
    assert server.emulator.domain("example.com")["maxquota"] == 10


def test_a_domain_the_route_accepts_but_is_domain_rejects_is_invalid(any_dialect_server):
    """Route `\\w` is Unicode; `is_domain` (re.ASCII) refuses a non-ASCII letter."""
    server = any_dialect_server
    http = login(server)

    response = post_domain(http, server, "b%C3%BCcher.de")

    assert failure_code(server, response) == "INVALID_DOMAIN_NAME"
    assert server.emulator.accounts()["domains"] == []


def test_getting_a_missing_domain_answers_invalid_domain_name(emulator_server):
    http = login(emulator_server)

    response = call(http, "GET", emulator_server.url + "/domain/missing.example")

    assert failure_code(emulator_server, response) == "INVALID_DOMAIN_NAME"


def test_deleting_a_missing_domain_succeeds(any_dialect_server):
    server = any_dialect_server
    http = login(server)

    response = call(http, "DELETE", server.url + "/domain/missing.example")

    assert succeeded(server, response)


def test_deleting_a_domain_removes_its_users(emulator_server):
    server = emulator_server
    http = login(server)
    post_domain(http, server, "example.com")
    post_domain(http, server, "other.example")
    post_user(http, server, "jane@example.com")
    post_user(http, server, "john@example.com")
    post_user(http, server, "jane@other.example")

    deleted = call(http, "DELETE", server.url + "/domain/example.com")
    user = call(http, "GET", server.url + "/user/jane@example.com")
    domain = call(http, "GET", server.url + "/domain/example.com")

    assert succeeded(server, deleted)
    assert failure_code(server, user) == "NO_SUCH_ACCOUNT"
    assert failure_code(server, domain) == "INVALID_DOMAIN_NAME"
    assert server.emulator.accounts() == {
        "domains": ["other.example"],
        "users": ["jane@other.example"],
    }


@pytest.mark.parametrize("flag", ["", "yes", "no", "0"])
def test_listing_domains_with_name_only_gives_names_whatever_its_value(emulator_server, flag):
    server = emulator_server
    http = login(server)
    post_domain(http, server, "b.example")
    post_domain(http, server, "a.example")

    names = read_data(call(http, "GET", server.url + "/domains", params={"name_only": flag}))

    assert names == ["a.example", "b.example"]


def test_listing_domains_without_name_only_gives_profiles_by_name(emulator_server):
    server = emulator_server
    http = login(server)
    post_domain(http, server, "b.example", name="Bee")
    post_domain(http, server, "a.example", name="Ay", quota="300")

    listing = read_data(call(http, "GET", server.url + "/domains"))

    assert set(listing) == {"a.example", "b.example"}
    assert listing["a.example"]["domain"] == "a.example"
    assert (listing["a.example"]["description"], listing["a.example"]["maxquota"]) == ("Ay", 300)
    assert listing["b.example"]["description"] == "Bee"
    # §5.1: the list gives only the exported columns, not the added fields.
    assert "num_existing_users" not in listing["a.example"]
    assert "allocated_quota" not in listing["a.example"]


# --- 5. Users ----------------------------------------------------------------------------------


def test_it_creates_a_user_and_returns_its_profile_without_the_password(emulator_server):
    server = emulator_server
    http = login(server)
    post_domain(http, server, "example.com")

    created = post_user(
        http, server, "jane@example.com", name="Jane Doe", language="fr_FR", quota="300"
    )
    profile = read_data(call(http, "GET", server.url + "/user/jane@example.com"))

    assert created.json() == {"_success": True}
    assert "password" not in profile
    assert MAILBOX_PASSWORD not in str(profile)
    assert profile["username"] == "jane@example.com"
    assert profile["domain"] == "example.com"
    assert (profile["name"], profile["language"], profile["quota"]) == ("Jane Doe", "fr_FR", 300)


def test_an_unknown_user_language_becomes_empty(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)

    assert succeeded(server, post_user(http, server, "jane@example.com", language="xx_YY"))

    assert server.emulator.mailbox("jane@example.com")["language"] == ""


@pytest.mark.parametrize("local", ["jane%2Bnews", "jane%2Fnews", "jane+news"])
def test_a_plus_or_slash_in_a_new_local_part_is_invalid_mail(any_dialect_server, local):
    server = any_dialect_server
    server.emulator.add_domain("example.com")
    http = login(server)

    response = post_user(http, server, f"{local}@example.com")

    assert failure_code(server, response) == "INVALID_MAIL"
    assert server.emulator.accounts()["users"] == []


def test_an_equals_sign_in_a_new_local_part_is_accepted(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)

    assert succeeded(server, post_user(http, server, "jane%3Dnews@example.com"))

    assert server.emulator.mailbox("jane=news@example.com") is not None


def test_creating_an_existing_user_answers_already_exists(any_dialect_server):
    server = any_dialect_server
    server.emulator.add_domain("example.com")
    http = login(server)
    assert succeeded(server, post_user(http, server, "jane@example.com"))

    again = post_user(http, server, "jane@example.com")
    upper = post_user(http, server, "JANE@example.com")

    assert failure_code(server, again) == "ALREADY_EXISTS"
    assert failure_code(server, upper) == "ALREADY_EXISTS"
    assert server.emulator.stats()["created"] == {"user:jane@example.com": 1}


def test_creating_a_user_in_a_missing_domain_answers_invalid_domain_name(any_dialect_server):
    server = any_dialect_server
    http = login(server)

    response = post_user(http, server, "jane@missing.example")

    assert failure_code(server, response) == "INVALID_DOMAIN_NAME"
    assert server.emulator.mailbox("jane@missing.example") is None


def test_a_domain_with_minus_one_users_refuses_new_users(any_dialect_server):
    server = any_dialect_server
    http = login(server)
    post_domain(http, server, "example.com", numberOfUsers="-1")

    response = post_user(http, server, "jane@example.com")

    assert failure_code(server, response) == "NOT_ALLOWED"
    assert server.emulator.mailbox("jane@example.com") is None


def test_a_domain_at_its_user_limit_refuses_new_users(any_dialect_server):
    server = any_dialect_server
    http = login(server)
    post_domain(http, server, "limited.example", numberOfUsers="2")
    post_domain(http, server, "unlimited.example", numberOfUsers="0")

    limited = [post_user(http, server, f"user{i}@limited.example").json() for i in range(3)]
    unlimited = [
        succeeded(server, post_user(http, server, f"u{i}@unlimited.example")) for i in range(3)
    ]

    success_key, message_key = envelope_keys(server)
    assert [body[success_key] for body in limited] == [True, True, False]
    assert limited[2][message_key] == "EXCEEDED_DOMAIN_ACCOUNT_LIMIT"
    assert unlimited == [True, True, True]


BAD_PASSWORD = "short"


@pytest.mark.parametrize(
    ("domain_values", "existing", "address", "expected"),
    [
        pytest.param({}, ["jane@example.com"], "jane@example.com", "ALREADY_EXISTS", id="exists"),
        pytest.param(
            {"mailboxes": 1},
            ["john@example.com"],
            "jane@example.com",
            "EXCEEDED_DOMAIN_ACCOUNT_LIMIT",
            id="full-domain",
        ),
        pytest.param({"mailboxes": -1}, [], "jane@example.com", "NOT_ALLOWED", id="not-allowed"),
        pytest.param(
            {"mailboxes": 1},
            ["jane@example.com"],
            "jane@example.com",
            "ALREADY_EXISTS",
            id="exists-in-full-domain",
        ),
        pytest.param(
            {"maxquota": 100},
            ["john@example.com"],
            "jane@example.com",
            "EXCEEDED_DOMAIN_QUOTA_SIZE",
            id="no-spare-quota",
        ),
        pytest.param({}, [], "jane@missing.example", "INVALID_DOMAIN_NAME", id="missing-domain"),
        pytest.param({}, [], "jane%2Bx@missing.example", "INVALID_MAIL", id="bad-mail-no-domain"),
        pytest.param(
            {}, ["jane@example.com"], "jane%2Bx@example.com", "INVALID_MAIL", id="bad-mail-exists"
        ),
    ],
)
def test_user_creation_checks_run_in_the_servers_order(
    emulator_server, domain_values, existing, address, expected
):
    server = emulator_server
    server.emulator.add_domain("example.com", **domain_values)
    for email in existing:
        server.emulator.add_mailbox(email, MAILBOX_PASSWORD, quota=100)
    http = login(server)

    response = post_user(http, server, address, password=BAD_PASSWORD, quota="50")

    assert failure_code(server, response) == expected


@pytest.mark.parametrize(
    ("password", "codes"),
    [
        ("", "PW_EMPTY"),
        (
            "abc",
            "PW_SHORTER_THAN_MIN_LENGTH,PW_NO_UPPERCASE,PW_NO_DIGIT_NUMBER,PW_NO_SPECIAL_CHAR",
        ),
        ("12345678", "PW_NO_LETTER,PW_NO_UPPERCASE,PW_NO_SPECIAL_CHAR"),
        ("abcdefgh", "PW_NO_UPPERCASE,PW_NO_DIGIT_NUMBER,PW_NO_SPECIAL_CHAR"),
        ("Abcdefg1", "PW_NO_SPECIAL_CHAR"),
        ("Abcdefg1^", "PW_NO_SPECIAL_CHAR"),
        ("Pässw0rd!", "PW_NON_ASCII"),
        ("Tab\tPassw0rd!", "PW_NON_ASCII"),
        (
            "é",
            "PW_NON_ASCII,PW_SHORTER_THAN_MIN_LENGTH,PW_NO_LETTER,PW_NO_UPPERCASE,"
            "PW_NO_DIGIT_NUMBER,PW_NO_SPECIAL_CHAR",
        ),
    ],
)
def test_the_password_policy_answers_comma_joined_codes_in_order(
    any_dialect_server, password, codes
):
    server = any_dialect_server
    server.emulator.add_domain("example.com")
    http = login(server)

    response = post_user(http, server, "jane@example.com", password=password)

    assert failure_code(server, response) == codes
    assert server.emulator.mailbox("jane@example.com") is None


def test_a_missing_password_is_pw_empty(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)

    response = call(http, "POST", server.url + "/user/jane@example.com", data={"name": "Jane"})

    assert failure_code(server, response) == "PW_EMPTY"


@pytest.mark.parametrize("password", ["Pass w0rd!", "Abcdefg1_", "Abcdefg1~", "Abcdefg1/"])
def test_the_password_policy_accepts_spaces_and_the_code_special_characters(
    emulator_server, password
):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)

    assert succeeded(server, post_user(http, server, "jane@example.com", password=password))


def test_the_password_policy_enforces_a_configured_maximum_length(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    server.emulator.configure(max_password_length=10)
    http = login(server)

    long = post_user(http, server, "jane@example.com", password="Abcdefgh1!xyz")
    fits = post_user(http, server, "john@example.com", password="Abcdefg1!x")

    assert failure_code(server, long) == "PW_GREATER_THAN_MAX_LENGTH"
    assert succeeded(server, fits)


def test_the_per_domain_minimum_password_length_wins(emulator_server):
    server = emulator_server
    server.emulator.add_domain("strict.example", min_passwd_length=12)
    server.emulator.add_domain("lax.example", min_passwd_length=6)
    server.emulator.add_domain("global.example")
    http = login(server)

    strict = post_user(http, server, "jane@strict.example", password="Abcdefg1!")
    lax = post_user(http, server, "jane@lax.example", password="Abc1!x")
    default = post_user(http, server, "jane@global.example", password="Abc1!xy")

    assert failure_code(server, strict) == "PW_SHORTER_THAN_MIN_LENGTH"
    assert succeeded(server, lax)
    assert failure_code(server, default) == "PW_SHORTER_THAN_MIN_LENGTH"


def test_a_password_hash_bypasses_the_policy_but_needs_a_known_scheme(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)

    known = call(
        http,
        "POST",
        server.url + "/user/jane@example.com",
        data={"password_hash": "{SSHA512}c2hvcnQ="},
    )
    unknown = call(
        http,
        "POST",
        server.url + "/user/john@example.com",
        data={"password_hash": "{NOPE}c2hvcnQ="},
    )

    assert succeeded(server, known)
    assert failure_code(server, unknown) == "INVALID_PASSWORD_SCHEME"


@pytest.mark.parametrize(
    ("domain_values", "existing_quotas", "sent", "expected"),
    [
        pytest.param({"default_user_quota": 100}, [], None, 100, id="missing-means-default"),
        pytest.param({"default_user_quota": 100}, [], "lots", 100, id="unparsable-means-default"),
        pytest.param({"maxquota": 1000}, [600], "600", 400, id="reduced-to-spare"),
        pytest.param({"maxquota": 1000}, [400], "600", 600, id="fits-in-spare"),
        pytest.param(
            {"maxquota": 1000},
            [1000],
            "10",
            "EXCEEDED_DOMAIN_QUOTA_SIZE",
            id="no-spare",
        ),
        pytest.param(
            {"maxquota": 1000, "default_user_quota": 100},
            [1000],
            None,
            "EXCEEDED_DOMAIN_QUOTA_SIZE",
            id="no-spare-for-default",
        ),
        pytest.param(
            {"maxquota": 1000},
            [700, 400],
            "1",
            "EXCEEDED_DOMAIN_QUOTA_SIZE",
            id="over-allocated",
        ),
        pytest.param(
            {"maxquota": 1000, "default_user_quota": 100, "max_user_quota": 300},
            [],
            "0",
            100,
            id="zero-means-default",
        ),
        pytest.param({"maxquota": 1000, "max_user_quota": 300}, [], "0", 300, id="zero-means-max"),
        pytest.param({"maxquota": 1000}, [250], "0", 750, id="zero-means-spare"),
        pytest.param({"max_user_quota": 200}, [], "500", 200, id="capped-to-max"),
        pytest.param(
            {"maxquota": 1000, "max_user_quota": 200}, [], "500", 200, id="capped-within-domain"
        ),
        pytest.param({}, [], "0", 0, id="zero-stays-unlimited"),
        pytest.param(
            {"default_user_quota": 100}, [], "0", 0, id="zero-stays-unlimited-despite-default"
        ),
        pytest.param({}, [], None, 0, id="nothing-means-unlimited"),
    ],
)
def test_user_quota_follows_the_servers_arithmetic(
    emulator_server, domain_values, existing_quotas, sent, expected
):
    server = emulator_server
    server.emulator.add_domain("example.com", **domain_values)
    for index, quota in enumerate(existing_quotas):
        server.emulator.add_mailbox(f"existing{index}@example.com", MAILBOX_PASSWORD, quota=quota)
    http = login(server)
    fields = {} if sent is None else {"quota": sent}

    response = post_user(http, server, "jane@example.com", **fields)

    if isinstance(expected, str):
        assert failure_code(server, response) == expected
        assert server.emulator.mailbox("jane@example.com") is None
    else:
        assert succeeded(server, response)
        assert server.emulator.mailbox("jane@example.com")["quota"] == expected


def test_an_address_with_a_hash_sent_as_percent_23_is_created_intact(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)

    created = post_user(http, server, "team%23sales@example.com")
    profile = read_data(call(http, "GET", server.url + "/user/team%23sales@example.com"))

    assert succeeded(server, created)
    assert profile["username"] == "team#sales@example.com"
    assert server.emulator.accounts()["users"] == ["team#sales@example.com"]


def test_deleting_a_missing_user_succeeds(any_dialect_server):
    server = any_dialect_server
    server.emulator.add_domain("example.com")
    http = login(server)

    assert succeeded(server, call(http, "DELETE", server.url + "/user/nobody@example.com"))
    assert succeeded(server, call(http, "DELETE", server.url + "/user/nobody@missing.example"))


def test_deleting_a_user_removes_it(any_dialect_server):
    server = any_dialect_server
    server.emulator.add_domain("example.com")
    http = login(server)
    post_user(http, server, "jane@example.com")

    response = call(http, "DELETE", server.url + "/user/jane@example.com")

    assert succeeded(server, response)
    assert server.emulator.mailbox("jane@example.com") is None


def test_getting_a_missing_user_answers_no_such_account(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)

    response = call(http, "GET", server.url + "/user/nobody@example.com")

    assert failure_code(server, response) == "NO_SUCH_ACCOUNT"


@pytest.mark.parametrize("flag", ["", "yes", "no"])
def test_listing_users_with_email_only_gives_addresses_whatever_its_value(emulator_server, flag):
    server = emulator_server
    server.emulator.add_domain("example.com")
    server.emulator.add_domain("other.example")
    http = login(server)
    post_user(http, server, "john@example.com")
    post_user(http, server, "jane@example.com")
    post_user(http, server, "jane@other.example")

    emails = read_data(
        call(http, "GET", server.url + "/users/example.com", params={"email_only": flag})
    )

    assert emails == ["jane@example.com", "john@example.com"]


def test_listing_users_without_email_only_gives_profiles(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)
    post_user(http, server, "john@example.com", name="John", quota="20")
    post_user(http, server, "jane@example.com", name="Jane", quota="10")

    profiles = read_data(call(http, "GET", server.url + "/users/example.com"))

    assert [(p["username"], p["name"], p["quota"]) for p in profiles] == [
        ("jane@example.com", "Jane", 10),
        ("john@example.com", "John", 20),
    ]
    assert all("password" not in profile for profile in profiles)


# --- 6. Knobs and counters ---------------------------------------------------------------------


def test_latency_delays_every_call(emulator_server):
    server = emulator_server
    http = login(server)
    server.emulator.configure(latency=0.2)

    started = time.monotonic()
    response = call(http, "GET", server.url + "/domains")
    elapsed = time.monotonic() - started

    assert response.json()["_success"] is True
    assert elapsed >= 0.2


def test_a_status_fault_answers_an_html_error_page(any_dialect_server):
    server = any_dialect_server
    server.emulator.add_domain("example.com")
    http = login(server)
    server.emulator.add_fault(Fault(kind="status", route="user"))
    server.emulator.add_fault(Fault(kind="status", status=502, route="user"))

    first = post_user(http, server, "jane@example.com")
    second = post_user(http, server, "jane@example.com")

    assert first.status_code == 500
    assert first.headers["Content-Type"].startswith("text/html")
    assert first.text == "internal server error"
    assert second.status_code == 502
    assert second.headers["Content-Type"].startswith("text/html")
    assert server.emulator.mailbox("jane@example.com") is None


def test_an_html_fault_answers_200_with_a_login_page(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)
    server.emulator.add_fault(Fault(kind="html"))

    response = post_user(http, server, "jane@example.com")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<html" in response.text.lower()
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_a_non_json_fault_answers_200_with_a_broken_body(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)
    server.emulator.add_fault(Fault(kind="non_json"))

    response = post_user(http, server, "jane@example.com")

    assert response.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_a_drop_fault_closes_the_connection_without_an_answer(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)
    server.emulator.add_fault(Fault(kind="drop"))

    with pytest.raises(requests.ConnectionError):
        post_user(http, server, "jane@example.com")

    assert server.emulator.mailbox("jane@example.com") is None


def test_an_error_fault_answers_a_json_failure_with_the_chosen_message(any_dialect_server):
    server = any_dialect_server
    server.emulator.add_domain("example.com")
    http = login(server)
    server.emulator.add_fault(Fault(kind="error", message="DB_GONE_AWAY"))

    response = post_user(http, server, "jane@example.com")

    assert failure_code(server, response) == "DB_GONE_AWAY"


def attempt_user_creation(http, server, email: str) -> None:
    """Send a user creation whose answer a fault hides; the answer itself does not matter."""
    with contextlib.suppress(requests.ConnectionError):
        post_user(http, server, email)


@pytest.mark.parametrize("kind", FAULT_KINDS_HIDING_THE_OUTCOME)
def test_a_fault_with_effect_performs_the_operation(emulator_server, kind):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)
    server.emulator.add_fault(Fault(kind=kind, effect=True, message="HIDDEN"))

    attempt_user_creation(http, server, "jane@example.com")

    assert server.emulator.mailbox("jane@example.com") is not None
    assert server.emulator.stats()["created"] == {"user:jane@example.com": 1}


@pytest.mark.parametrize("kind", FAULT_KINDS_HIDING_THE_OUTCOME)
def test_a_fault_without_effect_performs_nothing(emulator_server, kind):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)
    server.emulator.add_fault(Fault(kind=kind, effect=False, message="HIDDEN"))

    attempt_user_creation(http, server, "jane@example.com")

    assert server.emulator.mailbox("jane@example.com") is None
    assert server.emulator.stats()["created"] == {}


@pytest.mark.parametrize("effect", [True, False])
def test_a_delay_fault_answers_late_and_performs_the_operation(emulator_server, effect):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)
    server.emulator.add_fault(Fault(kind="delay", delay=0.2, effect=effect))

    started = time.monotonic()
    response = post_user(http, server, "jane@example.com")
    elapsed = time.monotonic() - started

    assert succeeded(server, response)
    assert elapsed >= 0.2
    assert server.emulator.mailbox("jane@example.com") is not None


def test_a_fault_is_consumed_after_its_number_of_times(emulator_server):
    server = emulator_server
    http = login(server)
    server.emulator.add_fault(Fault(kind="error", message="BUSY", times=2))

    answers = [call(http, "GET", server.url + "/domains").json() for _ in range(3)]

    assert [answer.get("_msg") for answer in answers] == ["BUSY", "BUSY", None]
    assert answers[2]["_success"] is True
    assert server.emulator.faults() == []
    assert server.emulator.stats()["faults_injected"] == 2


def test_a_fault_only_hits_calls_matching_its_method_route_and_target(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    http = login(server)
    server.emulator.add_fault(
        Fault(kind="error", method="delete", route="user", target="jane@example.com", message="X")
    )

    other_method = post_user(http, server, "jane@example.com")
    other_route = call(http, "DELETE", server.url + "/domain/other.example")
    other_target = call(http, "DELETE", server.url + "/user/john@example.com")
    hit = call(http, "DELETE", server.url + "/user/JANE@example.com")
    after = call(http, "DELETE", server.url + "/user/jane@example.com")

    assert succeeded(server, other_method)
    assert succeeded(server, other_route)
    assert succeeded(server, other_target)
    assert failure_code(server, hit) == "X"
    assert succeeded(server, after)
    assert server.emulator.stats()["faults_injected"] == 1


def test_login_counters_count_successes_and_failures(emulator_server):
    server = emulator_server
    login(server)
    login(server)
    for password in ("Wrong-pass1!", "", "Other-pass2!"):
        post_login(server, ADMIN_USERNAME, password)

    stats = server.emulator.stats()

    assert (stats["logins"], stats["failed_logins"]) == (2, 3)
    assert stats["calls"]["POST login"] == 5


def test_call_counters_count_by_method_and_route(emulator_server):
    server = emulator_server
    http = login(server)
    post_domain(http, server, "example.com")
    post_user(http, server, "jane@example.com")
    post_user(http, server, "john@example.com")
    call(http, "GET", server.url + "/domains")
    call(http, "DELETE", server.url + "/user/jane@example.com")

    calls = server.emulator.stats()["calls"]

    assert calls["POST domain"] == 1
    assert calls["POST user"] == 2
    assert calls["GET domains"] == 1
    assert calls["DELETE user"] == 1
    assert calls["POST login"] == 1


def test_several_calls_over_one_keep_alive_session_count_as_one_connection(emulator_server):
    server = emulator_server
    http = login(server)
    other = requests.Session()
    other.cookies.update(http.cookies)
    server.emulator.reset_stats()

    for _ in range(4):
        call(http, "GET", server.url + "/domains")
    one_session = server.emulator.stats()["connections"]
    for _ in range(3):
        call(other, "GET", server.url + "/domains")
    two_sessions = server.emulator.stats()["connections"]

    assert (one_session, two_sessions) == (1, 2)
    assert server.emulator.stats()["requests"] == 7


def test_in_flight_max_exceeds_one_for_parallel_calls(emulator_server):
    server = emulator_server
    cookies = login(server).cookies
    server.emulator.configure(latency=0.2)

    def list_domains(_: int) -> bool:
        http = requests.Session()
        http.cookies.update(cookies)
        return call(http, "GET", server.url + "/domains").json()["_success"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(list_domains, range(4)))

    assert answers == [True] * 4
    assert server.emulator.stats()["in_flight_max"] > 1
    assert server.emulator.stats()["in_flight"] == 0


def test_in_flight_max_stays_one_for_sequential_calls(emulator_server):
    server = emulator_server
    http = login(server)
    for _ in range(3):
        call(http, "GET", server.url + "/domains")

    assert server.emulator.stats()["in_flight_max"] == 1


def test_created_and_deleted_counters_count_per_account(emulator_server):
    server = emulator_server
    http = login(server)
    post_domain(http, server, "example.com")
    post_user(http, server, "jane@example.com")
    post_user(http, server, "jane@example.com")  # ALREADY_EXISTS: not a creation
    call(http, "DELETE", server.url + "/user/jane@example.com")
    post_user(http, server, "jane@example.com")
    post_user(http, server, "john@example.com")
    call(http, "DELETE", server.url + "/user/nobody@example.com")  # nothing deleted
    call(http, "DELETE", server.url + "/domain/example.com")

    stats = server.emulator.stats()

    assert stats["created"] == {
        "domain:example.com": 1,
        "user:jane@example.com": 2,
        "user:john@example.com": 1,
    }
    assert stats["deleted"] == {
        "domain:example.com": 1,
        "user:jane@example.com": 2,
        "user:john@example.com": 1,
    }


def test_reset_stats_zeroes_the_counters_but_keeps_accounts_and_sessions(emulator_server):
    server = emulator_server
    http = login(server)
    post_domain(http, server, "example.com")
    server.emulator.add_fault(Fault(kind="error", message="X"))
    call(http, "GET", server.url + "/domains")

    server.emulator.reset_stats()
    stats = server.emulator.stats()

    assert stats["logins"] == stats["requests"] == stats["faults_injected"] == 0
    assert stats["calls"] == stats["created"] == stats["deleted"] == {}
    assert stats["in_flight_max"] == 0
    assert stats["sessions"] == 1
    assert server.emulator.domain("example.com") is not None


# --- 7. Control API over HTTP ------------------------------------------------------------------


def test_control_reports_and_resets_stats(emulator_server):
    server = emulator_server
    control = EmulatorControl(server.control_url)
    login(server)

    before = control.stats()
    control.reset_stats()
    after = control.stats()

    assert (before["logins"], before["calls"]) == (1, {"POST login": 1})
    assert (after["logins"], after["calls"]) == (0, {})


def test_control_configures_knobs(emulator_server):
    server = emulator_server
    control = EmulatorControl(server.control_url)

    answer = control.configure(session_timeout=42, allowed_clients=["10.0.0.1"])

    assert answer["session_timeout"] == 42
    assert server.emulator.config.session_timeout == 42
    assert server.emulator.config.allowed_clients == ["10.0.0.1"]
    refused = post_login(server)
    assert failure_code(server, refused) == "NOT_AUTHORIZED"


def test_control_refuses_an_unknown_knob_with_400(emulator_server):
    server = emulator_server
    control = EmulatorControl(server.control_url)

    raw = call(requests, "POST", server.control_url + "/config", json={"bogus": 1})

    assert raw.status_code == 400
    assert "bogus" in raw.json()["error"]
    with pytest.raises(RuntimeError, match="bogus"):
        control.configure(bogus=1)
    with pytest.raises(RuntimeError, match="session_expiry_style"):
        control.configure(session_expiry_style="sometimes")


def test_control_adds_and_clears_faults(emulator_server):
    server = emulator_server
    control = EmulatorControl(server.control_url)
    http = login(server)

    control.add_fault({"kind": "error", "route": "domains", "message": "VIA_CONTROL", "times": 5})
    faulted = call(http, "GET", server.url + "/domains")
    listed = call(requests, "GET", server.control_url + "/faults").json()
    control.clear_faults()
    cleared = call(requests, "GET", server.control_url + "/faults").json()
    healed = call(http, "GET", server.url + "/domains")

    assert failure_code(server, faulted) == "VIA_CONTROL"
    assert [(fault["kind"], fault["times"]) for fault in listed] == [("error", 4)]
    assert cleared == []
    assert healed.json()["_success"] is True


def test_control_adds_a_fault_given_as_a_dataclass(emulator_server):
    server = emulator_server
    control = EmulatorControl(server.control_url)
    server.emulator.add_domain("example.com")
    http = login(server)

    control.add_fault(Fault(kind="status", status=502, method="POST", route="user"))

    assert post_user(http, server, "jane@example.com").status_code == 502


@pytest.mark.parametrize(
    "payload",
    [{"kind": "explode"}, {"kind": "error", "times": -1}, {"kind": "error", "colour": "red"}],
)
def test_control_refuses_a_bad_fault_with_400(emulator_server, payload):
    server = emulator_server

    response = call(requests, "POST", server.control_url + "/faults", json=payload)

    assert response.status_code == 400
    assert "error" in response.json()
    assert server.emulator.faults() == []


def test_control_expires_sessions(emulator_server):
    server = emulator_server
    control = EmulatorControl(server.control_url)
    http = login(server)

    ended = control.expire_sessions()

    assert ended == 1
    assert failure_code(server, call(http, "GET", server.url + "/domains")) == "LOGIN_REQUIRED"


def test_control_lists_accounts_and_reads_mailboxes(emulator_server):
    server = emulator_server
    control = EmulatorControl(server.control_url)
    http = login(server)
    post_domain(http, server, "example.com")
    post_user(http, server, "jane@example.com", name="Jane", quota="30")
    post_user(http, server, "team%23sales@example.com")

    accounts = control.accounts()
    jane = control.mailbox("jane@example.com")
    team = control.mailbox("team#sales@example.com")
    missing = control.mailbox("nobody@example.com")

    assert accounts == {
        "domains": ["example.com"],
        "users": ["jane@example.com", "team#sales@example.com"],
    }
    assert (jane["username"], jane["name"], jane["quota"]) == ("jane@example.com", "Jane", 30)
    assert "password" not in jane
    assert team["username"] == "team#sales@example.com"
    assert missing is None


def test_control_seeds_domains_and_mailboxes(emulator_server):
    server = emulator_server
    control = EmulatorControl(server.control_url)

    control.seed(
        domains=[{"domain": "seeded.example", "maxquota": 500, "mailboxes": 10}],
        mailboxes=[{"email": "jane@seeded.example", "password": MAILBOX_PASSWORD, "quota": 50}],
    )
    http = login(server)
    domain = read_data(call(http, "GET", server.url + "/domain/seeded.example"))
    user = read_data(call(http, "GET", server.url + "/user/jane@seeded.example"))

    assert (domain["maxquota"], domain["mailboxes"]) == (500, 10)
    assert user["quota"] == 50


def test_control_refuses_seeding_a_mailbox_without_its_domain(emulator_server):
    response = call(
        requests,
        "POST",
        emulator_server.control_url + "/seed",
        json={"mailboxes": [{"email": "jane@missing.example", "password": MAILBOX_PASSWORD}]},
    )

    assert response.status_code == 400
    assert emulator_server.emulator.accounts()["users"] == []


def test_control_reset_forgets_everything_but_admins(emulator_server):
    server = emulator_server
    control = EmulatorControl(server.control_url)
    http = login(server)
    post_domain(http, server, "example.com")
    post_user(http, server, "jane@example.com")
    control.configure(latency=0.05)
    control.add_fault({"kind": "error", "route": "user"})

    control.reset()

    assert control.accounts() == {"domains": [], "users": []}
    assert server.emulator.config.latency == 0
    assert server.emulator.faults() == []
    assert control.stats()["logins"] == 0
    assert failure_code(server, call(http, "GET", server.url + "/domains")) == "LOGIN_REQUIRED"
    assert login(server) is not None


def test_control_answers_404_for_an_unknown_endpoint(emulator_server):
    response = call(requests, "GET", emulator_server.control_url + "/nothing")

    assert response.status_code == 404
    assert "error" in response.json()


# --- 8. Thread-safety --------------------------------------------------------------------------


def test_concurrent_creations_of_distinct_mailboxes_all_succeed(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    cookies = login(server).cookies
    server.emulator.reset_stats()
    threads, per_thread = 16, 25

    def create_batch(thread: int) -> list[bool]:
        http = requests.Session()
        http.cookies.update(cookies)
        return [
            post_user(http, server, f"t{thread}-u{index}@example.com").json()["_success"]
            for index in range(per_thread)
        ]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = [ok for batch in pool.map(create_batch, range(threads)) for ok in batch]

    stats = server.emulator.stats()
    expected = {f"t{t}-u{i}@example.com" for t in range(threads) for i in range(per_thread)}
    assert results == [True] * (threads * per_thread)
    assert set(server.emulator.accounts()["users"]) == expected
    assert stats["created"] == {f"user:{email}": 1 for email in expected}
    assert stats["calls"]["POST user"] == threads * per_thread
    assert stats["requests"] == threads * per_thread
    assert stats["in_flight"] == 0


def test_concurrent_creations_of_the_same_address_succeed_exactly_once(emulator_server):
    server = emulator_server
    server.emulator.add_domain("example.com")
    cookies = login(server).cookies
    racers, bulk_threads, per_thread = 16, 16, 25
    barrier = threading.Barrier(racers + bulk_threads, timeout=TIMEOUT)

    def session() -> requests.Session:
        http = requests.Session()
        http.cookies.update(cookies)
        return http

    def race(_: int) -> dict:
        http = session()
        barrier.wait()
        return post_user(http, server, "contested@example.com").json()

    def bulk(thread: int) -> list[bool]:
        http = session()
        barrier.wait()
        return [
            post_user(http, server, f"b{thread}-{index}@example.com").json()["_success"]
            for index in range(per_thread)
        ]

    with ThreadPoolExecutor(max_workers=racers + bulk_threads) as pool:
        race_futures = [pool.submit(race, i) for i in range(racers)]
        bulk_futures = [pool.submit(bulk, i) for i in range(bulk_threads)]
        race_answers = [future.result() for future in race_futures]
        bulk_answers = [ok for future in bulk_futures for ok in future.result()]

    winners = [answer for answer in race_answers if answer["_success"]]
    losers = [answer.get("_msg") for answer in race_answers if not answer["_success"]]
    stats = server.emulator.stats()
    assert len(winners) == 1
    assert losers == ["ALREADY_EXISTS"] * (racers - 1)
    assert stats["created"]["user:contested@example.com"] == 1
    assert bulk_answers == [True] * (bulk_threads * per_thread)
    assert len(server.emulator.accounts()["users"]) == bulk_threads * per_thread + 1
    assert sum(stats["created"].values()) == bulk_threads * per_thread + 1
    assert stats["calls"]["POST user"] == racers + bulk_threads * per_thread


# --- 9. Persistence ----------------------------------------------------------------------------


def test_accounts_survive_a_new_emulator_on_the_same_state_file(make_emulator, tmp_path):
    state_file = tmp_path / "emulator-state.json"
    first = make_emulator(state_file=state_file)
    http = login(first)
    post_domain(http, first, "example.com", name="Example", quota="1000", defaultQuota="100")
    post_user(http, first, "jane@example.com", name="Jane", quota="300")
    post_user(http, first, "gone@example.com")
    call(http, "DELETE", first.url + "/user/gone@example.com")

    second = make_emulator(state_file=state_file)

    assert second.emulator.accounts() == {
        "domains": ["example.com"],
        "users": ["jane@example.com"],
    }
    assert second.emulator.domain("example.com")["description"] == "Example"
    assert second.emulator.domain("example.com")["settings"]["default_user_quota"] == 100
    jane = second.emulator.mailbox("jane@example.com")
    assert (jane["name"], jane["quota"]) == ("Jane", 300)
    again = post_user(login(second), second, "jane@example.com")
    assert failure_code(second, again) == "ALREADY_EXISTS"


def test_sessions_do_not_survive_a_new_emulator_on_the_same_state_file(make_emulator, tmp_path):
    state_file = tmp_path / "emulator-state.json"
    first = make_emulator(state_file=state_file)
    session_id = login(first).cookies[COOKIE_NAME]
    call(requests, "POST", first.url + "/domain/example.com", cookies={COOKIE_NAME: session_id})

    second = make_emulator(state_file=state_file)
    on_first = call(requests, "GET", first.url + "/domains", cookies={COOKIE_NAME: session_id})
    on_second = call(requests, "GET", second.url + "/domains", cookies={COOKIE_NAME: session_id})

    assert set(read_data(on_first)) == {"example.com"}
    assert failure_code(second, on_second) == "LOGIN_REQUIRED"
    assert second.emulator.domain("example.com") is not None


def test_an_emulator_without_a_state_file_starts_empty(make_emulator):
    first = make_emulator(CURRENT)
    post_domain(login(first), first, "example.com")

    second = make_emulator(CURRENT)

    assert second.emulator.accounts() == {"domains": [], "users": []}


# --- Counters and knobs under concurrency -------------------------------------------------------


def test_resetting_the_counters_keeps_calls_in_flight_counted(emulator_server):
    emulator_server.emulator.add_domain("example.com")
    emulator_server.emulator.add_fault(Fault(kind="delay", delay=0.4, route="user"))
    http = login(emulator_server)
    slow = threading.Thread(
        target=call,
        args=(http, "POST", emulator_server.url + "/user/slow@example.com"),
        kwargs={"data": {"password": MAILBOX_PASSWORD}},
    )
    slow.start()
    time.sleep(0.15)

    emulator_server.emulator.reset_stats()
    during = emulator_server.emulator.stats()
    slow.join()
    after = emulator_server.emulator.stats()

    assert (during["in_flight"], during["in_flight_max"]) == (1, 1)
    assert after["in_flight"] == 0


def test_forced_expiry_under_concurrency_expires_exactly_every_nth_call(emulator_server):
    emulator_server.emulator.add_domain("example.com")
    every, threads, per_thread = 4, 8, 12
    emulator_server.emulator.configure(expire_session_every=every)
    expired: list[int] = []

    def work(number: int) -> None:
        http = login(emulator_server)
        for index in range(per_thread):
            answer = call(http, "GET", emulator_server.url + f"/user/u{number}-{index}@example.com")
            if answer.json().get("_msg") == "LOGIN_REQUIRED":
                expired.append(1)
                http = login(emulator_server)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))

    total = threads * per_thread
    assert len(expired) == total // every
    assert emulator_server.emulator.stats()["sessions_expired"] == total // every


@pytest.mark.parametrize(
    "knobs",
    [
        {"latency": "0.5"},
        {"latency": -1},
        {"expire_session_every": 1.5},
        {"api_enabled": "no"},
        {"allowed_clients": "10.0.0.0/8"},
    ],
)
def test_a_knob_of_the_wrong_type_is_refused_and_nothing_changes(emulator_server, knobs):
    before = emulator_server.emulator.configure()

    with pytest.raises(ValueError, match="knob"):
        emulator_server.emulator.configure(**knobs)

    assert emulator_server.emulator.configure() == before
    assert succeeded(emulator_server, post_login(emulator_server))


def test_idle_sessions_are_purged_at_the_next_login_after_the_timeout(emulator_server):
    emulator_server.emulator.configure(session_timeout=0.2)
    for _ in range(5):
        login(emulator_server)
    time.sleep(0.3)

    login(emulator_server)

    assert emulator_server.emulator.stats()["sessions"] == 1
