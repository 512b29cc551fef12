"""
The browser test harness: a real C{ecs-demo} process and headless
Chromium driven by Selenium.

Selenium's API blocks, so every browser step runs in a thread
(L{Browser.run}, C{deferToThread}) while the reactor stays free; waits are
explicit (C{WebDriverWait} on a condition), never sleeps.  The demo is a
real process on free loopback ports (L{Demo.start}), the drivers and the
demo are always stopped in cleanups.

Use::

    class MyTests(TestCase):
        timeout = 120

        def setUp(self) -> None:
            skip_without_browser()

        async def test_x(self) -> None:
            demo = await Demo.start(self)
            await demo.add_user("shifter", ["operator"])
            browser = await Browser.open(self, demo, "shifter")
            await browser.get("/partitions/demo")
            await browser.wait_text("#control-holder", "nobody")

C{ECS_SCREENSHOTS=docs/screenshots} makes L{Browser.screenshot} write
there (the tests that take the documentation's screenshots use it);
otherwise screenshots go to the test's temporary directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from twisted.internet import reactor, task, threads
from twisted.trial.unittest import SkipTest

from tests.procs import ROOT, call_api, free_port, spawn, tool

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ADMIN_PASSWORD = "admin-" + secrets.token_hex(8)
T = TypeVar("T")


def browser_missing() -> str | None:
    """Why browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (Debian packages chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed in this environment"
    return None


def skip_without_browser() -> None:
    """Raise SkipTest when Chromium, chromedriver or selenium is missing."""
    reason = browser_missing()
    if reason is not None:
        raise SkipTest(reason)


def screenshot_dir(testcase: Any) -> Path:
    """C{$ECS_SCREENSHOTS} (relative to the repository), or a temporary directory of the test."""
    wanted = os.environ.get("ECS_SCREENSHOTS")
    if wanted:
        path = Path(wanted)
        path = path if path.is_absolute() else ROOT / path
    else:
        path = Path(testcase.mktemp()).resolve() / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def slow_subsystems(directory: Path, durations: dict[str, float]) -> Path:
    """A copy of C{etc/subsystems.yaml} with other simulated step durations (seconds per step)."""
    data = yaml.safe_load((ROOT / "etc" / "subsystems.yaml").read_text(encoding="utf-8"))
    for group in ("detector_types", "global_systems"):
        for name, entry in data[group].items():
            if name in durations:
                entry["action"]["duration"] = durations[name]
            entry["command_timeout"] = max(float(entry.get("command_timeout", 5.0)), durations.get(name, 0) * 3)
    path = directory / "subsystems.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


class Demo:
    """A running C{twistd -n ecs-demo} on free loopback ports, stopped in cleanup."""

    def __init__(self, base: str, state_dir: Path, proc: Any, transport: Any) -> None:
        self.base = base
        self.state_dir = state_dir
        self.proc = proc
        self.transport = transport
        self.passwords: dict[str, str] = {"admin": ADMIN_PASSWORD}
        self._tokens: dict[str, str] = {}

    @classmethod
    async def start(cls, testcase: Any, detectors: int = 0, subsystems: Path | None = None,
                    args: list[str] | None = None) -> Demo:
        """Start a demo for C{testcase}; fires once its web answers and the partition is Idle with every system
        connected."""
        tmp = Path(testcase.mktemp()).resolve()
        tmp.mkdir(parents=True)
        port = free_port()
        argv = [tool("twistd"), "-n", "--pidfile=", "ecs-demo", "--port", str(port),
                "--registry-port", str(free_port()), "--state-dir", str(tmp / "var"),
                "--detectors", str(detectors)]
        if subsystems is not None:
            argv += ["--subsystems", str(subsystems)]
        argv += args or []
        proc, transport = spawn(testcase, "ecs-demo", argv, cwd=str(tmp), env={"ECS_ADMIN_PASSWORD": ADMIN_PASSWORD})
        await proc.wait_for(r"ECS web: http://127\.0\.0\.1:\d+/", timeout=60)
        demo = cls(f"http://127.0.0.1:{port}", tmp / "var", proc, transport)
        await demo.until(lambda p: p["state"] == "Idle" and len(p["systems"]) == 9 + detectors
                         and all(s["connected"] for s in p["systems"]), what="demo ready")
        return demo

    @property
    def pid(self) -> int:
        """The demo (ECA) process id."""
        return int(self.transport.pid)

    async def api(self, method: str, path: str, user: str | None = "admin", body: Any = None) -> tuple[int, Any]:
        """Call the JSON API as C{user} (a bearer token; None: anonymous)."""
        return await call_api(self.base, method, path, await self.token(user) if user is not None else None, body)

    async def token(self, user: str) -> str:
        """An API token of C{user} (logged in once)."""
        if user not in self._tokens:
            code, body = await call_api(self.base, "POST", "/api/login",
                                        body={"username": user, "password": self.passwords[user], "kind": "api"})
            if code != 200:
                raise AssertionError(f"login of {user}: {code} {body}")
            self._tokens[user] = body["token"]
        return self._tokens[user]

    async def add_user(self, name: str, roles: list[str]) -> str:
        """Create a user through the API as admin; answers its password."""
        password = "pw-" + secrets.token_hex(8)
        code, body = await self.api("POST", "/api/users", body={"username": name, "password": password, "roles": roles})
        if code != 200:
            raise AssertionError(f"creating user {name}: {code} {body}")
        self.passwords[name] = password
        return password

    async def until(self, predicate: Callable[[dict[str, Any]], bool], partition: str = "demo",
                    timeout: float = 60.0, what: str = "condition") -> dict[str, Any]:
        """Poll C{GET /api/partitions/<partition>} until C{predicate} holds."""
        body: Any = None
        for _ in range(int(timeout / 0.1)):
            code, body = await self.api("GET", f"/api/partitions/{partition}")
            if code == 200 and predicate(body):
                return dict(body)
            await task.deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"{what}: not reached in {timeout} s; last: {body}; demo output:\n"
                             + "\n".join(self.proc.lines[-40:]))

    def children(self) -> dict[str, int]:
        """The agents the demo launched: C{{"STS": pid, "pca-demo": pid, ...}} from /proc (by parent pid)."""
        found: dict[str, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != self.pid:
                continue
            words = [a.decode("utf-8", "replace") for a in argv]
            name = words[words.index("--id") + 1] if "--id" in words else (words[3] if len(words) > 3 else entry.name)
            if "ecs-pca" in words:
                name = "pca-" + name
            found[name] = int(entry.name)
        return found


class Browser:
    """One headless Chromium session (its own profile), quit in cleanup."""

    def __init__(self, driver: Any, demo: Demo, user: str | None) -> None:
        self.driver = driver
        self.demo = demo
        self.user = user

    @classmethod
    async def open(cls, testcase: Any, demo: Demo, user: str | None = "admin",
                   size: tuple[int, int] = (1400, 1000)) -> Browser:
        """A new browser, logged in as C{user} through the login page (None: not logged in)."""
        skip_without_browser()
        profile = tempfile.mkdtemp(prefix="ecs-chromium-")
        testcase.addCleanup(shutil.rmtree, profile, True)
        driver = await threads.deferToThread(_new_driver, profile, size)
        browser = cls(driver, demo, user)
        testcase.addCleanup(threads.deferToThread, driver.quit)
        if user is not None:
            await browser.login(user, demo.passwords[user])
        return browser

    def run(self, f: Callable[..., T], *args: Any) -> Any:
        """Run a blocking selenium call in a thread (a Deferred of its result)."""
        return threads.deferToThread(f, *args)

    async def get(self, path: str) -> None:
        """Open a page of the demo and wait until it has loaded."""
        await self.run(self.driver.get, self.demo.base + path)

    async def login(self, user: str, password: str) -> None:
        """Log in through the login form; wait for the overview."""
        from selenium.webdriver.common.by import By

        def steps() -> None:
            d = self.driver
            d.get(self.demo.base + "/login")
            d.find_element(By.ID, "username").send_keys(user)
            d.find_element(By.ID, "password").send_keys(password)
            d.find_element(By.ID, "login-button").click()
            self._wait(lambda d: d.execute_script(
                "return location.pathname !== '/login' && !!document.getElementById('user-name')"), 20, "logged in")

        await self.run(steps)

    def _wait(self, condition: Callable[[Any], Any], timeout: float, what: str) -> Any:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        # A live page replaces elements (options of a select, rows) while we
        # look at them: an element gone stale or missing means "not yet".
        ignored = (NoSuchElementException, StaleElementReferenceException)
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1, ignored_exceptions=ignored).until(condition)
        except TimeoutException:
            raise AssertionError(f"browser ({self.user}): {what} not seen within {timeout} s at "
                                 f"{self.driver.current_url}") from None

    async def wait(self, condition: Callable[[Any], Any], timeout: float = 30.0, what: str = "condition") -> Any:
        """Wait until C{condition(driver)} is truthy (fires with it)."""
        return await self.run(self._wait, condition, timeout, what)

    async def wait_js(self, script: str, timeout: float = 30.0, what: str | None = None) -> Any:
        """Wait until a JavaScript expression (C{return ...}) is truthy."""
        return await self.wait(lambda d: d.execute_script(script), timeout, what or script)

    async def wait_text(self, css: str, text: str, timeout: float = 30.0) -> str:
        """Wait until the element C{css} exists and its text contains C{text}."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.common.by import By

        def seen(d: Any) -> str | bool:
            try:
                shown = d.find_element(By.CSS_SELECTOR, css).text
            except (NoSuchElementException, StaleElementReferenceException):
                return False
            return shown if text in shown else False

        return await self.wait(seen, timeout, f"text {text!r} in {css}")  # type: ignore[no-any-return]

    async def text(self, css: str) -> str:
        """The visible text of the element C{css}."""
        from selenium.webdriver.common.by import By

        return await self.run(lambda: self.driver.find_element(By.CSS_SELECTOR,
                                                               css).text)  # type: ignore[no-any-return]

    async def attribute(self, css: str, name: str) -> str | None:
        """An attribute (or property) of the element C{css}."""
        from selenium.webdriver.common.by import By

        return await self.run(lambda: self.driver.find_element(By.CSS_SELECTOR,
                                                               css).get_attribute(name))  # type: ignore[no-any-return]

    async def click(self, css: str, timeout: float = 30.0) -> None:
        """Wait until C{css} is there and enabled, then click it."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec

        def steps() -> None:
            self._wait(ec.element_to_be_clickable((By.CSS_SELECTOR, css)), timeout, f"{css} clickable")
            self.driver.find_element(By.CSS_SELECTOR, css).click()

        await self.run(self._again_if_stale, steps)

    async def open_dialog(self, opener: str, dialog: str) -> None:
        """Click C{opener} and wait until the dialog with id C{dialog} is open."""
        await self.click(opener)
        await self.wait_js(f"return document.getElementById({dialog!r}).open", what=f"dialog #{dialog} open")

    async def close_dialog(self, button: str, dialog: str) -> None:
        """Click C{button} in the dialog with id C{dialog} and wait until it is closed."""
        await self.click(button)
        await self.wait_js(f"return !document.getElementById({dialog!r}).open", what=f"dialog #{dialog} closed")

    async def select(self, css: str, value: str) -> None:
        """Choose the option with C{value} in the select C{css} (fires its change event)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        def steps() -> None:
            self._wait(lambda d: any(o.get_attribute("value") == value for o in
                                     d.find_element(By.CSS_SELECTOR, css).find_elements(By.TAG_NAME, "option")),
                       30, f"option {value!r} in {css}")
            Select(self.driver.find_element(By.CSS_SELECTOR, css)).select_by_value(value)

        await self.run(self._again_if_stale, steps)

    @staticmethod
    def _again_if_stale(steps: Callable[[], None], attempts: int = 3) -> None:
        """Run C{steps}; once more if the page replaced the element in between."""
        from selenium.common.exceptions import StaleElementReferenceException

        for attempt in range(attempts):
            try:
                steps()
                return
            except StaleElementReferenceException:
                if attempt == attempts - 1:
                    raise

    async def js(self, script: str, *args: Any) -> Any:
        """Run JavaScript in the page (C{return ...} for a value)."""
        return await self.run(self.driver.execute_script, script, *args)

    async def js_async(self, script: str, *args: Any) -> Any:
        """Run asynchronous JavaScript: the script calls C{arguments[arguments.length - 1](value)}."""
        return await self.run(self.driver.execute_async_script, script, *args)

    async def screenshot(self, directory: Path, name: str) -> Path:
        """Save a PNG of the window as C{directory/name}."""
        path = directory / name
        ok = await self.run(self.driver.save_screenshot, str(path))
        if not ok:
            raise AssertionError(f"screenshot {path} not written")
        return path

    async def console_errors(self) -> list[str]:
        """Severe messages of the page's console (script errors, CSP refusals), without
        the HTTP errors the browser logs for refused requests (the page shows those)."""
        entries = await self.run(self.driver.get_log, "browser")
        return [e["message"] for e in entries
                if e.get("level") == "SEVERE" and "Failed to load resource" not in e["message"]]


def _new_driver(profile: str, size: tuple[int, int]) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


__all__ = [
    "ADMIN_PASSWORD",
    "Browser",
    "Demo",
    "browser_missing",
    "free_port",
    "screenshot_dir",
    "skip_without_browser",
    "slow_subsystems",
]
