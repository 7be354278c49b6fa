"""Unit tests of the iRedAdmin-Pro client against stubbed HTTP (no sockets, no emulator).

The expectations come from the wire contract (`docs/iredadmin-pro-api.md`, §1-§3, §6, §8 and
§10 "Recommended client behaviour") and from the legacy dialect's documentation
(`seed-iredadmin-pro-restful-api-python.md`). Only HTTP is stubbed, with `responses`; the
client itself is the real one.
"""

import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from apps.iredadmin.client import IRedAdminClient
from apps.iredadmin.errors import (
    AuthenticationError,
    IRedAdminError,
    RejectedError,
    TransientError,
    describe,
)

# --- Test data ---------------------------------------------------------------------------------

HOST = "https://mail.example.com"
PREFIX = "/iredadmin/api"
BASE_URL = HOST + PREFIX
LOGIN_URL = BASE_URL + "/login"
LOGIN_PAGE_URL = HOST + "/iredadmin/login"
ADMIN = "postmaster@example.com"
ADMIN_PASSWORD = "Adm1n-Zq9!unique-admin"
MAILBOX_PASSWORD = "Mb0x-Pw#7731-unique-mailbox"
COOKIE_NAME = "iRedAdmin-Pro-MYSQL"
COOKIE_VALUE = "5f0c3b1e9a7d4c2b8e6f1a3d5c7b9e0f2a4c6e8b"
SECOND_COOKIE_VALUE = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
HTML_PAGE = "<!DOCTYPE html><html><body><form action='/iredadmin/login'>Login</form></body></html>"

CURRENT = "current"
LEGACY = "legacy"
DIALECTS = [CURRENT, LEGACY]

# Keyword argument -> form field name, per dialect (contract §1, §4.2, §4.4; legacy doc).
DOMAIN_FIELD_NAMES = {
    CURRENT: {
        "name": "name",
        "quota_mb": "quota",
        "language": "language",
        "default_user_quota_mb": "defaultQuota",
        "max_user_quota_mb": "maxUserQuota",
        "max_users": "numberOfUsers",
        "max_aliases": "numberOfAliases",
    },
    LEGACY: {
        "name": "cn",
        "quota_mb": "quota",
        "language": "preferredLanguage",
        "default_user_quota_mb": "defaultQuota",
        "max_user_quota_mb": "maxUserQuota",
        "max_users": "numberOfUsers",
        "max_aliases": "numberOfAliases",
    },
}
DOMAIN_KEYWORDS: dict[str, Any] = {
    "name": "Bücher & Co. GmbH",
    "quota_mb": 10240,
    "language": "de_DE",
    "default_user_quota_mb": 512,
    "max_user_quota_mb": 2048,
    "max_users": 50,
    "max_aliases": 20,
}
USER_FIELD_NAMES = {
    CURRENT: {"password": "password", "name": "name", "language": "language", "quota_mb": "quota"},
    LEGACY: {
        "password": "password",
        "name": "cn",
        "language": "preferredLanguage",
        "quota_mb": "mailQuota",
    },
}


# --- Helpers: envelopes per dialect ------------------------------------------------------------

_NO_DATA = object()


def success(dialect: str, data: Any = _NO_DATA) -> dict[str, Any]:
    """`{"_success": true[, "_data": ...]}`, or the legacy `{"success": true}`."""
    if dialect == LEGACY:
        return {"success": True}
    envelope: dict[str, Any] = {"_success": True}
    if data is not _NO_DATA:
        envelope["_data"] = data
    return envelope


def failure(dialect: str, message: str | None = None) -> dict[str, Any]:
    """`{"_success": false, "_msg": ...}`, or `{"success": false, "msg": ...}`; no msg if None."""
    flag, msg = ("success", "msg") if dialect == LEGACY else ("_success", "_msg")
    envelope: dict[str, Any] = {flag: False}
    if message is not None:
        envelope[msg] = message
    return envelope


def set_cookie(value: str = COOKIE_VALUE) -> dict[str, str]:
    """The login answer's cookie, with the flags the server sends (contract §1)."""
    return {"Set-Cookie": f"{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/iredadmin/"}


# --- Helpers: stubbing and reading requests ----------------------------------------------------


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    """Stubbed HTTP; every registered answer must be used unless a test says otherwise."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture(autouse=True)
def _no_ca_bundle_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that care about REQUESTS_CA_BUNDLE set it themselves."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def stub_login(
    http: responses.RequestsMock, dialect: str, cookie: str = COOKIE_VALUE
) -> responses.BaseResponse:
    return http.add(responses.POST, LOGIN_URL, json=success(dialect), headers=set_cookie(cookie))


def url(path: str) -> str:
    return BASE_URL + path


def make_client(dialect: str = "auto", **options: Any) -> IRedAdminClient:
    return IRedAdminClient(BASE_URL, ADMIN, ADMIN_PASSWORD, dialect=dialect, **options)


def path_of(call: Any) -> str:
    """The request's path as sent (still percent-encoded), without the API prefix."""
    path = urlsplit(call.request.url).path
    assert path.startswith(PREFIX)
    return path[len(PREFIX) :]


def sequence(http: responses.RequestsMock) -> list[tuple[str, str]]:
    return [(call.request.method, path_of(call)) for call in http.calls]


def form_of(call: Any) -> dict[str, str]:
    """The form-encoded body as a dict; each field must be sent once."""
    body = call.request.body
    if body is None:
        return {}
    if isinstance(body, bytes):
        body = body.decode("ascii")
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    parsed = parse_qs(body, keep_blank_values=True, strict_parsing=True)
    assert all(len(values) == 1 for values in parsed.values()), parsed
    return {field: values[0] for field, values in parsed.items()}


def cookie_header(call: Any) -> str:
    return call.request.headers.get("Cookie", "")


def assert_explained(error: IRedAdminError) -> None:
    """The error carries a plain sentence for people: the one `describe()` gives its code."""
    assert error.message
    assert error.message == describe(error.code)
    assert error.message[0].isupper()
    assert error.message.endswith(".")


LOGIN = ("POST", "/login")


# The operations that change state, with the request each must send.
CHANGES: dict[str, tuple[Callable[[IRedAdminClient], None], str, str]] = {
    "create_domain": (lambda c: c.create_domain("example.com"), "POST", "/domain/example.com"),
    "delete_domain": (lambda c: c.delete_domain("example.com"), "DELETE", "/domain/example.com"),
    "create_user": (
        lambda c: c.create_user("jane@example.com", password=MAILBOX_PASSWORD),
        "POST",
        "/user/jane@example.com",
    ),
    "delete_user": (
        lambda c: c.delete_user("jane@example.com"),
        "DELETE",
        "/user/jane@example.com",
    ),
}
READS: dict[str, tuple[Callable[[IRedAdminClient], Any], str]] = {
    "get_domain": (lambda c: c.get_domain("example.com"), "/domain/example.com"),
    "get_user": (lambda c: c.get_user("jane@example.com"), "/user/jane@example.com"),
    "list_domains": (lambda c: c.list_domains(), "/domains"),
}


