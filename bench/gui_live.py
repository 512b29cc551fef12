"""
How the live pages cope with a big partition: starts C{ecs-demo
--detectors N} on free loopback ports, opens the overview (or the monitor,
C{--page monitor}) in headless Chromium, configures the partition (tag
demo, auto) C{--runs} times (aborting back to Idle in between) and prints,
for each run and as medians:

 - the time from the configure request to QA_Active in the API and on the
   page, and how far the page was behind the API poll;
 - the frames that applied events (live.js's flush: count, events, slowest,
   total script time);
 - the main thread's long tasks (over 50 ms, C{PerformanceObserver}):
   count, total, longest;
 - the renderer's own counters over the run (DevTools C{Performance.getMetrics}):
   layouts and style recalculations with their durations, script and task
   time;
 - the demo's CPU time over the run (the simulation competing for the 2
   cores).

C{--trace} also records a DevTools trace of the run (over the browser's
DevTools socket: chromedriver cannot pass trace events on) and splits the
long tasks into layout, paint, pre-paint, style and script, with the CPU
time of each task beside its wall time (a task far longer than its CPU time
waited for a core).

    .venv/bin/python bench/gui_live.py [--detectors 1000] [--page monitor] [--runs 3] [--trace]

A benchmark, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import _new_driver, free_port  # noqa: E402

OBSERVE = """
window.__long = [];
if (!window.__observing) {
  window.__observing = true;
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__long.push(e.duration); })
    .observe({type: "longtask", buffered: false});
  const live = window.ECS_LIVE;
  const flush = live.flush.bind(live);
  live.flush = () => {
    const events = live.queue.length, start = performance.now();
    flush();
    window.__flushes.push([events, performance.now() - start]);
  };
}
window.__flushes = [];
"""
METRICS = ("LayoutCount", "LayoutDuration", "RecalcStyleCount", "RecalcStyleDuration", "ScriptDuration", "TaskDuration")
TRACE_CATEGORIES = [
    "devtools.timeline", "disabled-by-default-devtools.timeline", "v8", "blink", "toplevel", "__metadata"
]
# Trace events a long task's time is split into (the outermost of each kind).
PHASES = {"Layout": "layout", "UpdateLayoutTree": "style", "PrePaint": "prepaint", "Paint": "paint",
          "Layerize": "paint", "Commit": "paint", "FunctionCall": "script", "EventDispatch": "script",
          "FireAnimationFrame": "script", "TimerFire": "script", "V8.GC_MC_BACKGROUND_MARKING": "gc",
          "MajorGC": "gc", "MinorGC": "gc"}


def api(base: str, method: str, path: str, token: str | None = None, body: object = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, method=method, data=data)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out: {what}")


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the processes of group C{pgid}."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Tracer:
    """A DevTools trace of the whole browser over its own DevTools socket."""

    def __init__(self, driver: Any) -> None:
        import websocket  # websocket-client, installed with selenium

        address = driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
        with urllib.request.urlopen(f"http://{address}/json/version", timeout=10) as answer:
            url = json.load(answer)["webSocketDebuggerUrl"]
        self.socket = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def _call(self, method: str, params: dict[str, Any] | None = None) -> None:
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params or {}}))
        while json.loads(self.socket.recv()).get("id") != number:
            pass

    def start(self) -> None:
        self.events = []
        self._call("Tracing.start", {"transferMode": "ReportEvents",
                                     "traceConfig": {"includedCategories": TRACE_CATEGORIES}})

    def stop(self) -> list[dict[str, Any]]:
        """End the trace; its events."""
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": "Tracing.end", "params": {}}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("method") == "Tracing.dataCollected":
                self.events.extend(message["params"]["value"])
            elif message.get("method") == "Tracing.tracingComplete":
                return self.events

    def close(self) -> None:
        self.socket.close()


def long_task_phases(events: list[dict[str, Any]]) -> dict[str, float]:
    """Split the renderer main thread's tasks over 50 ms: ms per phase, summed,
    plus C{wall} and C{cpu} (the tasks' own wall and thread time) and C{count}."""
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"}
    threads: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and names.get((e.get("pid"), e.get("tid"))) == "CrRendererMain":
            threads[(e["pid"], e["tid"])].append(e)
    result: dict[str, float] = defaultdict(float, count=0.0, wall=0.0, cpu=0.0)
    if not threads:
        return result
    main = sorted(max(threads.values(), key=len), key=lambda e: (e["ts"], -e.get("dur", 0)))
    tasks = [e for e in main if e["name"] == "ThreadControllerImpl::RunTask" and e.get("dur", 0) > 50_000]
    for task in tasks:
        start, end = task["ts"], task["ts"] + task["dur"]
        result["count"] += 1
        result["wall"] += task["dur"] / 1000
        result["cpu"] += task.get("tdur", 0) / 1000
        ends: dict[str, float] = {}  # counts the outermost event of each phase only
        for e in (e for e in main if start <= e["ts"] < end and e["name"] in PHASES):
            phase = PHASES[e["name"]]
            if e["ts"] < ends.get(phase, -1.0):
                continue
            ends[phase] = e["ts"] + e.get("dur", 0)
            result[phase] += e.get("dur", 0) / 1000
    return result


def one_run(driver: Any, base: str, token: str, demo_pid: int, tracer: Tracer | None) -> dict[str, float]:
    """Configure, wait for QA_Active in the API and on the page, measure; abort back to Idle."""
    state = lambda: api(base, "GET", "/api/partitions/demo", token)[1]["state"]  # noqa: E731
    driver.execute_script(OBSERVE)
    if tracer:
        tracer.start()
    before = {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    cpu = group_cpu(demo_pid)
    code, body = api(base, "POST", "/api/partitions/demo/configure", token, {"tag": "demo", "auto": True})
    if code != 200:
        raise SystemExit(f"configure refused: {code} {body}")
    sent = time.monotonic()
    until(lambda: state() == "QA_Active", 300, "QA_Active")
    api_done = time.monotonic()
    until(lambda: driver.execute_script(
        "return document.querySelector('#partitions .partition-state').textContent === 'QA_Active'"
        " && window.ECS_LIVE.queue.length === 0"),
        60, "page")
    page_done = time.monotonic()
    time.sleep(1.0)  # the last frames
    after = {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    out = {"api": api_done - sent, "page": page_done - sent, "behind": max(0.0, page_done - api_done),
           "demo_cpu": group_cpu(demo_pid) - cpu}
    for name in METRICS:
        out[name] = (after[name] - before[name]) * (1000 if name.endswith("Duration") else 1)
    long = driver.execute_script("return window.__long")
    out.update(long_count=len(long), long_total=sum(long), long_max=max(long, default=0.0))
    flushes = driver.execute_script("return window.__flushes")
    out.update(frames=len(flushes), events=sum(f[0] for f in flushes),
               frame_max=max((f[1] for f in flushes), default=0.0), frame_total=sum(f[1] for f in flushes))
    out["active"] = driver.execute_script(
        "return [...document.querySelectorAll('#partitions td.col-state')]"
        ".filter(c => c.textContent === 'Active').length"
    )
    if tracer:
        out.update({"trace_" + k: v for k, v in long_task_phases(tracer.stop()).items()})
    api(base, "POST", "/api/partitions/demo/abort", token)
    until(lambda: state() in ("Idle", "Unconfigured"), 120, "back to Idle")
    until(lambda: driver.execute_script(
        "return document.querySelector('#partitions .partition-state').textContent !== 'QA_Active'"), 60, "page Idle")
    time.sleep(1.0)
    return out


def show(r: dict[str, float], total: int) -> str:
    text = (f"configure to QA_Active: API {r['api']:.2f} s, page {r['page']:.2f} s "
            f"({r['behind']:.2f} s behind the API poll); "
            f"rows Active {r['active']:.0f} of {total}\n"
            f"    frames with events {r['frames']:.0f} ({r['events']:.0f} events), slowest {r['frame_max']:.1f} ms, "
            f"script total {r['frame_total']:.0f} ms\n"
            f"    long tasks {r['long_count']:.0f}, total {r['long_total']:.0f} ms, longest {r['long_max']:.0f} ms\n"
            f"    renderer: layout {r['LayoutCount']:.0f}x {r['LayoutDuration']:.0f} ms, "
            f"style {r['RecalcStyleCount']:.0f}x {r['RecalcStyleDuration']:.0f} ms, "
            f"script {r['ScriptDuration']:.0f} ms, tasks {r['TaskDuration']:.0f} ms; "
            f"demo CPU {r['demo_cpu']:.2f} s")
    if "trace_count" in r:
        names = ("layout", "style", "prepaint", "paint", "script", "gc")
        phases = ", ".join(f"{p} {r.get('trace_' + p, 0.0):.0f}" for p in names)
        text += (f"\n    traced long tasks {r['trace_count']:.0f}: wall {r['trace_wall']:.0f} ms, "
                 f"own CPU {r['trace_cpu']:.0f} ms; ms in {phases}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--detectors", type=int, default=1000)
    parser.add_argument("--page", choices=("overview", "monitor"), default="overview")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trace", action="store_true", help="split the long tasks with a DevTools trace")
    args = parser.parse_args()
    password = "bench-" + secrets.token_hex(6)
    tmp = Path(tempfile.mkdtemp(prefix="ecs-bench-gui-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, ECS_ADMIN_PASSWORD=password)
    with open(tmp / "demo.log", "wb") as log:  # the child keeps its own copy of the descriptor
        demo = subprocess.Popen(
            [str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "ecs-demo", "--port", str(port),
             "--registry-port", str(free_port()), "--state-dir", str(tmp / "var"), "--detectors", str(args.detectors)],
            cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    driver = None
    tracer = None
    try:
        until(lambda: b"ECS web:" in (tmp / "demo.log").read_bytes(), 120, "demo web")
        _, login = api(base, "POST", "/api/login", body={"username": "admin", "password": password, "kind": "api"})
        token = login["token"]
        total = 9 + args.detectors

        def ready() -> bool:
            code, body = api(base, "GET", "/api/partitions/demo", token)
            return code == 200 and body["state"] == "Idle" and len(body["systems"]) == total and all(
                s["connected"] for s in body["systems"])

        until(ready, 300, "every system connected")
        driver = _new_driver(tempfile.mkdtemp(prefix="ecs-bench-chromium-"), (1400, 1000))
        driver.get(base + "/login")
        driver.find_element("id", "username").send_keys("admin")
        driver.find_element("id", "password").send_keys(password)
        driver.find_element("id", "login-button").click()
        until(lambda: driver.execute_script("return location.pathname === '/'"), 30, "logged in")
        if args.page == "monitor":
            driver.get(base + "/partitions/demo")
        started = time.monotonic()
        until(lambda: driver.execute_script(
            f"return document.querySelectorAll('#partitions tr[data-system]').length >= {total}"), 60, "rows")
        print(f"{args.page} with {total} systems rendered in {time.monotonic() - started:.2f} s")
        driver.execute_cdp_cmd("Performance.enable", {})
        if args.trace:
            tracer = Tracer(driver)
        api(base, "POST", "/api/partitions/demo/control", token)
        time.sleep(1.0)
        results = []
        for number in range(args.runs):
            results.append(one_run(driver, base, token, demo.pid, tracer))
            print(f"run {number + 1}: " + show(results[-1], total), flush=True)
        if len(results) > 1:
            median = {k: statistics.median(r.get(k, 0.0) for r in results) for k in set().union(*results)}
            print("median: " + show(median, total))
    finally:
        if tracer is not None:
            tracer.close()
        if driver is not None:
            driver.quit()
        os.killpg(demo.pid, signal.SIGTERM)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
