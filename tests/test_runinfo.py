# -*- test-case-name: tests.test_runinfo -*-
"""
What a run carries (issue 14): the shared checks of L{ecs.runinfo} (type,
comments, conditions, C{KEY=VALUE}), the CSV export, the declared run types
in the settings, and the run records of the store (schema v5): type,
comments, crew and conditions written and read back, the end comment
written with the stop ahead of its request (and forgotten when the stop is
refused), runs and audit entries filtered by type and time.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import ClassVar

from twisted.trial.unittest import SynchronousTestCase

from ecs import runinfo
from ecs.config.settings import ConfigError, load_settings
from ecs.runinfo import RunInfoError
from tests.test_store import T0, StoreTestCase


class CheckTests(SynchronousTestCase):
    """The checks name the field and what was wrong."""

    def refused(self, call: object, field: str, *words: str) -> None:
        assert callable(call)
        with self.assertRaises(RunInfoError) as caught:
            call()
        self.assertEqual(caught.exception.field, field)
        for word in words:
            self.assertIn(word, caught.exception.reason)

    def test_type(self) -> None:
        """A type is a short name; an unknown one is refused with the allowed ones listed."""
        self.assertEqual(runinfo.check_type("physics", runinfo.DEFAULT_RUN_TYPES), "physics")
        self.assertEqual(runinfo.check_type("anything"), "anything")
        self.refused(lambda: runinfo.check_type("beam", ["physics", "test"]), "type",
                     "unknown run type 'beam'", "allowed: physics, test")
        for bad in ("", "two words", "x" * 65, 3, None):
            self.refused(lambda bad=bad: runinfo.check_type(bad), "type", "name")

    def test_comment(self) -> None:
        """A comment is bounded text; blank is none."""
        self.assertEqual(runinfo.check_comment("  beam tuning  "), "beam tuning")
        self.assertIsNone(runinfo.check_comment("   "))
        self.assertIsNone(runinfo.check_comment(None))
        self.refused(lambda: runinfo.check_comment(5), "comment", "text")
        self.refused(lambda: runinfo.check_comment("x" * (runinfo.MAX_COMMENT + 1), "end comment"),
                     "end comment", f"at most {runinfo.MAX_COMMENT}")
        self.refused(lambda: runinfo.check_comment("a\x00b"), "comment", "NUL")

    def test_conditions(self) -> None:
        """Conditions: named keys to scalars, bounded in number and length."""
        good = {"magnet": 0.5, "runs": 3, "beam": False, "target": "Au", "note": None}
        self.assertEqual(runinfo.check_conditions(good), good)
        self.assertEqual(runinfo.check_conditions(None), {})
        self.refused(lambda: runinfo.check_conditions([1]), "conditions", "object")
        self.refused(lambda: runinfo.check_conditions({"a b": 1}), "conditions", "key 'a b'")
        self.refused(lambda: runinfo.check_conditions({"x": [1]}), "conditions.x", "no lists or objects")
        self.refused(lambda: runinfo.check_conditions({"x": {"y": 1}}), "conditions.x", "no lists or objects")
        self.refused(lambda: runinfo.check_conditions({"x": float("nan")}), "conditions.x", "finite")
        self.refused(lambda: runinfo.check_conditions({"x": 2**70}), "conditions.x", "too large")
        self.refused(lambda: runinfo.check_conditions({"x": "y" * 201}), "conditions.x", "200")
        many = {f"k{i}": i for i in range(runinfo.MAX_CONDITIONS + 1)}
        self.refused(lambda: runinfo.check_conditions(many), "conditions", f"at most {runinfo.MAX_CONDITIONS}")

    def test_parse_condition(self) -> None:
        """KEY=VALUE reads numbers, true/false/null, else text; no '=' is refused."""
        self.assertEqual(runinfo.parse_condition("magnet=0.5"), ("magnet", 0.5))
        self.assertEqual(runinfo.parse_condition("n=3"), ("n", 3))
        self.assertEqual(runinfo.parse_condition("beam=false"), ("beam", False))
        self.assertEqual(runinfo.parse_condition("x=null"), ("x", None))
        self.assertEqual(runinfo.parse_condition("target=Au=197"), ("target", "Au=197"))
        self.assertEqual(runinfo.parse_condition("v=inf"), ("v", "inf"))
        self.refused(lambda: runinfo.parse_condition("magnet"), "condition", "KEY=VALUE")
        self.refused(lambda: runinfo.parse_condition("=1"), "conditions", "key")


class CsvTests(SynchronousTestCase):
    """Run records as CSV."""

    def test_columns_and_values(self) -> None:
        """A header row, then one row per run with times in UTC and every column filled."""
        rows = [{
            "number": 7, "partition": "demo", "type": "physics", "tag": "demo", "operator": "olga",
            "crew": {"started_by": "olga", "control_holder": "olga", "ecs_control": None},
            "started": 0.0, "ended": 60.0, "outcome": "stopped", "start_comment": "first, \"beam\"",
            "end_comment": "done", "conditions": {"magnet": 0.5}, "note": None,
            "configs": {"STS": {"config_id": "sts-a", "version": 2, "parameters": {}}},
        }, {"number": 8, "partition": "demo", "started": 120.0, "ended": None, "outcome": None}]
        parsed = list(csv.reader(io.StringIO(runinfo.runs_csv(rows))))
        self.assertEqual(tuple(parsed[0]), runinfo.CSV_COLUMNS)
        self.assertEqual(parsed[1], [
            "7", "demo", "physics", "demo", "olga", "started_by=olga; control_holder=olga",
            "1970-01-01T00:00:00+00:00", "1970-01-01T00:01:00+00:00", "stopped", 'first, "beam"', "done",
            '{"magnet":0.5}', "STS=sts-a v2", "",
        ])
        self.assertEqual(parsed[2][8], "running")
        self.assertEqual(parsed[2][7], "")

    def test_formulas_are_quoted(self) -> None:
        """Text a spreadsheet would run as a formula starts with a quote; numbers stay numbers."""
        rows = [{"number": 1, "operator": "=HYPERLINK(1)", "start_comment": "+1+2", "end_comment": "-3"}]
        parsed = list(csv.reader(io.StringIO(runinfo.runs_csv(rows))))[1]
        self.assertEqual(parsed[4], "'=HYPERLINK(1)")
        self.assertEqual(parsed[9], "'+1+2")
        self.assertEqual(parsed[10], "-3")


class SettingsTests(SynchronousTestCase):
    """The run types are declared in the settings, with a default list."""

    def write(self, text: str) -> Path:
        path = Path(self.mktemp())
        path.write_text(text, encoding="utf-8")
        return path

    def test_default_and_declared(self) -> None:
        """No runs key: the default types; a declared list replaces them."""
        self.assertEqual(load_settings(self.write("")).run_types, runinfo.DEFAULT_RUN_TYPES)
        self.assertEqual(load_settings(self.write("runs: {types: [beam, noise]}\n")).run_types, ("beam", "noise"))
        self.assertEqual(load_settings().run_types, runinfo.DEFAULT_RUN_TYPES)  # the shipped file

    def test_bad_lists(self) -> None:
        """An empty list, a twice-declared type or a bad name is refused naming the key."""
        for text, words in [("runs: {types: []}\n", "at least one run type"),
                            ("runs: {types: [a, b, a]}\n", "runs.types[2]"),
                            ("runs: {types: ['two words']}\n", "runs.types[0]")]:
            with self.assertRaises(ConfigError) as caught:
                load_settings(self.write(text))
            self.assertIn(words, str(caught.exception))


class StoreRunTests(StoreTestCase):
    """Run records with type, comments, crew and conditions (schema v5)."""

    CREW: ClassVar[dict[str, str | None]] = {"started_by": "alice", "control_holder": "alice", "ecs_control": "bob"}

    async def test_round_trip(self) -> None:
        """Type, start comment, crew and conditions are written with the run and read back."""
        await self.seed()
        run = await self.store.start_run("p1", "physics", {}, "alice", run_type="cosmics", comment="night",
                                         crew=self.CREW, conditions={"magnet": 0.5, "beam": False})
        self.assertEqual((run.type, run.start_comment, run.end_comment, run.crew, run.conditions),
                         ("cosmics", "night", None, self.CREW, {"magnet": 0.5, "beam": False}))
        self.assertEqual(await self.store.run(run.number), run)
        ended = await self.store.end_run(run.number, "stopped")
        self.assertEqual((ended.type, ended.crew, ended.conditions), ("cosmics", self.CREW, run.conditions))
        self.assertEqual(await self.store.run(run.number), ended)
        plain = await self.store.start_run("p1", None, {}, "alice")
        self.assertEqual((plain.type, plain.start_comment, plain.crew, plain.conditions), (None, None, {}, {}))

    async def test_refused(self) -> None:
        """Bad conditions, comments, types or crews are refused before any SQL, naming the field."""
        await self.seed()
        await self.fails(self.store.start_run("p1", None, {}, "a", conditions={"x": [1]}), "bad_request",
                         "run conditions.x")
        await self.fails(self.store.start_run("p1", None, {}, "a", comment=3), "bad_request",  # type: ignore[arg-type]
                         "run comment")
        await self.fails(self.store.start_run("p1", None, {}, "a", run_type="a b"), "bad_request", "run type")
        await self.fails(self.store.start_run("p1", None, {}, "a", crew={"bad role": "x"}), "bad_request",
                         "crew role")
        self.assertIsNone(await self.store.open_run("p1"))

    async def test_end_comment_written_ahead(self) -> None:
        """A stop's comment is the run's end comment from the moment it is written; a refused stop's is not."""
        await self.seed()
        run = await self.store.start_run("p1", None, {}, "alice")
        audit_id, number = await self.store.command_ahead("alice", "stop", {}, "p1", "bad stop")
        self.assertEqual(number, run.number)
        self.assertEqual((await self.store.run(run.number)).end_comment, "bad stop")
        await self.store.command_done(audit_id, "conflict: refused", refused=True)
        self.assertIsNone((await self.store.run(run.number)).end_comment)
        audit_id, _ = await self.store.command_ahead("alice", "stop", {}, "p1", "good stop")
        await self.store.command_done(audit_id, "ok")
        ended = await self.store.end_run(run.number, "stopped")
        self.assertEqual(ended.end_comment, "good stop")
        await self.store.command_ahead("alice", "abort", {}, "p1", "ignored: not a stop")
        self.assertEqual((await self.store.run(run.number)).end_comment, "good stop")

    async def test_filters(self) -> None:
        """Runs by type and start time; audit entries by time; since inclusive, until exclusive."""
        await self.seed()
        for kind in ("physics", "test", "physics"):
            run = await self.store.start_run("p1", None, {}, "alice", run_type=kind)
            await self.store.audit("alice", "start", {"type": kind}, "ok")
            self.clock.advance(10)
            await self.store.end_run(run.number, "stopped")
            self.clock.advance(10)
        self.assertEqual([r.number for r in await self.store.runs(run_type="physics")], [3, 1])
        self.assertEqual([r.number for r in await self.store.runs(since=T0 + 20)], [3, 2])
        self.assertEqual([r.number for r in await self.store.runs(until=T0 + 20)], [1])
        self.assertEqual([r.number for r in await self.store.runs(run_type="physics", since=T0 + 1)], [3])
        await self.fails(self.store.runs(run_type="x y"), "bad_request", "run type")
        entries = await self.store.audit_entries(action="start", since=T0 + 20, until=T0 + 40)
        self.assertEqual([e.arguments["type"] for e in entries], ["test"])
        await self.fails(self.store.audit_entries(since=float("nan")), "bad_request", "since")