USER_URL = url("/user/jane@example.com")


def create_user(client: IRedAdminClient) -> None:
    """The call most tests make: POST /user/jane@example.com."""
    client.create_user("jane@example.com", password=MAILBOX_PASSWORD)


# --- 1. Operations: method, path, form body ----------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_create_domain_posts_every_keyword_under_the_dialects_field_names(http, dialect):
    stub_login(http, dialect)
    http.add(responses.POST, url("/domain/example.com"), json=success(dialect))
    client = make_client(dialect)

    client.create_domain("example.com", **DOMAIN_KEYWORDS)

    assert sequence(http) == [LOGIN, ("POST", "/domain/example.com")]
    names = DOMAIN_FIELD_NAMES[dialect]
    expected = {names[keyword]: str(value) for keyword, value in DOMAIN_KEYWORDS.items()}
    assert form_of(http.calls[1]) == expected


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("keyword", list(DOMAIN_KEYWORDS))
def test_create_domain_sends_only_the_keywords_that_are_not_none(http, dialect, keyword):
    stub_login(http, dialect)
    http.add(responses.POST, url("/domain/example.com"), json=success(dialect))
    client = make_client(dialect)
    keywords = dict.fromkeys(DOMAIN_KEYWORDS)
    keywords[keyword] = DOMAIN_KEYWORDS[keyword]

    client.create_domain("example.com", **keywords)

    field = DOMAIN_FIELD_NAMES[dialect][keyword]
    assert form_of(http.calls[1]) == {field: str(DOMAIN_KEYWORDS[keyword])}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_create_domain_without_keywords_sends_no_fields(http, dialect):
    stub_login(http, dialect)
    http.add(responses.POST, url("/domain/example.com"), json=success(dialect))

    make_client(dialect).create_domain("example.com")

    assert sequence(http) == [LOGIN, ("POST", "/domain/example.com")]
    assert form_of(http.calls[1]) == {}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_create_user_posts_every_keyword_under_the_dialects_field_names(http, dialect):
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=success(dialect))

    make_client(dialect).create_user(
        "jane@example.com",
        password=MAILBOX_PASSWORD,
        name="Jane Dœ",
        language="fr_FR",
        quota_mb=2048,
    )

    assert sequence(http) == [LOGIN, ("POST", "/user/jane@example.com")]
    names = USER_FIELD_NAMES[dialect]
    assert form_of(http.calls[1]) == {
        names["password"]: MAILBOX_PASSWORD,
        names["name"]: "Jane Dœ",
        names["language"]: "fr_FR",
        names["quota_mb"]: "2048",
    }


@pytest.mark.parametrize("dialect", DIALECTS)
def test_create_user_sends_only_the_password_when_the_other_keywords_are_none(http, dialect):
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=success(dialect))

    make_client(dialect).create_user("jane@example.com", password=MAILBOX_PASSWORD)

    assert form_of(http.calls[1]) == {"password": MAILBOX_PASSWORD}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_create_user_sends_a_zero_quota_because_zero_is_not_none(http, dialect):
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=success(dialect))

    make_client(dialect).create_user("jane@example.com", password=MAILBOX_PASSWORD, quota_mb=0)

    quota_field = USER_FIELD_NAMES[dialect]["quota_mb"]
    assert form_of(http.calls[1]) == {"password": MAILBOX_PASSWORD, quota_field: "0"}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("operation", "path"),
    [
        (lambda c: c.delete_domain("example.com"), "/domain/example.com"),
        (lambda c: c.delete_user("jane@example.com"), "/user/jane@example.com"),
    ],
    ids=["delete_domain", "delete_user"],
)
def test_deletes_send_a_delete_with_no_body(http, dialect, operation, path):
    stub_login(http, dialect)
    http.add(responses.DELETE, url(path), json=success(dialect))

    assert operation(make_client(dialect)) is None

    assert sequence(http) == [LOGIN, ("DELETE", path)]
    assert http.calls[1].request.body is None
    assert urlsplit(http.calls[1].request.url).query == ""


def test_get_domain_returns_the_data_dict(http):
    profile = {"domain": "example.com", "mailboxes": 50, "maxquota": 10240, "active": 1}
    stub_login(http, CURRENT)
    http.add(responses.GET, url("/domain/example.com"), json=success(CURRENT, profile))

    assert make_client(CURRENT).get_domain("example.com") == profile

    assert sequence(http) == [LOGIN, ("GET", "/domain/example.com")]
    assert http.calls[1].request.body is None


def test_get_user_returns_the_data_dict(http):
    profile = {"username": "jane@example.com", "name": "Jane", "quota": 2048, "active": 1}
    stub_login(http, CURRENT)
    http.add(responses.GET, USER_URL, json=success(CURRENT, profile))

    assert make_client(CURRENT).get_user("jane@example.com") == profile

    assert sequence(http) == [LOGIN, ("GET", "/user/jane@example.com")]


def test_list_domains_asks_for_names_only_and_returns_the_names(http):
    stub_login(http, CURRENT)
    http.add(responses.GET, url("/domains"), json=success(CURRENT, ["example.com", "example.org"]))

    assert make_client(CURRENT).list_domains() == ["example.com", "example.org"]

    assert sequence(http) == [LOGIN, ("GET", "/domains")]
    query = parse_qs(urlsplit(http.calls[1].request.url).query, keep_blank_values=True)
    assert "name_only" in query


def test_a_read_whose_data_has_the_wrong_shape_is_an_invalid_response(http):
    stub_login(http, CURRENT)
    http.add(responses.GET, url("/domain/example.com"), json=success(CURRENT, ["not", "a dict"]))

    with pytest.raises(TransientError) as caught:
        make_client(CURRENT).get_domain("example.com")

    assert caught.value.code == "INVALID_RESPONSE"


# --- 2. Login ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_login_posts_the_admin_credentials_as_a_form_and_never_in_the_url(http, dialect):
    stub_login(http, dialect)
    client = make_client(dialect)

    client.login()

    assert sequence(http) == [LOGIN]
    assert form_of(http.calls[0]) == {"username": ADMIN, "password": ADMIN_PASSWORD}
    assert ADMIN_PASSWORD not in http.calls[0].request.url
    assert client.login_count == 1


def test_constructing_a_client_sends_nothing(http):
    client = make_client(CURRENT)

    assert len(http.calls) == 0
    assert client.login_count == 0


