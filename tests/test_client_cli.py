"""
The C{ecs} API commands (L{ecs.client.cli}) against a real demo: C{twistd
-n ecs-demo} on loopback with free ports, the CLI run as real
subprocesses with C{HOME} and C{XDG_CONFIG_HOME} in a temporary directory,
every command checked for its output and exit code.

One test method runs the whole shift on one demo (a demo per method would
cost its start-up each time, and trial's workers may split a class).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from tests.procs import ROOT, Collected, call_api, free_port, spawn, tool
from tests.support.cli import Result, kill, stop_collected

PASSWORD = "admin-pass-123"


class ClientCommandTests(TestCase):
    """Every API command of `ecs` and its exit codes, against a running demo."""

    timeout = 170

    def env(self, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ECS_", "XDG_"))}
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), PYTHONPATH=str(ROOT), NO_COLOR="1")
        return env

    async def ecs(self, home: Path, *argv: str, stdin: str | None = None, timeout: float = 60.0) -> Result:
        """Run `ecs argv...` as a subprocess with its config dir under C{home}."""
        collect = Collected(stdin.encode() if stdin is not None else None)
        args = [sys.executable, "-m", "ecs.cli", *argv]
        transport = reactor.spawnProcess(collect, args[0], args, env=self.env(home), path=str(ROOT))
        timer = reactor.callLater(timeout, kill, transport)
        self.addCleanup(stop_collected, collect, transport)
        code = await collect.ended
        if timer.active():
            timer.cancel()
        return Result(code, collect.out.decode("utf-8", "replace"), collect.err.decode("utf-8", "replace"))

    async def api(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        return await call_api(self.base, method, path, token, body)

    def expect(self, result: Result, code: int, *stderr: str) -> None:
        self.assertEqual(result.code, code, result)
        for text in stderr:
            self.assertIn(text, result.err, result)

    async def test_commands(self) -> None:
        """login, status, control, configure/start/stop/abort --wait, watch, reset, logs, runs, agents, management."""
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir()
        port = free_port()
        self.base = url = f"http://127.0.0.1:{port}"
        demo, _ = spawn(
            self,
            "ecs-demo",
            [
                tool("twistd"),
                "-n",
                "--pidfile=",
                "ecs-demo",
                "--port",
                str(port),
                "--registry-port",
                str(free_port()),
                "--state-dir",
                str(tmp / "var"),
            ],
            cwd=str(tmp),
            env={"ECS_ADMIN_PASSWORD": PASSWORD},
        )
        await demo.wait_for(r"ECS web: http://127\.0\.0\.1:\d+/", timeout=60)
        admin, shifter, viewer = tmp / "admin", tmp / "shifter", tmp / "viewer"
        for home in (admin, shifter, viewer):
            home.mkdir()

        # -- not logged in, login --------------------------------------------------
        self.expect(await self.ecs(admin, "status", "--url", url), 3, "not logged in", "ecs login")
        r = await self.ecs(
            admin,
            "login",
            "--url",
            f"http://127.0.0.1:{free_port()}",
            "--user",
            "admin",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        self.expect(r, 4, "cannot reach the ECA", "Connection refused")
        r = await self.ecs(admin, "login", "--url", url, "--user", "admin", "--password-stdin", stdin="wrong-one\n")
        self.expect(r, 3, "wrong user name or password")
        self.assertFalse((admin / "config" / "ecs" / "credentials.json").exists())
        r = await self.ecs(admin, "login", "--url", url, "--user", "admin", "--password-stdin", stdin=PASSWORD + "\n")
        self.expect(r, 0)
        self.assertIn("logged in", r.out)
        credentials = admin / "config" / "ecs" / "credentials.json"
        self.assertEqual(stat.S_IMODE(credentials.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(credentials.parent.stat().st_mode), 0o700)
        stored = json.loads(credentials.read_text())
        self.assertEqual((stored["url"], stored["user"]), (url, "admin"))
        token = stored["token"]
        self.assertNotIn(token, r.out + r.err)

        # Two more users, made with the API as admin.
        for name, roles in (("shifter", ["operator"]), ("viewer", ["viewer"])):
            code, body = await self.api(
                "POST", "/api/users", token, {"username": name, "password": f"{name}-pass-1", "roles": roles}
            )
            self.assertEqual(code, 200, body)
        for home in (shifter, viewer):
            r = await self.ecs(
                home, "login", "--url", url, "--user", home.name, "--password-stdin", stdin=f"{home.name}-pass-1\n"
            )
            self.expect(r, 0)

        # -- status ----------------------------------------------------------------
        r = await self.ecs(admin, "status", "--url", url, "--timeout", "20", "nope")
        self.expect(r, 1, "no partition 'nope'")
        r = await self.ecs(admin, "watch", "demo", "--until", "Idle", "--timeout", "60")
        self.expect(r, 0)
        for _ in range(100):  # the PCA may still be connecting its systems
            r = await self.ecs(admin, "--json", "status", "demo")
            self.expect(r, 0)
            detail = r.json()
            if len(detail["systems"]) == 9 and all(s["connected"] for s in detail["systems"]):
                break
        self.assertEqual(detail["state"], "Idle")
        r = await self.ecs(admin, "status")
        self.expect(r, 0)
        # the ALARMS column follows when the ECA has alarms (GET /api/alarms)
        self.assertEqual(r.out.splitlines()[0].split()[:5], ["PARTITION", "STATE", "TAG", "CONTROLLER", "PCA"])
        self.assertEqual(r.out.splitlines()[1].split()[:5], ["demo", "Idle", "-", "-", "connected"])
        r = await self.ecs(admin, "status", "--json")
        self.assertEqual(
            r.json(), [{"id": "demo", "state": "Idle", "tag": None, "controller": None, "connected": True}]
        )
        r = await self.ecs(admin, "status", "demo")
        self.expect(r, 0)
        self.assertIn("Partition demo: Idle", r.out)
        self.assertTrue(any(line.split()[:3] == ["STS", "detector", "Unconfigured"] for line in r.out.splitlines()), r)

        # -- control ---------------------------------------------------------------
        # Nobody holds control: the ECA answers 403 "take control first", a refusal
        # of the operation (exit 1), not an authentication problem.
        self.expect(
            await self.ecs(shifter, "configure", "demo", "--tag", "demo"), 1, "take control of partition demo first"
        )
        # A viewer lacks the operator role: that is a 403 about who you are: exit 3.
        self.expect(await self.ecs(viewer, "control", "take", "demo"), 3, "needs role operator")
        self.expect(await self.ecs(admin, "control", "take", "demo"), 0)
        # A detector in Error (a fault reported by its subsystem, injected by an
        # expert through the ECA: a viewer may not), reset through the ECA.
        self.expect(await self.ecs(viewer, "inject", "STS", "error"), 3, "expert")
        r = await self.ecs(admin, "inject", "STS", "error")
        self.expect(r, 0)
        self.assertIn('"STS": "Error"', r.out, r)
        for _ in range(50):
            r = await self.ecs(admin, "--json", "status", "demo")
            if next(s for s in r.json()["systems"] if s["id"] == "STS")["state"] == "Error":
                break
        self.assertIn("reset", r.json()["allowed"])

        # -- alarms: what is wrong and what to press, acknowledged and shelved ---------------
        for _ in range(50):  # the alarm follows the record
            r = await self.ecs(viewer, "status", "demo")
            if "ERROR STS: STS in Error" in r.out:
                break
        self.expect(r, 0)
        self.assertTrue(r.out.startswith("Partition demo: "), r)
        header = r.out.split("\n  tag: ")[0]  # under the state, above the rest of the header
        self.assertIn("\n  alarms: ", header, r)
        self.assertIn("ERROR STS: STS in Error", header, r)
        self.assertIn("-> reset STS, then Configure", r.out, r)
        rows = (await self.ecs(viewer, "--json", "alarms", "--partition", "demo")).json()
        alarm = next(a for a in rows if a["kind"] == "system_error" and a["source"] == "STS")
        number = str(alarm["id"])
        r = await self.ecs(viewer, "alarms")
        self.expect(r, 0)
        self.assertTrue(any(line.split()[:4] == [number, "error", "demo", "STS"] for line in r.out.splitlines()), r)
        self.expect(await self.ecs(viewer, "alarms", "ack", number), 3, "operator")
        r = await self.ecs(shifter, "alarms", "ack", number)
        self.expect(r, 0)
        self.assertIn("acknowledged by shifter", r.out)
        self.expect(await self.ecs(shifter, "alarms", "shelve", number, "--for", "1h", "--reason", "r"), 3, "expert")
        self.expect(
            await self.ecs(admin, "alarms", "shelve", number, "--for", "5x", "--reason", "r"),
            2,
            "'5x' is not a duration like 90s, 30m, 1h or 2d",
        )
        r = await self.ecs(admin, "alarms", "shelve", number, "--for", "1h", "--reason", "known fault, being fixed")
        self.expect(r, 0)
        self.assertIn("by admin (known fault, being fixed)", r.out)
        r = await self.ecs(viewer, "alarms", "--all", "--partition", "demo")
        self.assertIn("by admin (known fault, being fixed)", r.out)
        self.expect(await self.ecs(admin, "alarms", "ack", "999999"), 1, "999999")

        r = await self.ecs(admin, "reset", "demo", "STS")
        self.expect(r, 0)
        self.assertIn("reset of STS accepted", r.out)
        r = await self.ecs(shifter, "control", "take", "demo")
        self.expect(r, 1, "admin")
        # Held by another user: 409, exit 1, the holder named.
        self.expect(await self.ecs(shifter, "start", "demo"), 1, "held by admin")
        self.expect(await self.ecs(shifter, "control", "take", "demo", "--force"), 3, "force needs role admin")

        # -- configure ---------------------------------------------------------------
        self.expect(
            await self.ecs(admin, "configure", "demo", "--tag", "no-such-tag", "--auto", "--wait"), 1, "no-such-tag"
        )
        self.expect(await self.ecs(admin, "configure", "demo"), 2, "--tag")
        watch_home = admin
        watch = Collected(None)
        args = [sys.executable, "-m", "ecs.cli", "watch", "demo"]
        watcher = reactor.spawnProcess(watch, args[0], args, env=self.env(watch_home), path=str(ROOT))
        self.addCleanup(stop_collected, watch, watcher)
        await self.until_output(watch, b"demo state Idle")
        screen = Collected(None)  # the same on a terminal: a redrawn table
        args = [sys.executable, "-m", "ecs.cli", "watch", "demo", "--until", "QA_Active", "--timeout", "60"]
        terminal = reactor.spawnProcess(screen, args[0], args, env=self.env(watch_home), path=str(ROOT), usePTY=True)
        self.addCleanup(stop_collected, screen, terminal)
        await self.until_output(screen, b"Partition demo: Idle")
        r = await self.ecs(admin, "configure", "demo", "--tag", "demo", "--auto", "--wait", "--timeout", "60")
        self.expect(r, 0)
        self.assertEqual(r.out.strip(), "demo: QA_Active")
        self.assertIn("demo: Configuring_Detectors", r.err)  # the progress, one line per state without a terminal
        await self.until_output(watch, b"demo state QA_Active")
        watcher.signalProcess("INT")  # Ctrl-C
        self.assertEqual(await watch.ended, 0)
        lines = watch.out.decode().splitlines()
        states = [line.split(" state ")[1].split()[0] for line in lines if " demo state " in line]
        self.assertEqual(
            states,
            [
                "Idle",
                "Configuring_TFC",
                "Configuring_Detectors",
                "Configuring_FLES_and_DCS",
                "Configuring_QA",
                "QA_Active",
            ],
        )
        self.assertTrue(any(" system STS Active " in line for line in lines), lines)
        self.assertTrue(any(" progress stage Detectors " in line and "5/5" in line for line in lines), lines)
        self.assertEqual(await screen.ended, 0)
        self.assertIn(b"\x1b[H\x1b[2J", screen.out)
        self.assertIn(b"Partition demo: QA_Active", screen.out)
        self.assertRegex(screen.out.decode("utf-8", "replace"), r"STS +detector +Active +Active +sts-default")

        # -- logs --follow sees what happens next -----------------------------------------
        follow = Collected(None)
        args = [sys.executable, "-m", "ecs.cli", "logs", "--follow", "--partition", "demo", "--limit", "1"]
        follower = reactor.spawnProcess(follow, args[0], args, env=self.env(viewer), path=str(ROOT))
        self.addCleanup(stop_collected, follow, follower)
        await self.until_output(follow, b"demo")  # the one stored event: it is subscribed by now

        # -- recording, reset, abort ---------------------------------------------------
        self.expect(await self.ecs(admin, "start", "demo", "--type", "beam"), 1,
                    "unknown run type 'beam' (allowed: physics, calibration, cosmics, test)")
        r = await self.ecs(admin, "start", "demo", "--type", "calibration", "--comment", "threshold scan 1",
                           "--condition", "magnet=0.5", "--condition", "beam=false", "--wait", "--json")
        self.expect(r, 0)
        self.assertEqual(r.json()["state"], "Recording")
        await self.until_output(follow, b"recording started in")
        follower.signalProcess("INT")
        self.assertEqual(await follow.ended, 0)
        self.expect(await self.ecs(admin, "reset", "demo", "STS"), 1, "not in Error")
        self.expect(await self.ecs(admin, "start", "demo"), 1)
        r = await self.ecs(admin, "stop", "demo", "--comment", "scan done", "--wait")
        self.expect(r, 0)
        self.assertEqual(r.out.strip(), "demo: QA_Active")
        r = await self.ecs(admin, "abort", "demo", "--wait")
        self.expect(r, 0)
        self.assertEqual(r.out.strip(), "demo: Idle")
        r = await self.ecs(admin, "start", "demo", "--wait")
        self.expect(r, 1, "start needs QA_Active")
        # A configure aborted while it is waited for: exit 1, the reason named.
        waiting = Collected(None)
        args = [sys.executable, "-m", "ecs.cli", "configure", "demo", "--tag", "demo", "--auto", "--wait"]
        waiter = reactor.spawnProcess(waiting, args[0], args, env=self.env(admin), path=str(ROOT))
        self.addCleanup(stop_collected, waiting, waiter)
        await self.until_output(waiting, b"demo: Configuring_TFC", stream="err")
        self.expect(await self.ecs(admin, "abort", "demo"), 0)
        self.assertEqual(await waiting.ended, 1, waiting.err)
        self.assertIn(b"cancelled", waiting.err)
        self.expect(await self.ecs(admin, "abort", "demo", "--wait"), 0)

        # -- runs, logs, agents ---------------------------------------------------------
        r = await self.ecs(admin, "runs", "--json")
        self.expect(r, 0)
        run = r.json()[0]
        self.assertEqual(
            (run["partition"], run["tag"], run["operator"], run["outcome"]), ("demo", "demo", "admin", "stopped")
        )
        # The run's type, comments, crew and conditions round-trip (issue 14).
        self.assertEqual(
            (run["type"], run["start_comment"], run["end_comment"], run["conditions"]),
            ("calibration", "threshold scan 1", "scan done", {"magnet": 0.5, "beam": False}),
        )
        self.assertEqual(run["crew"], {"started_by": "admin", "control_holder": "admin", "ecs_control": None})
        r = await self.ecs(viewer, "runs", "--partition", "demo")
        self.expect(r, 0)
        self.assertEqual(
            r.out.splitlines()[1].split()[:5], [str(run["number"]), "demo", "calibration", "demo", "admin"]
        )
        self.assertTrue(r.out.splitlines()[1].endswith("threshold scan 1 / scan done"))
        r = await self.ecs(viewer, "runs", "--type", "physics", "--json")
        self.expect(r, 0)
        self.assertEqual(r.json(), [])
        r = await self.ecs(viewer, "runs", "--type", "calibration", "--since", "1h", "--format", "csv")
        self.expect(r, 0)
        self.assertTrue(r.out.startswith("number,partition,type,"))
        self.assertIn(f"{run['number']},demo,calibration,demo,admin", r.out)
        self.expect(await self.ecs(viewer, "audit"), 3, "expert")
        # The electronic logbook (issue 14): a note on the run, its correction, and the run's automatic entries.
        number = str(run["number"])
        r = await self.ecs(shifter, "log-entry", "add", "scan looked fine", "--partition", "demo", "--run", number,
                           "--json")
        self.expect(r, 0)
        first = r.json()["id"]
        self.expect(await self.ecs(shifter, "log-entry", "add", "one noisy channel", "--run", number,
                                   "--corrects", str(first)), 0)
        self.expect(await self.ecs(viewer, "log-entry", "add", "not mine to write"), 3, "operator")
        r = await self.ecs(viewer, "log-entry", "list", "--run", number, "--json")
        self.expect(r, 0)
        entries = {e["text"]: e for e in r.json()}
        self.assertEqual(entries["scan looked fine"]["corrected_by"], [entries["one noisy channel"]["id"]])
        self.assertEqual(entries[f"run {number} (calibration) of partition demo started: threshold scan 1"]["author"],
                         "ECS")
        self.assertIn(f"run {number} of partition demo ended: stopped; end comment: scan done", entries)
        r = await self.ecs(viewer, "log-entry", "list", "--text", "NOISY")
        self.expect(r, 0)
        self.assertIn(f"one noisy channel [corrects #{first}]", r.out)
        r = await self.ecs(admin, "audit", "--action", "stop", "--user", "admin", "--json")
        self.expect(r, 0)
        self.assertEqual(r.json()[0]["arguments"], {"partition": "demo", "comment": "scan done"})
        r = await self.ecs(admin, "audit", "--action", "start", "--json")
        self.expect(r, 0)
        self.assertIn("bad_request: type: unknown run type 'beam' (allowed: physics, calibration, cosmics, test)",
                      [entry["outcome"] for entry in r.json()])
        for _ in range(50):  # logs are stored in batches
            r = await self.ecs(viewer, "logs", "--partition", "demo", "--grep", "CONFIGURED TO", "--since", "10m")
            if "configured to QA_Active" in r.out:
                break
        self.expect(r, 0)
        self.assertIn("configured to QA_Active", r.out)
        self.assertNotIn("stage TFC", r.out)
        r = await self.ecs(viewer, "logs", "--level", "error", "--limit", "5", "--json")
        self.expect(r, 0)
        self.assertTrue(all(row["level"] in ("error", "critical") for row in r.json()))
        self.expect(await self.ecs(viewer, "logs", "--since", "yesterday-ish"), 2, "--since")
        r = await self.ecs(viewer, "agents")
        self.expect(r, 0)
        self.assertRegex(r.out, r"pca:demo +pca +localhost +local +yes +running \(pid \d+\)")
        r = await self.ecs(viewer, "agents", "--json")
        self.assertIn("detector:STS", [row["agent"] for row in r.json()])

        # -- management, from the table shared with the shell -------------------------------------
        r = await self.ecs(admin, "agents", "show", "pca:demo", "--json")  # a ':' in the path
        self.expect(r, 0)
        self.assertEqual(r.json()["agent"], "pca:demo")
        cid = (await self.ecs(viewer, "configs", "--json")).json()[0]["config_id"]
        r = await self.ecs(admin, "configs", "set", cid, "--params", '{"cli": 2}')
        self.expect(r, 1, "add --yes")  # no terminal to ask on: nothing saved
        self.assertIn("+ cli: 2", r.err)
        r = await self.ecs(admin, "configs", "set", cid, "--params", '{"cli": 2}', "--yes")
        self.expect(r, 0)
        self.assertIn(f"saved {cid} version 2", r.out)
        r = await self.ecs(viewer, "configs", "diff", cid)
        self.expect(r, 0)
        self.assertIn("+ cli: 2", r.out)
        self.expect(await self.ecs(admin, "partitions", "create", "p9"), 1, "control of the ECS")
        self.expect(await self.ecs(admin, "control", "take", "ecs"), 0)
        self.expect(await self.ecs(admin, "partitions", "create", "p9"), 0)
        self.assertIn("p9", [p["id"] for p in (await self.ecs(viewer, "partitions", "--json")).json()])
        self.expect(await self.ecs(admin, "partitions", "delete", "p9"), 0)
        self.expect(await self.ecs(admin, "control", "release", "ecs"), 0)
        r = await self.ecs(viewer, "tags", "show", "demo")
        self.expect(r, 0)
        self.assertIn("Tag demo", r.out)
        self.assertIn("shifter", [u["name"] for u in (await self.ecs(admin, "users", "--json")).json()])
        self.expect(await self.ecs(viewer, "users"), 3)

        # -- control release ----------------------------------------------------------------
        self.expect(await self.ecs(shifter, "control", "release", "demo"), 1)  # not the holder
        self.expect(await self.ecs(admin, "control", "release", "demo"), 0)
        r = await self.ecs(viewer, "--json", "status")
        self.assertIsNone(next(p for p in r.json() if p["id"] == "demo")["controller"])
        self.expect(await self.ecs(shifter, "control", "take", "demo"), 0)  # free again

        # -- logout -------------------------------------------------------------------------
        self.expect(await self.ecs(admin, "logout"), 0)
        self.assertFalse(credentials.exists())
        code, body = await self.api("GET", "/api/partitions", token)
        self.assertEqual(code, 401, body)  # forgotten by the ECA too
        self.expect(await self.ecs(admin, "status"), 3, "not logged in")
        code, body = await self.api(
            "GET", "/api/partitions", json.loads((shifter / "config" / "ecs" / "credentials.json").read_text())["token"]
        )
        self.assertEqual(code, 200)

    async def until_output(self, collect: Collected, text: bytes, timeout: float = 30.0, stream: str = "out") -> None:
        """Wait until C{collect}'s stdout (or stderr) contains C{text}."""
        for _ in range(int(timeout / 0.05)):
            if text in getattr(collect, stream):
                return
            if collect.ended.called:
                break
            await _sleep(0.05)
        self.fail(f"no {text!r} in output: {collect.out.decode()!r} {collect.err.decode()!r}")


def _sleep(seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d
