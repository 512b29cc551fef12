# -*- test-case-name: tests.test_run_sequences_eca -*-
"""
Scripted run sequences through the ECA (issue 14, item 5): the whole
system in memory on a clock (L{tests.eca_harness}), driven through the
API: a threshold scan unattended from Idle to its end, abort in each kind
of step, a failing step, pause and resume, and the refusals.
"""

from __future__ import annotations

from typing import Any

from ecs.config.run_sequences import RunSequence, parse_sequence
from tests.eca_harness import ClockedHarness

TOP = "QA_Active"

SCAN = {
    "description": "threshold scan",
    "steps": [
        {
            "loop": {
                "over": ["demo", "demo-alt", "demo"],
                "as": "tag",
                "steps": [
                    {"configure": {"tag": "{tag}", "timeout": 30}},
                    {"start": {"type": "calibration", "comment": "scan {tag}", "timeout": 30}},
                    {"wait": {"seconds": 5}},
                    {"stop": {"comment": "done {tag}", "timeout": 30}},
                ],
            }
        }
    ],
}


def sequence(name: str, data: dict[str, Any]) -> RunSequence:
    return parse_sequence(name, data, f"{name}.yaml", None, None)


class SequenceHarness(ClockedHarness):
    """The harness with sequences declared, and helpers to run and follow them."""

    async def setUp(self) -> None:  # type: ignore[override]
        await super().setUp()
        self.parts.run_sequences.sequences = {
            "scan": sequence("scan", SCAN),
            "hold": sequence("hold", {"steps": [{"configure": {"tag": "demo"}}, {"wait": {"seconds": 100}}]}),
            "record": sequence("record", {"steps": [
                {"configure": {"tag": "demo"}}, {"start": {"type": "test"}}, {"wait": {"seconds": 100}}, "stop"]}),
            "bad-tag": sequence("bad-tag", {"steps": [{"configure": {"tag": "no-such-tag"}}]}),
            "never": sequence("never", {"steps": [{"wait": {"until": "Recording", "timeout": 2}}]}),
        }

    async def launch(self, name: str, user: str = "operator", partition: str = "demo") -> Any:
        return await self.call("POST", f"/api/sequences/{name}/run", token=await self.login(user),
                               json={"partition": partition})

    async def status(self, partition: str = "demo") -> dict[str, Any]:
        return dict(await self.ok("GET", f"/api/partitions/{partition}/sequence", "viewer"))

    async def act(self, action: str, user: str = "operator") -> Any:
        return await self.call("POST", f"/api/partitions/demo/sequence/{action}", token=await self.login(user))

    async def ended(self, timeout: float = 60.0) -> dict[str, Any]:
        def over() -> dict[str, Any] | None:
            s = self.eca.sequence_status(self.user("viewer"), "demo")
            return s if s["state"] in ("done", "failed", "aborted") else None

        return await self.wait_for(over, timeout, "the sequence ends")

    async def in_step(self, number: int, state: str | None = None) -> None:
        def there() -> bool:
            s = self.eca.sequence_status(self.user("viewer"), "demo")
            shown = self.eca.partition("demo")
            return s["step"] == number and (state is None or shown["state"] == state)

        await self.wait_for(there, 30, f"step {number}")

    def user(self, name: str) -> Any:
        from ecs.control import User

        return User(name, ("viewer",))

    async def notes(self) -> list[str]:
        return [e.text for e in reversed(await self.store.logbook_entries(author="ECS"))
                if e.text.startswith("sequence ")]