@pytest.mark.parametrize("dialect", DIALECTS)
def test_it_logs_in_once_and_reuses_the_cookie_for_every_call(http, dialect):
    stub_login(http, dialect)
    http.add(responses.POST, url("/domain/example.com"), json=success(dialect))
    http.add(responses.POST, USER_URL, json=success(dialect))
    http.add(responses.DELETE, USER_URL, json=success(dialect))
    http.add(responses.DELETE, url("/domain/example.com"), json=success(dialect))
    client = make_client(dialect)

    client.create_domain("example.com")
    client.create_user("jane@example.com", password=MAILBOX_PASSWORD)
    client.delete_user("jane@example.com")
    client.delete_domain("example.com")

    assert client.login_count == 1
    assert sequence(http) == [
        LOGIN,
        ("POST", "/domain/example.com"),
        ("POST", "/user/jane@example.com"),
        ("DELETE", "/user/jane@example.com"),
        ("DELETE", "/domain/example.com"),
    ]
    assert f"{COOKIE_NAME}=" not in cookie_header(http.calls[0])
    for call in http.calls[1:]:
        assert f"{COOKIE_NAME}={COOKIE_VALUE}" in cookie_header(call)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_auto_dialect_learns_the_dialect_from_the_login_answer(http, dialect):
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=success(dialect))
    client = make_client("auto")
    assert client.dialect is None

    client.create_user("jane@example.com", password=MAILBOX_PASSWORD, name="Jane", quota_mb=5)

    assert client.dialect == dialect
    names = USER_FIELD_NAMES[dialect]
    assert form_of(http.calls[1]) == {
        "password": MAILBOX_PASSWORD,
        names["name"]: "Jane",
        names["quota_mb"]: "5",
    }


@pytest.mark.parametrize(
    ("forced", "spoken"),
    [(CURRENT, LEGACY), (LEGACY, CURRENT)],
    ids=["forced-current-server-legacy", "forced-legacy-server-current"],
)
def test_a_forced_dialect_the_server_does_not_speak_raises_dialect_mismatch(http, forced, spoken):
    stub_login(http, spoken)
    client = make_client(forced)

    with pytest.raises(AuthenticationError) as caught:
        client.create_user("jane@example.com", password=MAILBOX_PASSWORD)

    assert caught.value.code == "DIALECT_MISMATCH"
    assert_explained(caught.value)
    assert sequence(http) == [LOGIN]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "code", ["INVALID_CREDENTIALS", "INVALID_USERNAME", "EMPTY_PASSWORD", "NOT_AUTHORIZED"]
)
def test_login_refusals_raise_authentication_error_with_the_servers_code(http, dialect, code):
    http.add(responses.POST, LOGIN_URL, json=failure(dialect, code), headers=set_cookie())
    client = make_client(dialect)

    with pytest.raises(AuthenticationError) as caught:
        client.create_user("jane@example.com", password=MAILBOX_PASSWORD)

    assert caught.value.code == code
    assert_explained(caught.value)
    assert sequence(http) == [LOGIN]


def test_a_login_redirected_to_not_allowed_ip_raises_authentication_error(http):
    http.assert_all_requests_are_fired = False
    http.add(
        responses.POST,
        LOGIN_URL,
        status=303,
        headers={"Location": "/iredadmin/login?msg=NOT_ALLOWED_IP"},
    )
    login_page = http.add(responses.GET, LOGIN_PAGE_URL, body=HTML_PAGE, content_type="text/html")
    client = make_client(CURRENT)

    with pytest.raises(AuthenticationError) as caught:
        client.create_domain("example.com")

    assert caught.value.code == "NOT_ALLOWED_IP"
    assert_explained(caught.value)
    assert sequence(http) == [LOGIN]
    assert login_page.call_count == 0


def test_a_login_answered_404_means_the_api_is_not_found(http):
    http.add(responses.POST, LOGIN_URL, status=404, body="not found", content_type="text/html")

    with pytest.raises(AuthenticationError) as caught:
        make_client(CURRENT).login()

    assert caught.value.code == "API_NOT_FOUND"
    assert_explained(caught.value)


def test_an_empty_configured_password_raises_without_any_http_call(http):
    client = IRedAdminClient(BASE_URL, ADMIN, "", dialect=CURRENT)

    with pytest.raises(AuthenticationError) as caught:
        client.create_domain("example.com")

    assert caught.value.code == "NO_PASSWORD_CONFIGURED"
    assert_explained(caught.value)
    assert len(http.calls) == 0


def test_a_login_answered_500_is_transient(http):
    http.add(
        responses.POST,
        LOGIN_URL,
        status=500,
        body="internal server error",
        content_type="text/html",
    )

    with pytest.raises(TransientError) as caught:
        make_client(CURRENT).create_domain("example.com")

    assert caught.value.code == "HTTP_500"
    assert_explained(caught.value)
    assert sequence(http) == [LOGIN]


# --- 3. Re-login once, repeat once -------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_it_relogs_in_once_on_login_required_and_repeats_with_the_new_cookie(http, dialect):
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=failure(dialect, "LOGIN_REQUIRED"))
    stub_login(http, dialect, cookie=SECOND_COOKIE_VALUE)
    http.add(responses.POST, USER_URL, json=success(dialect))
    client = make_client(dialect)

    create_user(client)

    assert sequence(http) == [LOGIN, ("POST", "/user/jane@example.com")] * 2
    assert client.login_count == 2
    assert form_of(http.calls[3]) == form_of(http.calls[1]) == {"password": MAILBOX_PASSWORD}
    assert f"{COOKIE_NAME}={SECOND_COOKIE_VALUE}" in cookie_header(http.calls[3])


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "location",
    ["/iredadmin/login?msg=SESSION_EXPIRED", LOGIN_PAGE_URL + "?msg=LOGIN_REQUIRED"],
    ids=["session-expired", "login-required"],
)
def test_it_relogs_in_once_on_a_redirect_and_never_follows_it(http, dialect, location):
    http.assert_all_requests_are_fired = False
    stub_login(http, dialect)
    http.add(responses.DELETE, USER_URL, status=303, headers={"Location": location})
    stub_login(http, dialect)
    http.add(responses.DELETE, USER_URL, json=success(dialect))
    login_page = http.add(responses.GET, LOGIN_PAGE_URL, body=HTML_PAGE, content_type="text/html")
    client = make_client(dialect)

    client.delete_user("jane@example.com")

    assert sequence(http) == [LOGIN, ("DELETE", "/user/jane@example.com")] * 2
    assert client.login_count == 2
    assert login_page.call_count == 0


@pytest.mark.parametrize("dialect", DIALECTS)
def test_it_relogs_in_once_on_a_non_json_200_body(http, dialect):
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, body=HTML_PAGE, content_type="text/html")
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=success(dialect))
    client = make_client(dialect)

    create_user(client)

    assert sequence(http) == [LOGIN, ("POST", "/user/jane@example.com")] * 2
    assert client.login_count == 2


def test_it_relogs_in_once_on_login_required_for_a_read(http):
    profile = {"username": "jane@example.com"}
    stub_login(http, CURRENT)
    http.add(responses.GET, USER_URL, json=failure(CURRENT, "LOGIN_REQUIRED"))
    stub_login(http, CURRENT)
    http.add(responses.GET, USER_URL, json=success(CURRENT, profile))
    client = make_client(CURRENT)

    assert client.get_user("jane@example.com") == profile

    assert sequence(http) == [LOGIN, ("GET", "/user/jane@example.com")] * 2
    assert client.login_count == 2


