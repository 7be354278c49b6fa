"""`iredadmin_check` and `iredadmin_emulator`, run as an operator runs them."""

import os
import socket
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from apps.iredadmin.client import IRedAdminClient
from apps.iredadmin.emulator import LEGACY
from apps.iredadmin.errors import TransientError
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.helpers import free_port

PROJECT_DIR = Path(__file__).resolve().parents[2]


def run_check(settings, server_url: str, password: str = ADMIN_PASSWORD) -> tuple[int, str, str]:
    settings.IREDADMIN = {
        **settings.IREDADMIN,
        "URL": server_url,
        "USERNAME": ADMIN_USERNAME,
        "PASSWORD": password,
        "TIMEOUT": 2.0,
    }
    out, err = StringIO(), StringIO()
    try:
        call_command("iredadmin_check", stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


class TestIredadminCheck:
    def test_it_reports_a_working_server(self, settings, emulator_server):
        emulator_server.emulator.add_domain("example.com")

        status, out, _ = run_check(settings, emulator_server.url)

        assert status == 0
        assert "login works (current API dialect" in out
        assert "1 domain(s) visible" in out
        assert "is a global admin" in out
        assert emulator_server.emulator.stats()["logins"] == 1

    def test_it_explains_what_a_legacy_server_cannot_do(self, settings, make_emulator):
        status, out, _ = run_check(settings, make_emulator(LEGACY).url)

        assert status == 0
        assert "legacy" in out
        assert "cannot read accounts back" in out

    def test_it_names_the_setting_to_fix_for_a_wrong_password(self, settings, emulator_server):
        status, _, err = run_check(settings, emulator_server.url, password="Wrong-Passw0rd!")

        assert status == 1
        assert "IREDADMIN_PASSWORD" in err
        assert "INVALID_CREDENTIALS" in err
        assert "Wrong-Passw0rd!" not in err

    def test_it_says_when_no_password_is_configured(self, settings, emulator_server):
        status, _, err = run_check(settings, emulator_server.url, password="")

        assert status == 1
        assert "IREDADMIN_PASSWORD_FILE" in err
        assert emulator_server.emulator.stats()["requests"] == 0

    def test_it_says_when_the_server_cannot_be_reached(self, settings, make_emulator):
        server = make_emulator()
        url = server.url
        server.stop()

        status, _, err = run_check(settings, url)

        assert status == 1
        assert "could not connect" in err
        assert "Check IREDADMIN_URL" in err

    def test_it_says_when_the_api_is_disabled(self, settings, emulator_server):
        emulator_server.emulator.configure(api_enabled=False)

        status, _, err = run_check(settings, emulator_server.url)

        assert status == 1
        assert "ENABLE_RESTFUL_API" in err

    def test_it_refuses_a_url_that_is_not_http(self, settings):
        status, _, err = run_check(settings, "ftp://mail.example.com/iredadmin/api")

        assert status == 1
        assert "not usable" in err


def manage(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class TestIredadminEmulatorCommand:
    def test_it_serves_the_api_to_the_real_client(self, tmp_path):
        password_file = tmp_path / "admin-password"
        password_file.write_text(ADMIN_PASSWORD + "\n")
        port = free_port()
        process = manage(
            "iredadmin_emulator",
            "--port",
            str(port),
            "--dialect",
            "legacy",
            "--admin-username",
            ADMIN_USERNAME,
            "--admin-password-file",
            str(password_file),
            "--domain",
            "example.com",
        )
        try:
            client = IRedAdminClient(
                f"http://127.0.0.1:{port}/iredadmin/api", ADMIN_USERNAME, ADMIN_PASSWORD, timeout=2
            )
            deadline = time.monotonic() + 20
            while True:
                try:
                    client.create_user("jane@example.com", password="Mailb0x-Pass!")
                    break
                except TransientError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.2)
            assert client.dialect == "legacy"
        finally:
            process.terminate()
            out, _ = process.communicate(timeout=10)
        assert f"serving http://127.0.0.1:{port}/iredadmin/api" in out
        assert ADMIN_PASSWORD not in out

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            (["--admin-username", "not-an-email"], "must be an email address"),
            (["--domain", "not a domain"], "is not a valid domain name"),
            (["--latency", "-1"], "--latency cannot be negative"),
            (["--admin-password-file", "/nonexistent/file"], "Cannot read --admin-password-file"),
        ],
    )
    def test_it_refuses_bad_arguments_with_a_sentence(self, arguments, message):
        process = manage(
            "iredadmin_emulator",
            "--port",
            str(free_port()),
            *arguments,
            IREDADMIN_PASSWORD="Adm1n-Secret!",
        )
        _, err = process.communicate(timeout=30)

        assert process.returncode == 1
        assert message in err
        assert "Traceback" not in err

    def test_it_refuses_to_start_without_an_admin_password(self):
        process = manage("iredadmin_emulator", "--port", str(free_port()), IREDADMIN_PASSWORD="")
        _, err = process.communicate(timeout=30)

        assert process.returncode == 1
        assert "No admin password" in err

    def test_it_says_when_the_port_is_taken(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            process = manage(
                "iredadmin_emulator", "--port", str(port), IREDADMIN_PASSWORD="Adm1n-Secret!"
            )
            _, err = process.communicate(timeout=30)

        assert process.returncode == 1
        assert f"Cannot listen on 127.0.0.1:{port}" in err
        assert "Traceback" not in err


def test_it_says_when_the_account_is_not_a_global_admin(settings, emulator_server):
    emulator_server.emulator.add_admin("helper@admin.example.net", "Helper-Pass1!",
                                       global_admin=False)  # fmt: skip
    settings.IREDADMIN = {
        **settings.IREDADMIN,
        "URL": emulator_server.url,
        "USERNAME": "helper@admin.example.net",
        "PASSWORD": "Helper-Pass1!",
    }
    out, err = StringIO(), StringIO()

    with pytest.raises(SystemExit):
        call_command("iredadmin_check", stdout=out, stderr=err)

    assert "login works" in out.getvalue()
    assert "global admin" in err.getvalue()
    assert "PERMISSION_DENIED" in err.getvalue()


def test_the_emulator_refuses_a_public_address_without_allow_remote():
    process = manage(
        "iredadmin_emulator", "--host", "0.0.0.0", "--port", str(free_port()),  # noqa: S104
        IREDADMIN_PASSWORD="Adm1n-Secret!",
    )  # fmt: skip
    _, err = process.communicate(timeout=30)

    assert process.returncode == 1
    assert "--allow-remote" in err
