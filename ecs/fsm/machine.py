# -*- test-case-name: tests.test_fsm -*-
"""
Declarative state machines: YAML state tables run as Automat machines.

A state table (``fsm/*.yaml``) gives only the topology of a machine.  It
declares the states, each with its summary state, the initial state, and rows
of ``[state, input, next state]``.  The vocabulary is fixed in code
(L{ecs.fsm.table}); what a transition does is code too, registered by the
controller that runs the table.

L{Machine} runs a table on an Automat machine built with
C{TypeMachineBuilder} (L{ecs.fsm.build}); the built factory is cached per
table and outputs registry.  Automat is the only judge of a transition: it
moves the machine and runs the transition's outputs, and refuses an input
the table has no row for (turned into L{InvalidTransition}).  The outputs
are a registry of method names keyed by C{(input, target summary)}, called
on the machine's C{outputs} object with the L{Transition} and the arguments
given to L{Machine.fire}, e.g. entering a C{Configuring} state runs the
controller's C{A_run_step}.

The loader (L{load_table}, L{TableError}), the drawing (L{to_dot}) and the
C{ecs fsm} helpers (L{check_files}, L{dot_file}) are re-exported here.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
from automat import NoTransition
from twisted.logger import Logger

from ecs.config.logs import debugging
from ecs.fsm.build import Built, build_machine
from ecs.fsm.draw import check_files, dot_file, to_dot
from ecs.fsm.table import (
    INPUTS,
    StateTable,
    TableError,
    _cache_key,
    load_table,
    parse_table,
)

_log = Logger()


class InvalidTransition(Exception):
    """
    The table has no row for C{input} in C{state}; the machine did not move.

    @ivar state: the state the machine is in (and stays in).
    @ivar input: the input that was refused.
    @ivar allowed: the inputs the table accepts in C{state}.
    """

    def __init__(
        self,
        state: str,
        input: str,
        allowed: list[str],
        table: str | None = None,
        inputs: Sequence[str] = INPUTS,
    ) -> None:
        self.state = state
        self.input = input
        self.allowed = list(allowed)
        self.table = table
        where = f"{table}: " if table else ""
        if input not in inputs:
            why = f"unknown input {input!r} (inputs: {', '.join(inputs)})"
        else:
            why = f"input {input!r} is not possible in state {state!r}"
        accepted = ", ".join(self.allowed) if self.allowed else "none"
        super().__init__(f"{where}{why}; inputs allowed in {state!r}: {accepted}")


# --- running -----------------------------------------------------------------

#: Output method names keyed by C{(input, summary of the target state)}.
Registry = Mapping[tuple[str, str], Sequence[str]]


@attrs.frozen
class Transition:
    """One transition, as its outputs are told: C{old -input-> new}."""

    old: str
    input: str
    new: str


@attrs.define
class _Core:
    """The data behind a running machine: its state name and its outputs object."""

    state: str
    outputs: object = None


_FACTORIES: dict[tuple[object, ...], Built] = {}


def _input_method(name: str) -> Callable[..., None]:
    def method(self: object, *args: object) -> None:
        """Feed this input to the machine."""

    method.__name__ = method.__qualname__ = name
    return method


def _frozen(registry: Registry) -> tuple[tuple[tuple[str, str], tuple[str, ...]], ...]:
    return tuple(sorted((key, tuple(names)) for key, names in registry.items()))


def _check_registry(table: StateTable, registry: Registry) -> None:
    vocabulary = table.vocabulary
    for input, summary in registry:
        if input not in vocabulary.inputs or summary not in vocabulary.summaries:
            raise ValueError(
                f"{table.name}: outputs registered for ({input!r}, {summary!r}), which is not "
                f"an (input, summary state) of a {vocabulary.kind} table"
            )


def _outputs_of(table: StateTable, registry: Registry) -> Callable[[str, str, str], Any]:
    """The behaviour of each row: call its registered outputs on the core's outputs object."""

    def behaviour_for(state: str, input: str, target: str) -> Callable[..., None]:
        names = tuple(registry.get((input, table.summary(target)), ()))
        step = Transition(state, input, target)

        def run_outputs(core: _Core, *args: object) -> None:
            for name in names:
                getattr(core.outputs, name)(step, *args)

        return run_outputs

    return behaviour_for


def _built(table: StateTable, registry: Registry | None = None) -> Built:
    """Build (once per table contents and registry) the Automat machine for C{table}."""
    registry = registry or {}
    key = (_cache_key(table), _frozen(registry))
    built = _FACTORIES.get(key)
    if built is not None:
        return built
    _check_registry(table, registry)
    methods = {name: _input_method(name) for name in table.vocabulary.inputs}
    inputs = types.new_class(
        f"Inputs_{table.name}", (Protocol,), exec_body=lambda ns: ns.update(methods)
    )
    built = _FACTORIES[key] = build_machine(table, inputs, _Core, _outputs_of(table, registry))
    _log.debug("built state machine for table {table}", table=table.name)
    return built