@pytest.mark.parametrize("dialect", DIALECTS)
def test_login_required_twice_raises_authentication_error_without_a_third_attempt(http, dialect):
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=failure(dialect, "LOGIN_REQUIRED"))
    client = make_client(dialect)

    with pytest.raises(AuthenticationError) as caught:
        create_user(client)

    assert caught.value.code == "LOGIN_REQUIRED"
    assert_explained(caught.value)
    assert sequence(http) == [LOGIN, ("POST", "/user/jane@example.com")] * 2
    assert client.login_count == 2


@pytest.mark.parametrize("dialect", DIALECTS)
def test_non_json_twice_raises_invalid_response_without_a_third_attempt(http, dialect):
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, body=HTML_PAGE, content_type="text/html")
    client = make_client(dialect)

    with pytest.raises(TransientError) as caught:
        create_user(client)

    assert caught.value.code == "INVALID_RESPONSE"
    assert caught.value.may_have_taken_effect is True
    assert_explained(caught.value)
    assert sequence(http) == [LOGIN, ("POST", "/user/jane@example.com")] * 2
    assert client.login_count == 2


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_redirect_twice_raises_without_a_third_attempt(http, dialect):
    http.assert_all_requests_are_fired = False
    stub_login(http, dialect)
    http.add(
        responses.POST,
        USER_URL,
        status=303,
        headers={"Location": "/iredadmin/login?msg=SESSION_EXPIRED"},
    )
    login_page = http.add(responses.GET, LOGIN_PAGE_URL, body=HTML_PAGE, content_type="text/html")
    client = make_client(dialect)

    with pytest.raises(IRedAdminError) as caught:
        create_user(client)

    assert_explained(caught.value)
    assert sequence(http) == [LOGIN, ("POST", "/user/jane@example.com")] * 2
    assert client.login_count == 2
    assert login_page.call_count == 0


# --- 4. Error mapping --------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "code",
    [
        "ALREADY_EXISTS",
        "INVALID_DOMAIN_NAME",
        "NO_SUCH_ACCOUNT",
        "INVALID_MAIL",
        "EXCEEDED_DOMAIN_QUOTA_SIZE",
        "SOME_CODE_FROM_A_NEWER_RELEASE",
    ],
    ids=["already-exists", "invalid-domain", "no-such-account", "invalid-mail", "quota", "new"],
)
def test_server_refusals_raise_rejected_error_with_the_code_verbatim(http, dialect, code):
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=failure(dialect, code))
    client = make_client(dialect)

    with pytest.raises(RejectedError) as caught:
        create_user(client)

    assert caught.value.code == code
    assert caught.value.may_have_taken_effect is False
    assert_explained(caught.value)
    assert sequence(http) == [LOGIN, ("POST", "/user/jane@example.com")]
    assert client.login_count == 1


SERVER_EXCEPTION = (
    "OperationalError(1205, 'Lock wait timeout exceeded; try restarting transaction')"
)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_server_side_exception_on_a_change_is_transient_and_may_be_half_done(http, dialect):
    """Contract §6: `_msg` can be the repr of a server exception, e.g. a database lock timeout;
    that is not a refusal but trouble worth another attempt, and the change may be half done."""
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=failure(dialect, SERVER_EXCEPTION))
    client = make_client(dialect)

    with pytest.raises(TransientError) as caught:
        create_user(client)

    assert caught.value.code == SERVER_EXCEPTION
    assert caught.value.may_have_taken_effect is True
    assert "internal error" in caught.value.message
    assert client.login_count == 1


def test_a_server_side_exception_on_a_read_is_transient_and_changed_nothing(http):
    stub_login(http, CURRENT)
    http.add(responses.GET, USER_URL, json=failure(CURRENT, SERVER_EXCEPTION))

    with pytest.raises(TransientError) as caught:
        make_client(CURRENT).get_user("jane@example.com")

    assert caught.value.code == SERVER_EXCEPTION
    assert caught.value.may_have_taken_effect is False


@pytest.mark.parametrize("dialect", DIALECTS)
def test_comma_joined_password_codes_are_kept_verbatim_and_split(http, dialect):
    joined = "PW_NO_UPPERCASE,PW_NO_SPECIAL_CHAR"
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=failure(dialect, joined))

    with pytest.raises(RejectedError) as caught:
        make_client(dialect).create_user("jane@example.com", password="weakpassword1")

    assert caught.value.code == joined
    assert caught.value.codes == ["PW_NO_UPPERCASE", "PW_NO_SPECIAL_CHAR"]
    assert_explained(caught.value)
    assert describe("PW_NO_UPPERCASE") in caught.value.message
    assert describe("PW_NO_SPECIAL_CHAR") in caught.value.message


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_failure_without_a_message_raises_rejected_error(http, dialect):
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=failure(dialect, None))

    with pytest.raises(RejectedError) as caught:
        create_user(make_client(dialect))

    assert caught.value.codes == []
    assert_explained(caught.value)
    assert len(http.calls) == 2


@pytest.mark.parametrize(
    ("read", "path", "code"),
    [
        (lambda c: c.get_domain("example.com"), "/domain/example.com", "INVALID_DOMAIN_NAME"),
        (lambda c: c.get_user("jane@example.com"), "/user/jane@example.com", "NO_SUCH_ACCOUNT"),
    ],
    ids=["get_domain", "get_user"],
)
def test_reading_a_missing_account_raises_rejected_error(http, read, path, code):
    stub_login(http, CURRENT)
    http.add(responses.GET, url(path), json=failure(CURRENT, code))

    with pytest.raises(RejectedError) as caught:
        read(make_client(CURRENT))

    assert caught.value.code == code
    assert caught.value.may_have_taken_effect is False


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("code", ["PERMISSION_DENIED", "NOT_AUTHORIZED"])
def test_permission_refusals_on_a_call_raise_authentication_error_without_relogin(
    http, dialect, code
):
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=failure(dialect, code))
    client = make_client(dialect)

    with pytest.raises(AuthenticationError) as caught:
        create_user(client)

    assert caught.value.code == code
    assert_explained(caught.value)
    assert sequence(http) == [LOGIN, ("POST", "/user/jane@example.com")]
    assert client.login_count == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_http_5xx_on_a_call_is_transient_and_not_repeated(http, status):
    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, status=status, body="error", content_type="text/html")
    client = make_client(CURRENT)

    with pytest.raises(TransientError) as caught:
        create_user(client)

    assert caught.value.code == f"HTTP_{status}"
    assert_explained(caught.value)
    assert sequence(http) == [LOGIN, ("POST", "/user/jane@example.com")]


