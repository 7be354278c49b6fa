"""What does handing an approved request to the broker add to the approver's wait?

    python -m bench.approval [--quick]

Two gunicorn servers run side by side with the production configuration
(deploy/gunicorn.conf.py) on one database and one Redis: the portal as deployed, and the same
portal with publishing stubbed (bench/wsgi_stub_publish.py). An approver signs in to both, and
approves pending requests over HTTP, alternating between them, so that both see the same
machine. Reported: the p95 of the approve POST on each, and their ratio (target <= 1.2).
"""

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.environment import production_environment
from bench.measure import median, percentile, verdict
from chaos.harness import DOMAIN, USER_PASSWORD, Environment

TARGET = 1.2
WARM_UP = 20  # approvals not timed, of both servers together
# What the reverse proxy in front of gunicorn would add: TLS ended there, the client's address.
PROXY_HEADERS = {"Host": "localhost", "X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1"}
_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Browser:
    """A signed-in person over plain HTTP behind a pretend TLS proxy.

    The portal's cookies are Secure (production settings), so requests' own cookie jar would
    not send them over http://; they are kept and sent here instead.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.cookies: dict[str, str] = {}

    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {
            **PROXY_HEADERS,
            "Referer": f"https://localhost{path}",
            "Cookie": "; ".join(f"{name}={value}" for name, value in self.cookies.items()),
        }
        answer = self.session.request(
            method, self.base_url + path, headers=headers, allow_redirects=False, timeout=30,
            **kwargs,
        )  # fmt: skip
        self.cookies.update(answer.cookies.get_dict())
        self.session.cookies.clear()
        return answer

    def token(self, path: str) -> str:
        answer = self._send("GET", path)
        found = _TOKEN.search(answer.text)
        if answer.status_code != 200 or found is None:
            raise RuntimeError(f"GET {path} answered {answer.status_code} without a form")
        return found.group(1)

    def sign_in(self, username: str, password: str) -> None:
        token = self.token("/accounts/login/")
        answer = self._send(
            "POST", "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        )  # fmt: skip
        if answer.status_code != 302:
            raise RuntimeError(f"{username} could not sign in ({answer.status_code})")

    def approve(self, code: str, token: str) -> float:
        """Seconds the approve POST took; fails unless the portal approved."""
        started = time.perf_counter()
        answer = self._send(
            "POST", f"/requests/{code}/approve/", data={"csrfmiddlewaretoken": token}
        )
        seconds = time.perf_counter() - started
        if answer.status_code != 302:
            raise RuntimeError(f"approving {code} answered {answer.status_code}")
        return seconds


def approve_alternating(env: Environment, servers: dict[str, str], count: int) -> dict:
    from apps.provisioning.models import ProvisioningRequest

    ids = env.submit_and_approve([f"approval{n}@{DOMAIN}" for n in range(count)], approve=False)
    codes = list(ProvisioningRequest.objects.filter(pk__in=ids).order_by("pk").values_list(
        "code", flat=True))  # fmt: skip
    browsers = {name: Browser(url) for name, url in servers.items()}
    tokens = {}
    for name, browser in browsers.items():
        browser.sign_in("bob", USER_PASSWORD)
        tokens[name] = browser.token(f"/requests/{codes[0]}/")
    timings: dict[str, list[float]] = {name: [] for name in servers}
    names = list(servers)
    for number, code in enumerate(codes):
        # Alternate which server goes first in each pair, so neither always follows the other.
        name = names[(number + number // 2) % 2]
        seconds = browsers[name].approve(code, tokens[name])
        # The first approvals of each gunicorn process open its connections (PostgreSQL, and
        # Redis on the real side): the steady state is what an approver waits for.
        if number >= WARM_UP:
            timings[name].append(seconds)
    queued = ProvisioningRequest.objects.filter(
        pk__in=ids, status=ProvisioningRequest.Status.QUEUED
    ).count()
    if queued != count:
        raise RuntimeError(f"only {queued} of {count} requests were approved")
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer approvals (a smoke run)")
    args = parser.parse_args(argv)
    count = 80 if args.quick else 420
    started = time.monotonic()
    print("Approval benchmark (gunicorn, production settings; side by side in this run)\n")
    with production_environment(Path(tempfile.mkdtemp(prefix="maildesk-bench-"))) as env:
        from django.core.management import call_command

        call_command("collectstatic", interactive=False, verbosity=0)
        servers = {
            "real publish": env.start_web(),
            "publish stubbed": env.start_web(wsgi="bench.wsgi_stub_publish"),
        }
        timings = approve_alternating(env, servers, count)
    real, stubbed = timings["real publish"], timings["publish stubbed"]
    print(
        f"{count - WARM_UP} approve POSTs over HTTP (after {WARM_UP} to warm up), alternating "
        "between the two servers"
    )
    for name, values in timings.items():
        print(
            f"   {name:16} median {median(values) * 1000:6.1f} ms   p95 "
            f"{percentile(values, 0.95) * 1000:6.1f} ms"
        )
    ratio = percentile(real, 0.95) / percentile(stubbed, 0.95)
    print(f"   p95 real / stubbed = {ratio:.2f} (target <= {TARGET}: {verdict(ratio <= TARGET)})")
    print(f"\nApproval benchmark done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