class RunTests(SequenceHarness):
    async def test_threshold_scan_unattended(self) -> None:
        """From Idle to its end: configure/start/stop reach the PCA in order with the tags, types and comments."""
        await self.take("operator")
        r = await self.launch("scan")
        self.assertEqual(r.code, 200, r.body)
        self.assertEqual((r.json["state"], r.json["total"]), ("running", 12))
        done = await self.ended()
        self.assertEqual((done["state"], done["step"], done["error"]), ("done", 12, None))
        self.assertEqual(self.eca.partition("demo")["state"], TOP)
        commands = [(row.user, row.action, row.arguments) for row in
                    reversed(await self.store.audit_entries(limit=100))
                    if row.action in ("configure", "start", "stop")]
        want = []
        for tag in ("demo", "demo-alt", "demo"):
            want += [
                ("operator", "configure", {"partition": "demo", "tag": tag, "auto": True}),
                ("operator", "start", {"partition": "demo", "type": "calibration", "comment": f"scan {tag}"}),
                ("operator", "stop", {"partition": "demo", "comment": f"done {tag}"}),
            ]
        self.assertEqual(commands, want)
        runs = sorted(await self.store.runs("demo"), key=lambda r: r.number)
        self.assertEqual([(r.tag, r.type, r.start_comment, r.end_comment) for r in runs], [
            (tag, "calibration", f"scan {tag}", f"done {tag}") for tag in ("demo", "demo-alt", "demo")])
        notes = await self.notes()
        self.assertEqual(notes[0], "sequence scan: started by operator (12 steps)")
        self.assertIn("sequence scan: step 1/12 (configure tag=demo auto=True) started", notes)
        self.assertIn("sequence scan: step 12/12 (stop comment=done demo) done", notes)
        self.assertEqual(notes[-1], "sequence scan: ended: done")
        self.assertEqual([a for a in await self.store.alarms() if a.kind == "sequence_failed"], [])

    async def test_progress_events(self) -> None:
        """The partition's stream carries a sequence event at each step, with step/total and the description."""
        await self.take("operator")
        stub, reader = await self.open_events("/api/events?partition=demo")
        await self.launch("hold")
        events = await self.events_until(
            stub, reader, lambda es: any(e["event"] == "sequence" and e["data"]["step"] == 2 for e in es))
        shown = [e["data"] for e in events if e["event"] == "sequence"]
        self.assertEqual(shown[-1]["total"], 2)
        self.assertEqual(shown[-1]["description"], "wait seconds=100.0")
        self.close_events(stub, reader)
        await self.act("abort")
        await self.ended()

    async def test_refusals(self) -> None:
        """404 unknown sequence or partition; 409 when another holds control or one runs; 403 viewer or no holder."""
        self.assertError(await self.launch("scan"), 403, "forbidden")  # nobody holds control: take it first
        await self.take("operator")
        self.assertError(await self.launch("nope"), 404, "not_found")
        self.assertError(await self.launch("scan", partition="nowhere"), 404, "not_found")
        self.assertError(await self.launch("scan", user="viewer"), 403)
        self.assertError(await self.launch("scan", user="operator2"), 409)
        self.assertError(await self.act("pause"), 409, "conflict")
        r = await self.call("POST", "/api/sequences/scan/run", token=await self.login("operator"),
                            json={"partition": 5})
        self.assertError(r, 400, "bad_request")
        self.assertEqual((await self.launch("hold")).code, 200)
        self.assertError(await self.launch("scan"), 409, "conflict")
        self.assertError(await self.act("abort", user="operator2"), 409)
        listed = await self.ok("GET", "/api/sequences", "viewer")
        self.assertEqual([s["name"] for s in listed], ["bad-tag", "hold", "never", "record", "scan"])
        self.assertEqual(listed[-1]["total"], 12)
        await self.act("abort")
        await self.ended()


class AbortTests(SequenceHarness):
    async def assert_aborted(self) -> None:
        done = await self.ended()
        self.assertEqual(done["state"], "aborted")
        await self.wait_state("demo", "Idle")
        [row] = [r for r in await self.store.audit_entries(action="abort")]
        self.assertEqual((row.user, row.outcome), ("operator", "ok"))
        self.assertIn("sequence hold: ended: aborted" if done["sequence"] == "hold"
                      else f"sequence {done['sequence']}: ended: aborted", await self.notes())

    async def test_abort_while_configuring(self) -> None:
        await self.take("operator")
        await self.launch("hold")
        await self.wait_for(lambda: self.eca.partition("demo")["operation"], what="configuring")
        r = await self.act("abort")
        self.assertEqual(r.code, 200, r.body)
        await self.assert_aborted()

    async def test_abort_while_waiting(self) -> None:
        await self.take("operator")
        await self.launch("hold")
        await self.in_step(2, TOP)
        await self.act("abort")
        await self.assert_aborted()
        self.assertEqual(self.clock.getDelayedCalls() and [
            c for c in self.clock.getDelayedCalls() if c.getTime() > self.clock.seconds() + 50], [])

    async def test_abort_while_recording(self) -> None:
        await self.take("operator")
        await self.launch("record")
        await self.in_step(3, "Recording")
        await self.act("abort")
        await self.assert_aborted()