def test_http_429_on_a_call_is_transient(http):
    stub_login(http, CURRENT)
    http.add(responses.GET, USER_URL, status=429, body="slow down", content_type="text/plain")

    with pytest.raises(TransientError) as caught:
        make_client(CURRENT).get_user("jane@example.com")

    assert caught.value.code == "HTTP_429"
    assert_explained(caught.value)
    assert len(http.calls) == 2


@pytest.mark.parametrize("status", [401, 403])
def test_http_401_and_403_on_a_call_raise_authentication_error(http, status):
    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, status=status, body="denied", content_type="text/html")
    client = make_client(CURRENT)

    with pytest.raises(AuthenticationError) as caught:
        create_user(client)

    assert caught.value.code == f"HTTP_{status}"
    assert_explained(caught.value)
    assert client.login_count == 1
    assert len(http.calls) == 2


def test_http_405_on_a_call_raises_rejected_error(http):
    stub_login(http, CURRENT)
    http.add(
        responses.DELETE,
        USER_URL,
        status=405,
        body="method not allowed",
        content_type="text/html",
    )

    with pytest.raises(RejectedError) as caught:
        make_client(CURRENT).delete_user("jane@example.com")

    assert caught.value.code == "HTTP_405"
    assert_explained(caught.value)
    assert len(http.calls) == 2


def connection_refused() -> requests.exceptions.ConnectionError:
    """What requests raises when nothing listens on the port."""
    refused = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")
    return requests.exceptions.ConnectionError(
        MaxRetryError(None, "/iredadmin/api/user/jane@example.com", reason=refused)
    )


def connection_dropped() -> requests.exceptions.ConnectionError:
    """What requests raises when the server closes the connection before answering."""
    return requests.exceptions.ConnectionError(
        ProtocolError("Connection aborted.", ConnectionResetError(104, "reset by peer"))
    )


@pytest.mark.parametrize(
    ("exception", "code"),
    [
        (connection_refused(), "CONNECTION_FAILED"),
        (requests.exceptions.ConnectTimeout("connect timed out"), "CONNECT_TIMEOUT"),
    ],
    ids=["refused", "connect-timeout"],
)
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_connection_never_made_is_transient_and_did_not_take_effect(
    http, change, exception, code
):
    operation, method, path = CHANGES[change]
    stub_login(http, CURRENT)
    http.add(method, url(path), body=exception)

    with pytest.raises(TransientError) as caught:
        operation(make_client(CURRENT))

    assert caught.value.code == code
    assert caught.value.may_have_taken_effect is False
    assert_explained(caught.value)
    assert sequence(http) == [LOGIN, (method, path)]


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_read_timeout_on_a_change_may_have_taken_effect(http, change):
    operation, method, path = CHANGES[change]
    stub_login(http, CURRENT)
    http.add(method, url(path), body=requests.exceptions.ReadTimeout("read timed out"))

    with pytest.raises(TransientError) as caught:
        operation(make_client(CURRENT))

    assert caught.value.code == "READ_TIMEOUT"
    assert caught.value.may_have_taken_effect is True
    assert_explained(caught.value)
    assert sequence(http) == [LOGIN, (method, path)]


@pytest.mark.parametrize("read", list(READS))
def test_a_read_timeout_on_a_get_did_not_take_effect(http, read):
    operation, path = READS[read]
    stub_login(http, CURRENT)
    http.add(responses.GET, url(path), body=requests.exceptions.ReadTimeout("read timed out"))

    with pytest.raises(TransientError) as caught:
        operation(make_client(CURRENT))

    assert caught.value.code == "READ_TIMEOUT"
    assert caught.value.may_have_taken_effect is False


def test_a_connection_dropped_after_a_post_may_have_taken_effect(http):
    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, body=connection_dropped())

    with pytest.raises(TransientError) as caught:
        create_user(make_client(CURRENT))

    assert caught.value.may_have_taken_effect is True
    assert_explained(caught.value)


def test_a_connection_refused_at_login_is_transient(http):
    http.add(responses.POST, LOGIN_URL, body=connection_refused())

    with pytest.raises(TransientError) as caught:
        make_client(CURRENT).login()

    assert caught.value.may_have_taken_effect is False


@pytest.mark.parametrize("dialect", DIALECTS)
def test_already_exists_answering_the_repeat_after_a_non_json_answer_may_have_taken_effect(
    http, dialect
):
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, body=HTML_PAGE, content_type="text/html")
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=failure(dialect, "ALREADY_EXISTS"))

    with pytest.raises(RejectedError) as caught:
        create_user(make_client(dialect))

    assert caught.value.code == "ALREADY_EXISTS"
    assert caught.value.may_have_taken_effect is True
    assert sequence(http) == [LOGIN, ("POST", "/user/jane@example.com")] * 2


@pytest.mark.parametrize("dialect", DIALECTS)
def test_already_exists_answering_the_repeat_after_login_required_did_not_take_effect(
    http, dialect
):
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=failure(dialect, "LOGIN_REQUIRED"))
    stub_login(http, dialect)
    http.add(responses.POST, USER_URL, json=failure(dialect, "ALREADY_EXISTS"))

    with pytest.raises(RejectedError) as caught:
        create_user(make_client(dialect))

    assert caught.value.code == "ALREADY_EXISTS"
    assert caught.value.may_have_taken_effect is False
    assert sequence(http) == [LOGIN, ("POST", "/user/jane@example.com")] * 2


# --- 5. Legacy dialect: no reads ---------------------------------------------------------------


@pytest.mark.parametrize("configured", [LEGACY, "auto"])
@pytest.mark.parametrize("read", list(READS))
def test_reads_are_unsupported_in_the_legacy_dialect_and_send_no_get(http, read, configured):
    operation, _path = READS[read]
    http.assert_all_requests_are_fired = False
    stub_login(http, LEGACY)

    with pytest.raises(RejectedError) as caught:
        operation(make_client(configured))

    assert caught.value.code == "UNSUPPORTED_OPERATION"
    assert_explained(caught.value)
    # At most the login went out: no GET, nothing else.
    assert set(sequence(http)) <= {LOGIN}


# --- 6. Paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "method"),
    [
        (lambda c: c.create_user("a#b@example.com", password=MAILBOX_PASSWORD), "POST"),
        (lambda c: c.delete_user("a#b@example.com"), "DELETE"),
        (lambda c: c.get_user("a#b@example.com"), "GET"),
    ],
    ids=["create_user", "delete_user", "get_user"],
)
def test_a_hash_in_an_address_is_percent_encoded(http, operation, method):
    stub_login(http, CURRENT)
    http.add(method, url("/user/a%23b@example.com"), json=success(CURRENT, {}))

    operation(make_client(CURRENT))

    assert sequence(http) == [LOGIN, (method, "/user/a%23b@example.com")]
    assert urlsplit(http.calls[1].request.url).fragment == ""


