"""
The built wheel is all a new user needs (issue 10, item 2).

One test, real processes: a copy of the source tree is built into a wheel,
the wheel is installed into a fresh virtualenv (its dependencies come from
pip's cache or package index) and, with C{pip install --user}, under a
temporary user base; the source copy and the wheel are deleted; then, from an
unrelated directory, the installed C{twistd} lists the six plugins, the
installed package carries its data folders (C{ecs fsm check} passes on its
tables), and the installed C{ecs-demo} is logged into over HTTP, configured
to C{QA_Active} and reached through its SSH admin shell.

It is skipped only when pip failed for want of a package and a probe shows
pip cannot fetch any package from any of its sources (index, extra
indexes, find-links), or when the OpenSSH client is missing;
C{ECS_SKIP_INSTALL_TEST=1} skips it on purpose.  About 30-60 s.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.logger import Logger
from twisted.trial.unittest import SkipTest, TestCase

from tests.procs import ROOT, call_api, free_port, spawn

PLUGINS = ("ecs-eca", "ecs-pca", "ecs-detector", "ecs-global", "ecs-simhost", "ecs-demo")

#: What the source copy leaves out: environments, build and run leftovers.
SOURCE_IGNORED = (
    ".venv", ".git", "_trial_temp*", "*.egg-info", "build", "dist", "var", "__pycache__",
    "dropin.cache", ".mypy_cache", ".ruff_cache",
)

#: pip's words when a package could not be found in any of its sources.
_NOT_FOUND = re.compile(r"No matching distribution found|Could not find a version that satisfies")
#: What the probe fetches: the wheel's build requirement, which every source that can build it offers.
PROBE_REQUIREMENT = "setuptools>=68"

PASSWORD = "install-test-pass-1"
DATA_ROOT = "from ecs import paths; print(paths.data_root())"
POLL = 0.2


class InstalledPackageTests(TestCase):
    """Build the wheel, install it, delete the sources, use the installed demo."""

    timeout = 900
    _log = Logger()

    def setUp(self) -> None:
        if os.environ.get("ECS_SKIP_INSTALL_TEST"):
            raise SkipTest("ECS_SKIP_INSTALL_TEST is set")
        if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
            raise SkipTest("the OpenSSH client (ssh, ssh-keygen) is not installed: the shell cannot be reached")
        self.started = time.monotonic()
        # File work before the reactor's part of the test (a few MB, once).
        self.tmp = Path(self.mktemp()).resolve()
        self.tmp.mkdir()
        self.source = self.tmp / "source"
        shutil.copytree(ROOT, self.source, ignore=shutil.ignore_patterns(*SOURCE_IGNORED))

    def phase(self, name: str) -> None:
        """Note in the test log how long the test has run (the report's numbers)."""
        self._log.info("install test: {name} at {elapsed:.1f} s", name=name, elapsed=time.monotonic() - self.started)

    async def run_program(
        self, name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None
    ) -> tuple[int | None, str]:
        """Run C{argv} from another virtualenv's point of view; its exit code and output."""
        proc, _ = spawn(self, name, argv, cwd=str(cwd), env=env, isolated=True)
        code = await proc.ended
        return code, "\n".join(proc.lines)

    async def run_ok(self, name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
        """Run C{argv}; fail the test, with its output, unless it exits 0."""
        code, output = await self.run_program(name, argv, cwd, env)
        self.assertEqual(code, 0, f"{' '.join(argv)} exited {code}:\n{output[-4000:]}")
        return output

    async def pip(self, name: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        """
        A pip command that must succeed.  When it failed for want of a
        package, pip's sources are probed: if pip cannot fetch a build
        requirement (setuptools) from any of them either, the test is
        skipped with pip's words; otherwise the failure is the test's.
        """
        code, output = await self.run_program(name, argv, cwd, env)
        if code != 0 and _NOT_FOUND.search(output):
            probe = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                     "-d", str(cwd / "pip-probe"), PROBE_REQUIREMENT]
            probe_code, probe_output = await self.run_program("pip source probe", probe, cwd)
            if probe_code != 0:
                raise SkipTest(f"pip cannot reach any package source ({PROBE_REQUIREMENT} not found):\n"
                               f"{probe_output[-1500:]}")
        self.assertEqual(code, 0, f"{' '.join(argv)} exited {code}:\n{output[-4000:]}")

    async def test_wheel_installs_and_runs_the_demo(self) -> None:
        """From the wheel alone: six plugins, the data folders, and the demo configured to QA_Active via API and SSH."""
        tmp, source = self.tmp, self.source
        wheels = tmp / "wheels"
        # The absolute path: a bare name would be looked up on the index.
        await self.pip("pip wheel", [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                                     "-w", str(wheels), str(source)], tmp)
        (wheel,) = wheels.glob("ecs-*.whl")
        self.phase("wheel built")

        base = getattr(sys, "_base_executable", sys.executable)
        venv = tmp / "venv"
        await self.run_ok("venv", [base, "-m", "venv", str(venv)], tmp)
        python = str(venv / "bin" / "python")
        await self.pip("pip install", [python, "-m", "pip", "install", "--quiet", str(wheel)], tmp)
        user_base = tmp / "userbase"
        user_env = {"PYTHONUSERBASE": str(user_base)}
        await self.pip("pip install --user", [base, "-m", "pip", "install", "--user", "--no-deps", "--quiet",
                                              "--no-warn-script-location", str(wheel)], tmp, user_env)
        self.phase("installed")

        shutil.rmtree(source)  # nothing may come from the source tree any more
        shutil.rmtree(wheels)
        elsewhere = tmp / "elsewhere"
        elsewhere.mkdir()

        await self.check_plugins_and_data(venv, elsewhere)
        await self.check_user_install(base, user_base, user_env, elsewhere)
        self.phase("plugins and data checked")
        await self.check_demo(venv, elsewhere)
        self.phase("demo reached QA_Active through the API and the SSH shell")

    async def check_plugins_and_data(self, venv: Path, elsewhere: Path) -> None:
        """twistd lists the six plugins; the data is in the installed package; its tables pass ecs fsm check."""
        help_text = await self.run_ok("twistd --help", [str(venv / "bin" / "twistd"), "--help"], elsewhere)
        listed = set(re.findall(r"^\s+(ecs-[a-z]+)\s", help_text, re.MULTILINE))
        self.assertEqual(listed, set(PLUGINS), help_text)

        python = str(venv / "bin" / "python")
        where = await self.run_ok("data_root", [python, "-c", DATA_ROOT], elsewhere)
        data = Path(where.strip().splitlines()[-1])
        self.assertTrue(data.is_relative_to(venv), f"data found outside the virtualenv: {data}")
        self.assertEqual(data.parts[-2:], ("ecs", "data"))
        for needed in ("etc/ecs.yaml", "etc/subsystems.yaml", "etc/demo-configs.yaml", "templates/base.html",
                       "fsm/partition.yaml", "etc/sequences/threshold-scan.yaml", "etc/systemd/ecs-eca.service",
                       "etc/systemd/ecs-agent@.service"):
            self.assertTrue((data / needed).is_file(), f"{needed} is not in the installed package")
        tables = sorted(str(p) for p in (data / "fsm").glob("*.yaml"))
        self.assertGreaterEqual(len(tables), 5)
        checked = await self.run_ok("ecs fsm check", [str(venv / "bin" / "ecs"), "fsm", "check", *tables], elsewhere)
        self.assertEqual(sum(1 for line in checked.splitlines() if line.startswith("OK")), len(tables), checked)

    async def check_user_install(self, base: str, user_base: Path, env: dict[str, str], elsewhere: Path) -> None:
        """pip install --user: the package finds its data under the user base."""
        where = await self.run_ok(
            "data_root (--user)", [base, "-c", DATA_ROOT], elsewhere, env
        )
        data = Path(where.strip().splitlines()[-1])
        self.assertTrue(data.is_relative_to(user_base), f"--user install: data found at {data}, not under {user_base}")
        self.assertTrue((data / "fsm" / "partition.yaml").is_file())

    async def check_demo(self, venv: Path, elsewhere: Path) -> None:
        """The installed ecs-demo: log in, take control, configure demo to QA_Active, see it in the SSH shell."""
        port, ssh_port = free_port(), free_port()
        state = elsewhere / "var"
        proc, _ = spawn(
            self,
            "installed ecs-demo",
            [str(venv / "bin" / "twistd"), "-n", "--pidfile=", "ecs-demo", "--port", str(port),
             "--registry-port", str(free_port()), "--ssh-port", str(ssh_port), "--state-dir", str(state)],
            cwd=str(elsewhere),
            env={"ECS_ADMIN_PASSWORD": PASSWORD},
            isolated=True,
        )
        await proc.wait_for(r"ECS web: http://127\.0\.0\.1:\d+/", timeout=120)
        self.phase("demo up")
        base_url = f"http://127.0.0.1:{port}"
        code, body = await call_api(base_url, "POST", "/api/login",
                                    body={"username": "admin", "password": PASSWORD, "kind": "api"})
        self.assertEqual(code, 200, body)
        token = str(body["token"])
        code, body = await call_api(base_url, "POST", "/api/partitions/demo/control", token)
        self.assertEqual(code, 200, body)
        # Configure once every system is connected (the agents are still starting).
        await self.until(base_url, token, lambda p: p["state"] == "Idle" and p["operation"] is None
                         and bool(p["systems"]) and all(s["connected"] for s in p["systems"]), "Idle, all connected")
        code, body = await call_api(base_url, "POST", "/api/partitions/demo/configure", token,
                                    {"tag": "demo", "auto": True})
        self.assertEqual(code, 200, body)
        ready = await self.until(base_url, token, lambda p: p["state"] == "QA_Active" and p["operation"] is None,
                                 "QA_Active")
        self.assertEqual(ready["tag"], "demo")
        self.phase("QA_Active through the API")

        home = elsewhere / "home"
        home.mkdir(mode=0o700)
        key = home / "id_admin"
        await self.run_ok("ssh-keygen", ["/usr/bin/env", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "admin",
                                         "-f", str(key)], elsewhere)
        await self.run_ok("ecs user key add", [str(venv / "bin" / "ecs"), "user", "key", "add", "admin",
                                               str(key.with_suffix(".pub")), "--state-dir", str(state)], elsewhere)
        host_key = (state / "ssh" / "host_ed25519.pub").read_text().split()
        known_hosts = home / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{ssh_port} {host_key[0]} {host_key[1]}\n")
        status = await self.run_ok(
            "ssh status demo",
            ["/usr/bin/env", "ssh", "-T", "-F", "/dev/null", "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
             "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
             "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "-i", str(key), "-p", str(ssh_port),
             "admin@127.0.0.1", "status demo"],
            elsewhere,
            env={"HOME": str(home)},
        )
        self.assertIn("QA_Active", status)

    async def until(
        self, base_url: str, token: str, condition: Any, what: str, timeout: float = 120.0
    ) -> dict[str, Any]:
        """Poll GET /api/partitions/demo until C{condition(body)}; fail naming C{what} after C{timeout} s."""
        deadline = time.monotonic() + timeout
        body: Any = None
        while time.monotonic() < deadline:
            code, body = await call_api(base_url, "GET", "/api/partitions/demo", token)
            if code == 200 and condition(body):
                return dict(body)
            await task.deferLater(reactor, POLL, lambda: None)
        raise AssertionError(f"partition demo never {what} within {timeout} s: {body}")