class FailureTests(SequenceHarness):
    async def assert_failed(self, name: str, step: int, reason: str) -> None:
        done = await self.ended()
        self.assertEqual((done["state"], done["step"]), ("failed", step))
        self.assertIn(reason, done["error"])

        async def alarm() -> Any:
            return [a for a in await self.store.alarms() if a.kind == "sequence_failed"]

        [row] = await self.wait_for(alarm, what="the alarm")
        self.assertEqual((row.partition, row.source), ("demo", f"sequence {name}"))
        self.assertIn(reason, row.text)
        self.assertTrue(any(n.startswith(f"sequence {name}: ended: failed in step {step}")
                            for n in await self.notes()))

    async def test_refused_command(self) -> None:
        """An unknown tag: the configure is refused, the sequence fails with an alarm."""
        await self.take("operator")
        await self.launch("bad-tag")
        await self.assert_failed("bad-tag", 1, "configure refused")

    async def test_state_not_reached(self) -> None:
        await self.take("operator")
        await self.launch("never")
        await self.assert_failed("never", 1, "Recording not reached within 2 s")

    async def test_partition_falls_during_wait(self) -> None:
        """A detector in Error drops the partition during a wait: the step fails."""
        await self.take("operator")
        await self.launch("hold")
        await self.in_step(2, TOP)
        await self.until(self.tester.connect(self.hosts["STS"].address).request("STS", "inject", {"what": "error"}))
        await self.assert_failed("hold", 2, "fell from QA_Active")

    async def test_control_released(self) -> None:
        """The user gives up control: the next command is refused (the sequence acts as the user)."""
        await self.take("operator")
        self.parts.run_sequences.sequences["short"] = sequence(
            "short", {"steps": [{"configure": {"tag": "demo"}}, {"wait": {"seconds": 1}}, "start"]})
        await self.launch("short")
        await self.in_step(2, TOP)
        await self.call("DELETE", "/api/partitions/demo/control", token=await self.login("operator"))
        await self.assert_failed("short", 3, "start refused")


class PauseTests(SequenceHarness):
    async def test_pause_after_the_step_then_resume(self) -> None:
        await self.take("operator")
        self.parts.run_sequences.sequences["two"] = sequence(
            "two", {"steps": [{"configure": {"tag": "demo"}}, {"wait": {"seconds": 1}}, {"wait": {"seconds": 1}}]})
        await self.launch("two")
        await self.in_step(1)
        r = await self.act("pause")
        self.assertEqual((r.code, r.json["pause_wanted"]), (200, True))
        await self.wait_for(lambda: self.eca.sequence_status(self.user("v"), "demo")["state"] == "paused",
                            what="paused")
        self.assertEqual((await self.status())["step"], 1)
        # the pause's reply tells an older status than the pause taking effect (a page keeps the newer)
        self.assertGreater((await self.status())["version"], r.json["version"])
        await self.settle(3)
        self.assertEqual((await self.status())["state"], "paused")
        self.assertError(await self.act("pause"), 409)
        self.assertEqual((await self.act("resume")).code, 200)
        done = await self.ended()
        self.assertEqual((done["state"], done["step"]), ("done", 3))
        notes = await self.notes()
        self.assertIn("sequence two: paused before step 2", notes)
        self.assertIn("sequence two: resumed", notes)

    async def test_abort_while_paused(self) -> None:
        await self.take("operator")
        await self.launch("hold")
        await self.in_step(1)
        await self.act("pause")
        await self.wait_for(lambda: self.eca.sequence_status(self.user("v"), "demo")["state"] == "paused",
                            what="paused")
        await self.act("abort")
        self.assertEqual((await self.ended())["state"], "aborted")
        await self.wait_state("demo", "Idle")
