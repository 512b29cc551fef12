"""
Tests for L{agents.controller.system.SystemController}: the rules of a controlled
system, driven with an action whose steps the test completes by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from agents.controller.actions import ActionFailed, ActionRequest, IAction
from agents.controller.system import SystemController, validate_config
from ecs import protocol
from ecs.fsm.machine import load_table
from ecs.net.transport import RequestError

FSM = Path(__file__).resolve().parent.parent / "fsm"


@implementer(IAction)
class StepAction:
    """An action whose steps stay pending until the test finishes them."""

    def __init__(self) -> None:
        self.requests: list[ActionRequest] = []
        self.pending: list[defer.Deferred[None]] = []
        self.cancelled = 0

    def run(self, request: ActionRequest) -> defer.Deferred[None]:
        self.requests.append(request)

        def cancel(_: Any) -> None:
            self.cancelled += 1

        d: defer.Deferred[None] = defer.Deferred(cancel)
        self.pending.append(d)
        return d

    def succeed(self) -> None:
        self.pending.pop(0).callback(None)

    def fail(self, reason: str = "hardware said no") -> None:
        self.pending.pop(0).errback(ActionFailed(reason))


def config(config_id: str = "c1", **parameters: Any) -> dict[str, Any]:
    return {"config_id": config_id, "parameters": parameters}


class Harness(SynchronousTestCase):
    """Common set-up: a controller with a recording emit."""

    table_name = "detector-2step.yaml"

    def setUp(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.action = StepAction()
        self.controller = SystemController(
            "STS", load_table(FSM / self.table_name), self.action, self.updates.append, "p1"
        )
        self.controller.publish()

    def states(self) -> list[str]:
        return [u["state"] for u in self.updates]

    def assertRefused(self, code: str, command: str, *args: Any) -> RequestError:
        error: RequestError = self.assertRaises(RequestError, self.controller.command, command, *args)
        self.assertEqual(error.code, code)
        return error


class TwoStepDetectorTests(Harness):
    """The two-step detector table through the controller."""

    def test_initial_update_has_sequence_zero(self) -> None:
        """The first report after start is number 0, in the table's initial state."""
        self.assertEqual(self.updates, [
            {"system": "STS", "partition": "p1", "state": "Unconfigured",
             "summary": "Unconfigured", "tag": None, "comment": "", "seq": 0}
        ])

    def test_configure_walks_every_step_to_active(self) -> None:
        """Configure runs one action per configuring state and ends Active with the tag."""
        reply = self.controller.command("configure", config("c1", gain=3))
        self.assertEqual(reply["state"], "Configuring_Step1")
        self.assertTrue(reply["busy"])
        self.action.succeed()
        self.action.succeed()
        self.assertEqual(
            self.states(), ["Unconfigured", "Configuring_Step1", "Configuring_Step2", "Active"]
        )
        self.assertEqual([r.step for r in self.action.requests], ["Configuring_Step1", "Configuring_Step2"])
        first = self.action.requests[0].config
        assert first is not None
        self.assertEqual(first["parameters"], {"gain": 3})
        self.assertEqual(self.controller.tag, "c1")
        self.assertEqual([u["seq"] for u in self.updates], [0, 1, 2, 3])
        self.assertFalse(self.controller.busy)

    def test_busy_while_configuring(self) -> None:
        """Commands other than abort and reset are refused as busy during a transition."""
        self.controller.command("configure", config())
        for command in ("configure", "start", "stop", "error"):
            self.assertRefused(protocol.BUSY, command, config())
        self.assertEqual(self.controller.state, "Configuring_Step1")

    def test_reset_during_transition_is_considered_not_busy(self) -> None:
        """Reset is never refused as busy; the table then decides (not allowed here)."""
        self.controller.command("configure", config())
        error = self.assertRefused(protocol.NOT_ALLOWED, "reset")
        self.assertIn("Configuring_Step1", error.reason)

    def test_not_allowed_names_state_and_possible_inputs(self) -> None:
        """An impossible command is refused with the state and what is possible."""
        error = self.assertRefused(protocol.NOT_ALLOWED, "reset")
        self.assertIn("state Unconfigured", error.reason)
        self.assertIn("configure", error.reason)
        self.assertEqual(self.states(), ["Unconfigured"])

    def test_same_configuration_shortcut(self) -> None:
        """Configuring again with the same id passes through without running the action."""
        self.controller.command("configure", config("c1"))
        self.action.succeed()
        self.action.succeed()
        runs = len(self.action.requests)
        reply = self.controller.command("configure", config("c1"))
        self.assertEqual(reply["state"], "Active")
        self.assertEqual(len(self.action.requests), runs)
        self.assertEqual(self.states()[-3:], ["Configuring_Step1", "Configuring_Step2", "Active"])

    def test_new_configuration_runs_the_action(self) -> None:
        """A different configuration id is real work."""
        self.controller.command("configure", config("c1"))
        self.action.succeed()
        self.action.succeed()
        self.controller.command("configure", config("c2"))
        self.assertEqual(len(self.action.pending), 1)
        self.assertEqual(self.controller.tag, "c2")

    def test_abort_stops_running_action(self) -> None:
        """Abort cancels the running step and goes back to Unconfigured, tag cleared."""
        self.controller.command("configure", config())
        reply = self.controller.command("abort")
        self.assertEqual(self.action.cancelled, 1)
        self.assertEqual(reply["state"], "Unconfigured")
        self.assertIsNone(self.controller.tag)
        self.assertEqual(self.updates[-1]["comment"], "transition aborted")
        self.assertFalse(self.controller.busy)

    def test_abort_when_idle_is_harmless(self) -> None:
        """Abort in Unconfigured is accepted and changes nothing."""
        reply = self.controller.command("abort")
        self.assertEqual(reply["state"], "Unconfigured")
        self.assertEqual(len(self.updates), 1)

    def test_abort_from_active(self) -> None:
        """Abort from Active clears the tag."""
        self.controller.command("configure", config())
        self.action.succeed()
        self.action.succeed()
        self.controller.command("abort")
        self.assertEqual(self.controller.state, "Unconfigured")
        self.assertIsNone(self.updates[-1]["tag"])

    def test_failing_step_goes_to_error_with_reason(self) -> None:
        """A failed step leads to Error, with the reason as comment and no tag."""
        self.controller.command("configure", config())
        self.action.succeed()
        self.action.fail("voltage out of range")
        self.assertEqual(self.controller.state, "Error")
        self.assertIn("voltage out of range", self.updates[-1]["comment"])
        self.assertIsNone(self.updates[-1]["tag"])

    def test_reset_and_resolved_leave_error(self) -> None:
        """Reset (from the partition) and resolved (from the hardware) leave Error."""
        self.controller.inject("error")
        self.assertEqual(self.controller.state, "Error")
        self.controller.command("reset")
        self.assertEqual(self.controller.state, "Unconfigured")
        self.controller.inject("error")
        self.controller.inject("resolved")
        self.assertEqual(self.controller.state, "Unconfigured")

    def test_injected_error_interrupts_transition(self) -> None:
        """A hardware error during a transition kills the step and ends in Error."""
        self.controller.command("configure", config())
        self.controller.inject("error")
        self.assertEqual(self.action.cancelled, 1)
        self.assertEqual(self.controller.state, "Error")

    def test_error_command_from_partition(self) -> None:
        """The partition can put a system into Error (DCS alarm)."""
        self.controller.command("error")
        self.assertEqual(self.controller.state, "Error")

    def test_action_exception_is_contained(self) -> None:
        """An action that raises something unexpected ends in Error, not in a dead controller."""
        self.controller.command("configure", config())
        self.action.pending.pop(0).errback(ZeroDivisionError("oops"))
        self.assertEqual(self.controller.state, "Error")
        self.assertIn("ZeroDivisionError", self.updates[-1]["comment"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.controller.command("reset")
        self.assertEqual(self.controller.state, "Unconfigured")

    def test_unknown_command(self) -> None:
        """An unknown command is a bad request naming the known ones."""
        error = self.assertRefused(protocol.BAD_REQUEST, "explode")
        self.assertIn("configure", error.reason)

    def test_emit_failure_does_not_break_controller(self) -> None:
        """A failing update sink is logged; the state still changes."""
        def broken(update: dict[str, Any]) -> None:
            raise RuntimeError("sink down")

        controller = SystemController(
            "X", load_table(FSM / self.table_name), self.action, broken
        )
        controller.command("error")
        self.assertEqual(controller.state, "Error")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ConfigValidationTests(SynchronousTestCase):
    """Configurations sent with configure are checked field by field."""

    def test_valid(self) -> None:
        """A proper configuration is normalised with the system id."""
        self.assertEqual(
            validate_config("STS", {"config_id": "a", "parameters": {"x": 1}}),
            {"config_id": "a", "system": "STS", "parameters": {"x": 1}},
        )

    def test_rejections(self) -> None:
        """Each malformed configuration is refused with the field named."""
        cases: list[tuple[object, str]] = [
            (None, "config"),
            ({"parameters": {}}, "config_id"),
            ({"config_id": ""}, "config_id"),
            ({"config_id": "a", "parameters": []}, "parameters"),
            ({"config_id": "a", "system": "TOF"}, "TOF"),
            ({"config_id": "a", "extra": 1}, "extra"),
        ]
        for value, word in cases:
            error = self.assertRaises(RequestError, validate_config, "STS", value)
            self.assertEqual(error.code, protocol.BAD_REQUEST)
            self.assertIn(word, error.reason)


class ThreeStepDetectorTests(Harness):
    """The three-step detector has no Error state: failures lead to Unconfigured."""

    table_name = "detector-3step.yaml"

    def test_three_steps(self) -> None:
        """Configure takes three steps."""
        self.controller.command("configure", config())
        for _ in range(3):
            self.action.succeed()
        self.assertEqual(self.controller.state, "Active")
        self.assertEqual(len(self.action.requests), 3)

    def test_failure_goes_to_unconfigured(self) -> None:
        """Without an error row the failed transition falls back along abort."""
        self.controller.command("configure", config())
        self.action.fail("no")
        self.assertEqual(self.controller.state, "Unconfigured")
        self.assertIn("transition failed: no", self.updates[-1]["comment"])


class RecordingGlobalSystemTests(Harness):
    """QA and FLES start and stop recording, keeping their configuration."""

    table_name = "global-recording.yaml"

    def test_start_stop_keeps_tag(self) -> None:
        """Start and stop move between Active and Recording with the tag kept."""
        self.controller.command("configure", config("qa1"))
        self.action.succeed()
        self.controller.command("start")
        self.assertEqual(self.controller.state, "Recording")
        self.assertEqual(self.updates[-1]["summary"], "Recording")
        self.controller.command("stop")
        self.assertEqual(self.controller.state, "Active")
        self.assertEqual(self.controller.tag, "qa1")

    def test_start_refused_when_unconfigured(self) -> None:
        """Start needs Active."""
        self.assertRefused(protocol.NOT_ALLOWED, "start")


@implementer(IAction)
class InstantAction:
    """An action whose steps succeed (or fail) before C{run} returns."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.steps: list[str] = []
        self.fail_at = fail_at

    def run(self, request: ActionRequest) -> defer.Deferred[None]:
        self.steps.append(request.step)
        if request.step == self.fail_at:
            return defer.fail(ActionFailed("broke at once"))
        return defer.succeed(None)


class MachineDrivenTests(SynchronousTestCase):
    """The table's Automat machine makes the controller's transitions and runs their outputs."""

    def controller(self, action: IAction) -> tuple[SystemController, list[dict[str, Any]]]:
        updates: list[dict[str, Any]] = []
        table = load_table(FSM / "detector-2step.yaml")
        return SystemController("STS", table, action, updates.append, "p1"), updates

    def test_instant_steps_are_queued_not_reentrant(self) -> None:
        """Steps that finish inside the output that started them are fed after it, one report each, in order."""
        action = InstantAction()
        controller, updates = self.controller(action)
        reply = controller.command("configure", config("c1"))
        self.assertEqual(action.steps, ["Configuring_Step1", "Configuring_Step2"])
        self.assertEqual([u["state"] for u in updates], ["Configuring_Step1", "Configuring_Step2", "Active"])
        self.assertEqual([u["seq"] for u in updates], [0, 1, 2])
        self.assertEqual((reply["state"], reply["busy"], controller.tag), ("Active", False, "c1"))

    def test_instant_failure(self) -> None:
        """A step that fails at once leads along the error row, the tag forgotten, the reason kept."""
        controller, _ = self.controller(InstantAction(fail_at="Configuring_Step2"))
        controller.command("configure", config("c1"))
        self.assertEqual(controller.state, "Error")
        self.assertEqual((controller.tag, controller.comment), (None, "transition failed: broke at once"))
        self.assertFalse(controller.busy)

    def test_outputs_run_by_the_machine(self) -> None:
        """The registered outputs are what a transition does: each runs once per transition."""
        action = InstantAction()
        controller, _ = self.controller(action)
        calls: list[tuple[str, str, str]] = []
        for name in ("C_take_config", "C_forget_config", "C_report", "A_run_step"):
            real = getattr(controller, name)

            def spy(step: Any, note: Any, _name: str = name, _real: Any = real) -> None:
                calls.append((_name, step.input, step.new))
                _real(step, note)

            setattr(controller, name, spy)
        controller.command("configure", config("c1"))
        controller.command("abort")
        self.assertEqual(calls, [
            ("C_take_config", "configure", "Configuring_Step1"),
            ("C_report", "configure", "Configuring_Step1"),
            ("A_run_step", "configure", "Configuring_Step1"),
            ("C_report", "success", "Configuring_Step2"),
            ("A_run_step", "success", "Configuring_Step2"),
            ("C_report", "success", "Active"),
            ("C_forget_config", "abort", "Unconfigured"),
            ("C_report", "abort", "Unconfigured"),
        ])
