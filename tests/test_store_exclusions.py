# -*- test-case-name: tests.test_store_exclusions -*-
"""The exclusion operations of the store (issue 14) on a real SQLite file."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ecs.store import ExclusionRow, StoreError
from tests.support.eca_parts import inline_store

T0 = 1_800_000_000.0


class ExclusionStoreTests(SynchronousTestCase):
    """Exclusions in force, their clean-up with the inventory, and the runs' copy."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = inline_store(self, self.clock)
        for partition in ("p1", "p2"):
            self.successResultOf(self.store.add_partition(partition))
        self.successResultOf(self.store.add_detector("STS", "STS", "p1"))
        self.successResultOf(self.store.add_detector("MVD", "STS", "p1"))

    def excluded(self, partition: str | None = None) -> list[tuple[str, str]]:
        return [(r.partition, r.system) for r in self.successResultOf(self.store.exclusions(partition))]

    def test_exclude_and_include(self) -> None:
        """Excluding records who and when, once; including removes it, once."""
        self.assertTrue(self.successResultOf(self.store.exclude_system("p1", "STS", "alice")))
        self.assertFalse(self.successResultOf(self.store.exclude_system("p1", "STS", "bob")))
        self.assertEqual(
            self.successResultOf(self.store.exclusions("p1")), [ExclusionRow("p1", "STS", "alice", T0)]
        )
        self.assertEqual(self.excluded("p2"), [])
        self.assertTrue(self.successResultOf(self.store.include_system("p1", "STS")))
        self.assertFalse(self.successResultOf(self.store.include_system("p1", "STS")))
        self.assertEqual(self.excluded(), [])

    def test_checks(self) -> None:
        """Unknown partitions are not_found; bad names bad_request."""
        failure = self.failureResultOf(self.store.exclude_system("nope", "STS", "alice"), StoreError)
        self.assertEqual(failure.value.code, "not_found")
        failure = self.failureResultOf(self.store.exclude_system("p1", "no spaces", "alice"), StoreError)
        self.assertEqual(failure.value.code, "bad_request")
        failure = self.failureResultOf(self.store.run_exclusions(["1"]), StoreError)  # type: ignore[list-item]
        self.assertEqual(failure.value.code, "bad_request")

    def test_follows_the_inventory(self) -> None:
        """A moved or deleted detector, or a deleted partition, leaves no exclusion behind."""
        for system in ("STS", "MVD", "DCS"):
            self.successResultOf(self.store.exclude_system("p1", system, "alice"))
        self.successResultOf(self.store.move_detector("STS", "p2"))
        self.assertEqual(self.excluded(), [("p1", "DCS"), ("p1", "MVD")])
        self.successResultOf(self.store.delete_detector("MVD"))
        self.assertEqual(self.excluded(), [("p1", "DCS")])
        self.successResultOf(self.store.exclude_system("p2", "DCS", "alice"))
        self.successResultOf(self.store.delete_partition("p1"))
        self.assertEqual(self.excluded(), [("p2", "DCS")])

    def test_run_record(self) -> None:
        """A run keeps who was excluded when it started, whatever changes after."""
        self.successResultOf(self.store.exclude_system("p1", "STS", "alice"))
        run = self.successResultOf(self.store.start_run("p1", "v1", {}, "alice"))
        other = self.successResultOf(self.store.start_run("p2", "v1", {}, "bob"))
        self.successResultOf(self.store.include_system("p1", "STS"))
        found = self.successResultOf(self.store.run_exclusions([run.number, other.number]))
        self.assertEqual(found, {run.number: [ExclusionRow("p1", "STS", "alice", T0)]})
        self.assertEqual(self.successResultOf(self.store.run_exclusions([])), {})

    def test_excluded_during_a_run(self) -> None:
        """A system excluded while its partition records (a recovery rule) is named in that run, not in an ended one."""
        ended = self.successResultOf(self.store.start_run("p1", "v1", {}, "alice"))
        self.successResultOf(self.store.end_run(ended.number, "stopped"))
        run = self.successResultOf(self.store.start_run("p1", "v1", {}, "alice"))
        other = self.successResultOf(self.store.start_run("p2", "v1", {}, "bob"))
        self.clock.advance(60)
        self.successResultOf(self.store.exclude_system("p1", "MVD", "ecs-recovery"))
        found = self.successResultOf(self.store.run_exclusions([ended.number, run.number, other.number]))
        self.assertEqual(found, {run.number: [ExclusionRow("p1", "MVD", "ecs-recovery", T0 + 60)]})