@pytest.mark.parametrize(
    ("operation", "method", "path"),
    [
        (lambda c: c.create_domain("Example.COM"), "POST", "/domain/example.com"),
        (lambda c: c.delete_domain("EXAMPLE.com"), "DELETE", "/domain/example.com"),
        (lambda c: c.get_domain("Example.Com"), "GET", "/domain/example.com"),
        (
            lambda c: c.create_user("Jane.Doe@Example.COM", password=MAILBOX_PASSWORD),
            "POST",
            "/user/jane.doe@example.com",
        ),
        (lambda c: c.delete_user("JANE@EXAMPLE.COM"), "DELETE", "/user/jane@example.com"),
        (lambda c: c.get_user("Jane@Example.COM"), "GET", "/user/jane@example.com"),
    ],
    ids=["create_domain", "delete_domain", "get_domain", "create_user", "delete_user", "get_user"],
)
def test_domains_and_addresses_are_lower_cased_in_the_path(http, operation, method, path):
    stub_login(http, CURRENT)
    http.add(method, url(path), json=success(CURRENT, {}))

    operation(make_client(CURRENT))

    assert sequence(http) == [LOGIN, (method, path)]


@pytest.mark.parametrize(
    ("operation", "method", "path"),
    [
        (lambda c: c.create_domain("bücher.example"), "POST", "/domain/xn--bcher-kva.example"),
        (lambda c: c.delete_domain("Bücher.Example"), "DELETE", "/domain/xn--bcher-kva.example"),
        (lambda c: c.get_domain("bücher.example"), "GET", "/domain/xn--bcher-kva.example"),
        (
            lambda c: c.create_user("jane@bücher.example", password=MAILBOX_PASSWORD),
            "POST",
            "/user/jane@xn--bcher-kva.example",
        ),
        (
            lambda c: c.delete_user("jane@BÜCHER.example"),
            "DELETE",
            "/user/jane@xn--bcher-kva.example",
        ),
    ],
    ids=["create_domain", "delete_domain", "get_domain", "create_user", "delete_user"],
)
def test_an_idn_domain_is_sent_in_its_xn_form(http, operation, method, path):
    stub_login(http, CURRENT)
    http.add(method, url(path), json=success(CURRENT, {}))

    operation(make_client(CURRENT))

    assert sequence(http) == [LOGIN, (method, path)]


BAD_ADDRESSES = [
    "a/b@example.com",
    "jane@exa/mple.com",
    "../../domain/example.com@example.com",
    "jane.example.com",
    "jane@example",
    "jane doe@example.com",
    "jane@example.com?x=1",
]
BAD_DOMAINS = [
    "example",
    "exa mple.com",
    "example.com/../admin",
    "../example.com",
    "example.com?x=1",
    "example.com#x",
    "",
]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
@pytest.mark.parametrize(
    "operation",
    [
        lambda c, a: c.create_user(a, password=MAILBOX_PASSWORD),
        lambda c, a: c.delete_user(a),
        lambda c, a: c.get_user(a),
    ],
    ids=["create_user", "delete_user", "get_user"],
)
def test_an_address_the_server_would_not_route_is_refused_without_any_http_call(
    http, operation, address
):
    with pytest.raises(RejectedError) as caught:
        operation(make_client(CURRENT), address)

    assert caught.value.code == "INVALID_MAIL"
    assert_explained(caught.value)
    assert len(http.calls) == 0


@pytest.mark.parametrize("domain", BAD_DOMAINS)
@pytest.mark.parametrize(
    "operation",
    [
        lambda c, d: c.create_domain(d, name="X"),
        lambda c, d: c.delete_domain(d),
        lambda c, d: c.get_domain(d),
    ],
    ids=["create_domain", "delete_domain", "get_domain"],
)
def test_an_invalid_domain_is_refused_without_any_http_call(http, operation, domain):
    with pytest.raises(RejectedError) as caught:
        operation(make_client(CURRENT), domain)

    assert caught.value.code == "INVALID_DOMAIN_NAME"
    assert_explained(caught.value)
    assert len(http.calls) == 0


def test_an_invalid_path_after_login_sends_nothing_more(http):
    stub_login(http, CURRENT)
    client = make_client(CURRENT)
    client.login()

    with pytest.raises(RejectedError):
        client.delete_user("a/b@example.com")
    with pytest.raises(RejectedError):
        client.delete_domain("example.com/../x")

    assert sequence(http) == [LOGIN]


@pytest.mark.parametrize("base_url", [BASE_URL, BASE_URL + "/"], ids=["plain", "trailing-slash"])
def test_urls_never_end_in_a_slash(http, base_url):
    http.add(responses.POST, LOGIN_URL, json=success(CURRENT), headers=set_cookie())
    http.add(responses.POST, url("/domain/example.com"), json=success(CURRENT))
    http.add(responses.GET, url("/domain/example.com"), json=success(CURRENT, {}))
    http.add(responses.GET, url("/domains"), json=success(CURRENT, []))
    http.add(responses.DELETE, USER_URL, json=success(CURRENT))
    client = IRedAdminClient(base_url, ADMIN, ADMIN_PASSWORD, dialect=CURRENT)

    client.create_domain("example.com")
    client.get_domain("example.com")
    client.list_domains()
    client.delete_user("jane@example.com")

    assert len(http.calls) == 5
    for call in http.calls:
        path = urlsplit(call.request.url).path
        assert not path.endswith("/")
        assert "//" not in path


# --- 7. Timeout and TLS ------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [7.5, (3.05, 27)], ids=["single", "connect-read"])
def test_every_request_carries_the_configured_timeout(http, timeout):
    stub_login(http, CURRENT)
    http.add(responses.POST, url("/domain/example.com"), json=success(CURRENT))
    http.add(responses.GET, url("/domain/example.com"), json=success(CURRENT, {}))
    http.add(responses.DELETE, url("/domain/example.com"), json=success(CURRENT))
    client = make_client(CURRENT, timeout=timeout)

    client.create_domain("example.com")
    client.get_domain("example.com")
    client.delete_domain("example.com")

    assert len(http.calls) == 4
    assert [call.request.req_kwargs["timeout"] for call in http.calls] == [timeout] * 4


def test_requests_do_not_go_out_without_a_timeout_by_default(http):
    stub_login(http, CURRENT)

    make_client(CURRENT).login()

    assert http.calls[0].request.req_kwargs["timeout"] is not None


@pytest.mark.parametrize("environment_bundle", [False, True], ids=["clean-env", "env-ca-bundle"])
def test_verify_false_is_passed_through(http, monkeypatch, tmp_path, environment_bundle):
    if environment_bundle:
        system_bundle = tmp_path / "system-ca.pem"
        system_bundle.write_text("system CAs\n")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(system_bundle))
    stub_login(http, CURRENT)
    http.add(responses.DELETE, USER_URL, json=success(CURRENT))
    client = make_client(CURRENT, verify=False)

    client.delete_user("jane@example.com")

    assert [call.request.req_kwargs["verify"] for call in http.calls] == [False, False]


