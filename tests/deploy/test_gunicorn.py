"""The production web process: gunicorn with deploy/gunicorn.conf.py, static files by whitenoise.

Runs gunicorn as deployed (docs/deploy.md) with production settings on a throwaway SQLite
database: the portal answers, hashed static files are served with a long cache lifetime, and
a bad setting in the environment stops gunicorn with a message, not a traceback.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bench.environment import production_settings
from tests.helpers import free_port

PROJECT_DIR = Path(__file__).resolve().parents[2]
# What the TLS-terminating proxy in front of gunicorn sends.
PROXY = {"Host": "portal.example.net", "X-Forwarded-Proto": "https", "X-Forwarded-For": "10.0.0.9"}


def production(tmp_path: Path, **variables: str) -> dict[str, str]:
    return {
        **os.environ,
        **production_settings(tmp_path),
        "MAILDESK_ENV_FILE": "",
        "DJANGO_ALLOWED_HOSTS": "portal.example.net",
        "MAILDESK_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
        "CELERY_BROKER_URL": "",
        "MAILDESK_PROXY_COUNT": "1",  # PROXY's headers come from one proxy
        **variables,
    }


def manage(environment: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=PROJECT_DIR, env=environment,
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def gunicorn(environment: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "portal.wsgi"],
            cwd=PROJECT_DIR, env=environment, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.fixture
def served(tmp_path):
    """A running gunicorn on a migrated database with collected static files: its base URL."""
    port = free_port()
    environment = production(
        tmp_path,
        MAILDESK_BIND=f"127.0.0.1:{port}",
        MAILDESK_WEB_PROCESSES="2",
        MAILDESK_WEB_THREADS="2",
    )
    manage(environment, "migrate", "--noinput")
    manage(environment, "collectstatic", "--noinput")
    log = tmp_path / "gunicorn.log"
    process = gunicorn(environment, log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/healthz", headers=PROXY, timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "gunicorn did not answer in 30 s"
                time.sleep(0.2)
        yield url, tmp_path / "static", log
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_gunicorn_serves_the_portal_and_its_hashed_static_files(served):
    url, static_root, log = served

    health = requests.get(f"{url}/healthz", headers=PROXY, timeout=5)
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}

    sign_in = requests.get(f"{url}/accounts/login/", headers=PROXY, timeout=5)
    assert sign_in.status_code == 200
    assert "Strict-Transport-Security" in sign_in.headers
    # The page links the collected, hashed stylesheet; whitenoise serves it for a year.
    manifest = (static_root / "staticfiles.json").read_text()
    assert '"paths"' in manifest
    hashed = next(
        part.split('"')[0]
        for part in sign_in.text.split('href="/static/')[1:]
        if part.split('"')[0].endswith(".css")
    )
    assert hashed in manifest
    stylesheet = requests.get(f"{url}/static/{hashed}", headers=PROXY, timeout=5)
    assert stylesheet.status_code == 200
    assert "max-age=315360000" in stylesheet.headers["Cache-Control"]
    assert "immutable" in stylesheet.headers["Cache-Control"]

    # The access log names the client the proxy saw, and never a cookie.
    requests.get(f"{url}/healthz", headers={**PROXY, "Cookie": "sessionid=canary-cookie"},
                 timeout=5)  # fmt: skip
    time.sleep(0.5)
    text = log.read_text()
    assert '10.0.0.9 "GET /healthz HTTP/1.1" 200' in text
    assert "canary-cookie" not in text


def test_plain_http_is_sent_to_https(served):
    url, _, _ = served
    answer = requests.get(
        f"{url}/accounts/login/", headers={"Host": "portal.example.net"}, allow_redirects=False,
        timeout=5,
    )  # fmt: skip
    assert answer.status_code == 301
    assert answer.headers["Location"] == "https://portal.example.net/accounts/login/"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAILDESK_WEB_PROCESSES", "many"),
        ("MAILDESK_WEB_THREADS", "0"),
        ("MAILDESK_WEB_TIMEOUT", "-5"),
    ],
)
def test_a_bad_setting_stops_gunicorn_with_a_message(tmp_path, variable, value):
    environment = production(tmp_path, MAILDESK_BIND=f"127.0.0.1:{free_port()}",
                             **{variable: value})  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "portal.wsgi"],
        cwd=PROJECT_DIR, env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{variable} must be a whole number of at least 1, not {value!r}" in output
    assert "Traceback" not in output
