# -*- test-case-name: tests.test_fsm,tests.test_agent_machine -*-
"""
Build an Automat machine from a checked state table.

The table (L{ecs.fsm.table.StateTable}) gives the topology; the caller gives
the inputs as a C{typing.Protocol} and, for every row, the behaviour that
row performs.  L{build_machine} declares one Automat transition per row with
C{TypeMachineBuilder}: the transition writes the new state name into the
core (Automat has no public accessor for it) and then runs the row's
behaviour with the core and the input's arguments.  An input the table has
no row for in the current state is refused by Automat (C{NoTransition}) and
the state does not change.

Both the controllers' machines (L{ecs.fsm.machine.Machine}) and the
supervisor's agent machine are built here, so there is one way from a YAML
table to a running machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
from automat import TypeMachineBuilder

from ecs.fsm.table import StateTable

#: What a row does: C{behaviour(core, *input arguments)}.
Behaviour = Callable[..., None]


class HasState(Protocol):
    """A machine's core: it keeps the current state name."""

    state: str


@attrs.frozen
class Built:
    """A built Automat factory and its typed states by name."""

    factory: Any
    states: dict[str, Any]

    def start(self, core: HasState, state: str | None = None) -> Any:
        """A running machine over C{core}, in C{state} (default: the table's initial one)."""
        if state is None:
            return self.factory(core)
        return self.factory(core, self.states[state])


def _transition(target: str, behaviour: Behaviour, label: str) -> Callable[..., None]:
    def perform(inputs: object, core: HasState, *args: object) -> None:
        core.state = target
        behaviour(core, *args)

    perform.__name__ = perform.__qualname__ = label
    return perform


def build_machine(
    table: StateTable,
    inputs: type[Any],
    core_type: type[Any],
    behaviour_for: Callable[[str, str, str], Behaviour],
) -> Built:
    """
    Declare C{table} on a C{TypeMachineBuilder(inputs, core_type)}.

    @param inputs: a C{Protocol} with one method per input the table uses.
    @param behaviour_for: C{behaviour_for(state, input, target)}: what that
        row does.  It may raise C{ValueError} to refuse the table.
    """
    builder = TypeMachineBuilder(inputs, core_type)
    # Automat's first declared state is its initial state.
    order = [table.initial] + [s for s in table.states if s != table.initial]
    typed = {state: builder.state(state) for state in order}
    for (state, input), target in table.rows.items():
        behaviour = behaviour_for(state, input, target)
        label = f"{state}_{input}_{target}"
        typed[state].upon(getattr(inputs, input)).to(typed[target])(
            _transition(target, behaviour, label)
        )
    return Built(factory=builder.build(), states=typed)


__all__ = ["Behaviour", "Built", "HasState", "build_machine"]