@pytest.mark.parametrize("environment_bundle", [False, True], ids=["clean-env", "env-ca-bundle"])
def test_a_ca_bundle_path_is_passed_through(http, monkeypatch, tmp_path, environment_bundle):
    bundle = tmp_path / "iredmail-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    if environment_bundle:
        system_bundle = tmp_path / "system-ca.pem"
        system_bundle.write_text("system CAs\n")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(system_bundle))
    stub_login(http, CURRENT)
    http.add(responses.DELETE, USER_URL, json=success(CURRENT))
    client = make_client(CURRENT, verify=str(bundle))

    client.delete_user("jane@example.com")

    assert [call.request.req_kwargs["verify"] for call in http.calls] == [str(bundle)] * 2


def test_tls_is_verified_by_default(http):
    stub_login(http, CURRENT)

    make_client(CURRENT).login()

    assert http.calls[0].request.req_kwargs["verify"] is True


def test_the_system_ca_bundle_from_the_environment_is_used_when_verifying(
    http, monkeypatch, tmp_path
):
    system_bundle = tmp_path / "system-ca.pem"
    system_bundle.write_text("system CAs\n")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(system_bundle))
    stub_login(http, CURRENT)

    make_client(CURRENT).login()

    assert http.calls[0].request.req_kwargs["verify"] == str(system_bundle)


def test_a_proxy_from_the_environment_is_used_unless_no_proxy_exempts_the_server(http, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.net:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    stub_login(http, CURRENT)
    stub_login(http, CURRENT)

    make_client(CURRENT).login()
    monkeypatch.setenv("NO_PROXY", "mail.example.com")
    make_client(CURRENT).login()

    assert http.calls[0].request.req_kwargs["proxies"]["https"] == ("http://proxy.example.net:3128")
    assert "https" not in http.calls[1].request.req_kwargs["proxies"]


def test_the_environment_is_read_once_when_the_client_is_made(http, monkeypatch):
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    stub_login(http, CURRENT)
    http.add(responses.DELETE, USER_URL, json=success(CURRENT))
    client = make_client(CURRENT)
    client.login()

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.net:3128")
    client.delete_user("jane@example.com")

    assert "https" not in http.calls[1].request.req_kwargs["proxies"]


def test_a_missing_ca_bundle_is_refused_at_construction(tmp_path):
    with pytest.raises(ValueError, match="CA bundle"):
        make_client(CURRENT, verify=str(tmp_path / "missing-ca.pem"))


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://mail.example.com/iredadmin/api",
        "mail.example.com/iredadmin/api",
        "file:///etc/passwd",
        "https://",
        "",
    ],
)
def test_a_base_url_that_is_not_http_is_refused(base_url):
    with pytest.raises(ValueError, match="base_url"):
        IRedAdminClient(base_url, ADMIN, ADMIN_PASSWORD)


# --- 8. Secrets --------------------------------------------------------------------------------

SECRETS = [ADMIN_PASSWORD, MAILBOX_PASSWORD, COOKIE_VALUE, SECOND_COOKIE_VALUE]


def test_no_password_or_cookie_reaches_the_logs(http, caplog):
    caplog.set_level(logging.DEBUG)
    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, json=failure(CURRENT, "LOGIN_REQUIRED"))
    stub_login(http, CURRENT, cookie=SECOND_COOKIE_VALUE)
    http.add(responses.POST, USER_URL, json=success(CURRENT))
    http.add(
        responses.POST, url("/user/john@example.com"), json=failure(CURRENT, "PW_NO_DIGIT_NUMBER")
    )
    client = make_client(CURRENT)

    create_user(client)
    with pytest.raises(RejectedError):
        client.create_user("john@example.com", password=MAILBOX_PASSWORD)

    client_records = [r for r in caplog.records if r.name.startswith("apps.iredadmin")]
    assert client_records, "the client's log lines were not captured"
    for record in caplog.records:
        logged = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for secret in SECRETS:
            assert secret not in logged, record
    for secret in SECRETS:
        assert secret not in caplog.text


def test_repr_does_not_contain_the_password():
    client = make_client(CURRENT)

    assert ADMIN_PASSWORD not in repr(client)
    assert ADMIN_PASSWORD not in str(client)


def _refused_login(http):
    http.add(responses.POST, LOGIN_URL, json=failure(CURRENT, "INVALID_CREDENTIALS"))


def _refused_password(http):
    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, json=failure(CURRENT, "PW_NO_UPPERCASE,PW_NO_DIGIT_NUMBER"))


def _read_timeout(http):
    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, body=requests.exceptions.ReadTimeout("read timed out"))


def _non_json_twice(http):
    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, body=HTML_PAGE, content_type="text/html")


def _login_required_twice(http):
    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, json=failure(CURRENT, "LOGIN_REQUIRED"))


@pytest.mark.parametrize(
    "stub",
    [_refused_login, _refused_password, _read_timeout, _non_json_twice, _login_required_twice],
    ids=["bad-login", "password-policy", "read-timeout", "non-json", "login-required"],
)
def test_no_error_message_contains_a_password(http, stub):
    stub(http)

    with pytest.raises(IRedAdminError) as caught:
        create_user(make_client(CURRENT))

    shown = f"{caught.value} {caught.value!r} {caught.value.message} {caught.value.args!r}"
    for secret in SECRETS:
        assert secret not in shown
    assert_explained(caught.value)


# --- 9. Paths found in review ------------------------------------------------------------------


@pytest.mark.parametrize(
    "second_answer",
    [
        {"json": failure(CURRENT, "LOGIN_REQUIRED")},
        {"status": 303, "headers": {"Location": "/iredadmin/login?msg=SESSION_EXPIRED"}},
    ],
    ids=["login-required", "session-expired"],
)
def test_a_lost_answer_followed_by_a_lost_session_may_have_taken_effect(http, second_answer):
    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, body=HTML_PAGE, content_type="text/html")
    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, **second_answer)

    with pytest.raises(AuthenticationError) as caught:
        create_user(make_client(CURRENT))

    assert caught.value.may_have_taken_effect is True
    assert sequence(http) == [LOGIN, ("POST", "/user/jane@example.com")] * 2


def test_a_tls_connection_broken_mid_answer_is_transient_and_may_have_taken_effect(http):
    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, body=requests.exceptions.SSLError("EOF occurred"))

    with pytest.raises(TransientError) as caught:
        create_user(make_client(CURRENT))

    assert caught.value.code == "TLS_CONNECTION_FAILED"
    assert caught.value.may_have_taken_effect is True


def test_an_untrusted_certificate_is_for_the_operator(http):
    refused = requests.exceptions.SSLError(
        "certificate verify failed: unable to get local issuer certificate "
        "(_ssl.c:1006) [SSL: CERTIFICATE_VERIFY_FAILED]"
    )
    http.add(responses.POST, LOGIN_URL, body=refused)

    with pytest.raises(AuthenticationError) as caught:
        make_client(CURRENT).login()

    assert caught.value.code == "TLS_ERROR"
    assert "IREDADMIN_CA_BUNDLE" in caught.value.message


