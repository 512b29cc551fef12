"""
How the live overview copes with a big partition: starts C{ecs-demo
--detectors N} on free loopback ports, opens the overview in headless
Chromium, configures the partition (tag demo, auto) and prints the page's
load time, the main thread's long tasks (over 50 ms) while the events
pour in, and how long after the API the page showed QA_Active.

    .venv/bin/python bench/gui_live.py [--detectors 1000]

A benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import _new_driver, free_port  # noqa: E402

OBSERVE = """
window.__long = [];
new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__long.push(e.duration); })
  .observe({type: "longtask", buffered: false});
window.__flushes = [];
const live = window.ECS_LIVE;
const flush = live.flush.bind(live);
live.flush = () => {
  const events = live.queue.length, start = performance.now();
  flush();
  window.__flushes.push([events, performance.now() - start]);
};
"""


def api(base: str, method: str, path: str, token: str | None = None, body: object = None) -> tuple[int, object]:
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def until(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out: {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--detectors", type=int, default=1000)
    args = parser.parse_args()
    password = "bench-" + secrets.token_hex(6)
    tmp = Path(tempfile.mkdtemp(prefix="ecs-bench-gui-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, ECS_ADMIN_PASSWORD=password)
    demo = subprocess.Popen(
        [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "ecs-demo", "--port", str(port),
         "--registry-port", str(free_port()), "--state-dir", str(tmp / "var"), "--detectors", str(args.detectors)],
        cwd=tmp, env=env, stdout=open(tmp / "demo.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    driver = None
    try:
        until(lambda: b"ECS web:" in (tmp / "demo.log").read_bytes(), 120, "demo web")
        _, login = api(base, "POST", "/api/login", body={"username": "admin", "password": password, "kind": "api"})
        token = login["token"]  # type: ignore[index]
        total = 9 + args.detectors

        def ready() -> bool:
            code, body = api(base, "GET", "/api/partitions/demo", token)
            return code == 200 and body["state"] == "Idle" and len(body["systems"]) == total and all(  # type: ignore[index]
                s["connected"] for s in body["systems"])  # type: ignore[index]

        until(ready, 300, "every system connected")
        driver = _new_driver(tempfile.mkdtemp(prefix="ecs-bench-chromium-"), (1400, 1000))
        driver.get(base + "/login")
        driver.find_element("id", "username").send_keys("admin")
        driver.find_element("id", "password").send_keys(password)
        driver.find_element("id", "login-button").click()
        until(lambda: driver.execute_script("return location.pathname === '/'"), 30, "logged in")
        started = time.monotonic()
        until(lambda: driver.execute_script(
            f"return document.querySelectorAll('#partitions tr[data-system]').length >= {total}"), 60, "rows")
        print(f"overview with {total} systems rendered in {time.monotonic() - started:.2f} s after login")
        driver.execute_script(OBSERVE)
        api(base, "POST", "/api/partitions/demo/control", token)
        code, body = api(base, "POST", "/api/partitions/demo/configure", token, {"tag": "demo", "auto": True})
        if code != 200:
            raise SystemExit(f"configure refused: {code} {body}")
        sent = time.monotonic()
        until(lambda: api(base, "GET", "/api/partitions/demo", token)[1]["state"] == "QA_Active", 300, "QA_Active")  # type: ignore[index]
        api_done = time.monotonic()
        until(lambda: driver.execute_script(
            "return document.querySelector('#partitions .partition-state').textContent === 'QA_Active'"), 60, "page")
        page_done = time.monotonic()
        active = driver.execute_script(
            "return [...document.querySelectorAll('#partitions td.col-state')].filter(c => c.textContent === 'Active').length")
        long = driver.execute_script("return window.__long")
        print(f"configure to QA_Active: API {api_done - sent:.2f} s, page {page_done - sent:.2f} s "
              f"(page {max(0.0, page_done - api_done):.2f} s behind the API poll); rows Active: {active} of {total}")
        flushes = driver.execute_script("return window.__flushes")
        slowest = max(flushes, key=lambda f: f[1], default=[0, 0.0])
        print(f"frames that applied events: {len(flushes)}, events {sum(f[0] for f in flushes)}, "
              f"slowest {slowest[1]:.1f} ms ({slowest[0]} events), total {sum(f[1] for f in flushes):.0f} ms")
        print(f"long tasks (>50 ms) during configure: {len(long)}, longest {max(long, default=0):.0f} ms, "
              f"total {sum(long):.0f} ms")
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(demo.pid, signal.SIGTERM)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