def machine_factory(table: StateTable, registry: Registry | None = None) -> Any:
    """The Automat factory for C{table} (and C{registry}), built on first use and then cached."""
    return _built(table, registry).factory


Observer = Callable[[str, str, str], object]


class Machine:
    """
    A running state machine for one L{StateTable}.

    Inputs are fed with L{fire}; Automat decides whether the table allows
    them and runs the outputs C{registry} names for the transition on
    C{outputs}.  Observers see every transition as C{(old, input, new)}.
    Outputs and observers are called synchronously, so they must not fire
    the machine themselves: hand further inputs to a queue instead.
    """

    _log = Logger()

    def __init__(
        self,
        table: StateTable,
        state: str | None = None,
        outputs: object = None,
        registry: Registry | None = None,
    ) -> None:
        """
        Start a machine for C{table} in C{state} (default: the initial one).

        @param outputs: the object whose methods C{registry} names.
        @param registry: output method names by C{(input, target summary)}.
        @raise ValueError: for an unknown C{state}, or a registry naming an
            input or summary state outside the table's vocabulary or a
            method C{outputs} does not have.
        """
        start = table.initial if state is None else state
        table.summary(start)  # ValueError naming the valid states if unknown
        missing = sorted({n for names in (registry or {}).values() for n in names
                          if not callable(getattr(outputs, n, None))})
        if missing:
            raise ValueError(f"{table.name}: outputs object {outputs!r} lacks {', '.join(missing)}")
        built = _built(table, registry)
        self._table = table
        self._core = _Core(start, outputs)
        # Automat's own initial state is the table's initial one, declared first.
        self._inputs = built.start(self._core, state)
        self._observers: list[Observer] = []
        self._firing = False

    @property
    def table(self) -> StateTable:
        """The table this machine runs."""
        return self._table

    @property
    def state(self) -> str:
        """The current state name."""
        return self._core.state

    @property
    def summary(self) -> str:
        """The summary state of the current state."""
        return self._table.summary(self._core.state)

    @property
    def firing(self) -> bool:
        """Whether an input is being handled (outputs or observers are running)."""
        return self._firing

    def allowed(self) -> list[str]:
        """The inputs the table accepts in the current state."""
        return self._table.inputs_from(self._core.state)

    def can(self, input: str) -> bool:
        """Whether C{input} is possible in the current state."""
        return self._table.next_state(self._core.state, input) is not None

    def _refusal(self, input: str) -> InvalidTransition:
        return InvalidTransition(
            self._core.state, input, self.allowed(), self._table.name,
            self._table.vocabulary.inputs,
        )

    def fire(self, input: str, *args: object) -> str:
        """
        Feed C{input} and return the new state; C{args} go to the outputs.

        @raise InvalidTransition: if Automat refuses C{input} (the table has
            no such row); the machine stays in its state.
        @raise RuntimeError: if called from inside an output or an observer.
        """
        if self._firing:
            raise RuntimeError(
                f"{self._table.name}: fire({input!r}) called from an observer while "
                f"handling another input; queue it for later instead"
            )
        old = self._core.state
        if input not in self._table.vocabulary.inputs:
            raise self._refusal(input)
        self._firing = True
        try:
            try:
                getattr(self._inputs, input)(*args)
            except NoTransition:
                raise self._refusal(input) from None
            new = self._core.state
            if debugging():
                self._log.debug(
                    "{table}: {old} -{input}-> {new}",
                    table=self._table.name, old=old, input=input, new=new,
                )
            for observer in list(self._observers):
                try:
                    observer(old, input, new)
                except Exception:
                    self._log.failure(
                        "{table}: observer {observer!r} failed on {old} -{input}-> {new}",
                        table=self._table.name, observer=observer,
                        old=old, input=input, new=new,
                    )
        finally:
            self._firing = False
        return new

    def observe(self, callback: Observer) -> Callable[[], None]:
        """Call C{callback(old, input, new)} after each transition; returns an unsubscriber."""
        self._observers.append(callback)

        def unsubscribe() -> None:
            if callback in self._observers:
                self._observers.remove(callback)

        return unsubscribe


__all__ = [
    "INPUTS",
    "InvalidTransition",
    "Machine",
    "Observer",
    "Registry",
    "StateTable",
    "TableError",
    "Transition",
    "check_files",
    "dot_file",
    "load_table",
    "machine_factory",
    "parse_table",
    "to_dot",
]