def test_a_ca_bundle_from_the_environment_that_does_not_exist_is_refused_at_once(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "gone.pem"))

    with pytest.raises(ValueError, match="REQUESTS_CA_BUNDLE"):
        make_client(CURRENT)


def test_credentials_in_the_url_are_refused():
    with pytest.raises(ValueError, match="user name or password"):
        IRedAdminClient("https://admin:secret@mail.example.com/iredadmin/api", ADMIN, "x")


@pytest.mark.parametrize("address", ["\u212aate@example.com", "j\u00e4ne@example.com"])
def test_a_local_part_that_is_not_ascii_before_lower_casing_is_refused(http, address):
    with pytest.raises(RejectedError) as caught:
        make_client(CURRENT).create_user(address, password=MAILBOX_PASSWORD)

    assert caught.value.code == "INVALID_MAIL"
    assert len(http.calls) == 0


def test_the_dialect_is_learnt_again_at_each_login(http):
    http.add(responses.POST, LOGIN_URL, json=success(LEGACY), headers=set_cookie())
    http.add(responses.POST, USER_URL, json=failure(LEGACY, "LOGIN_REQUIRED"))
    # Meanwhile the server was upgraded to a release with the current dialect.
    http.add(responses.POST, LOGIN_URL, json=success(CURRENT), headers=set_cookie())
    http.add(responses.POST, USER_URL, json=success(CURRENT))
    client = make_client()

    client.create_user("jane@example.com", password=MAILBOX_PASSWORD, name="Jane")

    assert client.dialect == CURRENT
    assert form_of(http.calls[1]) == {"password": MAILBOX_PASSWORD, "cn": "Jane"}
    assert form_of(http.calls[3]) == {"password": MAILBOX_PASSWORD, "name": "Jane"}


def test_a_forced_dialect_disagreeing_with_an_answer_to_a_call_is_refused(http):
    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, json=success(LEGACY))

    with pytest.raises(AuthenticationError) as caught:
        create_user(make_client(CURRENT))

    assert caught.value.code == "DIALECT_MISMATCH"


def test_a_redirect_to_a_permission_page_is_for_the_operator_and_not_repeated(http):
    stub_login(http, CURRENT)
    http.add(
        responses.POST,
        USER_URL,
        status=303,
        headers={"Location": "/iredadmin/users/example.com?msg=PERMISSION_DENIED"},
    )

    with pytest.raises(AuthenticationError) as caught:
        create_user(make_client(CURRENT))

    assert caught.value.code == "PERMISSION_DENIED"
    assert sequence(http) == [LOGIN, ("POST", "/user/jane@example.com")]


@pytest.mark.parametrize(
    "location",
    ["/iredadmin/somewhere", "/iredadmin/login?msg=%0Ainjected%20line"],
    ids=["no-msg", "not-a-code"],
)
def test_a_redirect_without_a_known_code_is_transient_after_one_repeat(http, location):
    for _ in range(2):
        stub_login(http, CURRENT)
        http.add(responses.POST, USER_URL, status=303, headers={"Location": location})

    with pytest.raises(TransientError) as caught:
        create_user(make_client(CURRENT))

    assert caught.value.code == "REDIRECTED"


def test_a_request_timeout_status_is_transient(http):
    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, status=408)

    with pytest.raises(TransientError) as caught:
        create_user(make_client(CURRENT))

    assert caught.value.code == "HTTP_408"


def test_django_error_reports_never_show_the_passwords(http, rf):
    """A traceback page or error e-mail shows each frame's local variables."""
    from django.views.debug import ExceptionReporter

    stub_login(http, CURRENT)
    http.add(responses.POST, USER_URL, body=requests.exceptions.ReadTimeout("slow"))
    client = make_client(CURRENT)
    client.login()  # the login's own frames: the admin password is in `form` there
    http.calls.reset()
    try:
        create_user(client)
    except TransientError as error:
        report = ExceptionReporter(rf.get("/"), type(error), error, error.__traceback__)
        frames = report.get_traceback_frames()
        html = report.get_traceback_html()
    else:
        pytest.fail("the call should have timed out")
    shown = {(frame["function"], name): value for frame in frames for name, value in frame["vars"]}

    assert ("_send", "form") in shown  # the frames and their variables are there...
    assert all(MAILBOX_PASSWORD not in str(value) for value in shown.values())
    assert MAILBOX_PASSWORD not in html  # ...without the secrets they held
    assert ADMIN_PASSWORD not in html


def test_django_error_reports_never_show_the_admin_password_of_a_failed_login(http, rf):
    from django.views.debug import ExceptionReporter

    http.add(responses.POST, LOGIN_URL, body=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(TransientError) as caught:
        make_client(CURRENT).login()
    error = caught.value
    report = ExceptionReporter(rf.get("/"), type(error), error, error.__traceback__)

    assert "login" in [frame["function"] for frame in report.get_traceback_frames()]
    assert ADMIN_PASSWORD not in report.get_traceback_html()


# --- 10. No login storm ------------------------------------------------------------------------


def test_after_a_refused_login_no_client_of_the_process_tries_again_within_the_window(http):
    http.add(responses.POST, LOGIN_URL, json=failure(CURRENT, "INVALID_CREDENTIALS"))

    with pytest.raises(AuthenticationError):
        make_client(CURRENT).login()
    with pytest.raises(AuthenticationError) as second:
        make_client(CURRENT).login()  # another thread's client, same server and user

    assert len(http.calls) == 1
    assert second.value.code == "INVALID_CREDENTIALS"
    assert "tries logging in again in" in second.value.message


def test_the_refusal_window_is_per_server_and_user(http):
    http.add(responses.POST, LOGIN_URL, json=failure(CURRENT, "INVALID_CREDENTIALS"))
    stub_login(http, CURRENT)

    with pytest.raises(AuthenticationError):
        make_client(CURRENT).login()
    IRedAdminClient(BASE_URL, "other@example.com", ADMIN_PASSWORD).login()

    assert len(http.calls) == 2


def test_a_client_may_opt_out_of_the_refusal_window(http):
    http.add(responses.POST, LOGIN_URL, json=failure(CURRENT, "INVALID_CREDENTIALS"))
    http.add(responses.POST, LOGIN_URL, json=failure(CURRENT, "INVALID_CREDENTIALS"))

    for _ in range(2):
        with pytest.raises(AuthenticationError):
            make_client(CURRENT, login_retry_after=0).login()

    assert len(http.calls) == 2


def test_transient_trouble_at_login_does_not_start_a_refusal_window(http):
    http.add(responses.POST, LOGIN_URL, status=503)
    stub_login(http, CURRENT)

    with pytest.raises(TransientError):
        make_client(CURRENT).login()
    make_client(CURRENT).login()

    assert len(http.calls) == 2
