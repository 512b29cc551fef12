# -*- test-case-name: tests.test_recovery_rules -*-
"""
The declared recovery rules (C{fsm/recovery.yaml}, issue 14): what the ECA
does when a system goes to Error, becomes unreachable, or its agent dies,
depending on the state of its partition.

The file::

    defaults:                     # every system
      error: alarm_only
    types:                        # by subsystem type (a detector type, or a global system id)
      TOF:
        error:
          recording: {action: exclude_and_continue, max: 3, within: 600}
          configured: reset_and_reconfigure
    systems:                      # by system id: wins over its type
      RICH:
        agent_died: {any: {action: restart, max: 2, within: 300}}

Under an event (L{EVENTS}) either one rule for every partition state, or
a mapping from partition state (L{STATES}) to a rule; a rule is an action
name (L{ACTIONS}) or C{{action, max, within}}: at most C{max} actions in
C{within} seconds, then an alarm (escalation) instead.  What no rule
covers is C{alarm_only}: today's behaviour (the alarm the ECA raises
anyway), so an empty file, or the shipped one, changes nothing.

L{parse_rules} checks everything and raises L{ecs.schema.ConfigError}
with one line per problem naming the file, the key path and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ecs import paths
from ecs.config.yamlfile import load_yaml
from ecs.schema import ConfigError

#: A system or type name (as the store's names: the fsm layer does not import it).
NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")

#: The events a rule answers.
EVENTS = ("error", "unreachable", "agent_died")

#: The partition states a rule may depend on (C{configured}: any state
#: with a stage configured, not recording; C{any}: whatever is not named).
STATES = ("recording", "configured", "idle", "any")

#: The actions.
ACTIONS = ("alarm_only", "restart", "reset_and_reconfigure", "exclude_and_continue", "stop_run")

#: Where each action makes sense (None: everywhere).
ACTION_EVENTS: dict[str, tuple[str, ...] | None] = {
    "alarm_only": None,
    "restart": ("agent_died",),
    "reset_and_reconfigure": ("error",),
    "exclude_and_continue": ("error", "unreachable"),
    "stop_run": None,
}

#: The limits when a rule names none: 3 actions in 10 minutes.
DEFAULT_MAX = 3
DEFAULT_WITHIN = 600.0
#: The longest window (one day) and the most attempts in it.
MAX_WITHIN = 86400.0
MAX_ATTEMPTS = 100


@attrs.frozen
class Rule:
    """One rule: the action and its limit (C{max} actions in C{within} seconds)."""

    action: str
    max: int = DEFAULT_MAX
    within: float = DEFAULT_WITHIN

    def to_json(self) -> dict[str, Any]:
        """C{{action, max, within}}."""
        return {"action": self.action, "max": self.max, "within": self.within}


ALARM_ONLY = Rule("alarm_only")

#: Where a file declares a rule: (scope, name, event, partition state).
Where = tuple[str, ...]
#: Where the rule no file declares is (L{ALARM_ONLY}).
NOWHERE: Where = ()

#: event -> partition state -> rule
Rules = dict[str, dict[str, Rule]]


@attrs.frozen
class RecoveryRules:
    """The rules of a file: defaults, by type, by system."""

    source: str = "(none)"
    defaults: Rules = attrs.field(factory=dict)
    types: dict[str, Rules] = attrs.field(factory=dict)
    systems: dict[str, Rules] = attrs.field(factory=dict)

    def rule(self, event: str, state: str, system: str, type: str | None) -> Rule:
        """The rule for C{event} of C{system} (of C{type}) while its partition is in C{state} (a L{STATES})."""
        return self.locate(event, state, system, type)[0]

    def locate(self, event: str, state: str, system: str, type: str | None) -> tuple[Rule, Where]:
        """
        L{rule}, and where the file declares it: C{(scope, name, event,
        state)} (scope C{systems}, C{types} or C{defaults}, name C{*} for the
        defaults), or L{NOWHERE} for the C{alarm_only} no rule declares.
        """
        scopes: tuple[tuple[str, str, Rules | None], ...] = (
            ("systems", system, self.systems.get(system)),
            ("types", type or "", self.types.get(type) if type else None),
            ("defaults", "*", self.defaults),
        )
        for scope, name, rules in scopes:
            by_state = (rules or {}).get(event)
            if by_state:
                for named in (state, "any"):
                    if named in by_state:
                        return by_state[named], (scope, name, event, named)
        return ALARM_ONLY, NOWHERE

    def at(self, where: Where) -> Rule | None:
        """The rule declared at C{where} (as L{locate} names it), or None when the file has none there."""
        if where == NOWHERE:
            return None
        scope, name, event, state = where
        named = {"systems": self.systems, "types": self.types}
        rules = self.defaults if scope == "defaults" else named[scope].get(name)
        return (rules or {}).get(event, {}).get(state)

    def table(self) -> list[dict[str, Any]]:
        """Every rule as rows C{{scope, name, event, state, action, max, within}} (the state machines page)."""
        rows = []
        scopes: list[tuple[str, str, Rules]] = [("defaults", "*", self.defaults)]
        scopes += [("type", name, rules) for name, rules in sorted(self.types.items())]
        scopes += [("system", name, rules) for name, rules in sorted(self.systems.items())]
        for scope, name, rules in scopes:
            for event, by_state in rules.items():
                for state, rule in by_state.items():
                    rows.append({"scope": scope, "name": name, "event": event, "state": state, **rule.to_json()})
        return rows


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _rule(value: object, where: str, event: str, problems: list[str]) -> Rule | None:
    if isinstance(value, str):
        value = {"action": value}
    if not isinstance(value, Mapping):
        problems.append(f"{where}: a rule is an action name or a mapping {{action, max, within}}")
        return None
    unknown = sorted(str(k) for k in value if k not in ("action", "max", "within"))
    if unknown:
        problems.append(f"{where}.{unknown[0]}: unknown key (use action, max, within)")
    action = value.get("action")
    if action not in ACTIONS:
        problems.append(f"{where}.action: unknown action {action!r} (use {', '.join(ACTIONS)})")
        return None
    allowed = ACTION_EVENTS[str(action)]
    if allowed is not None and event not in allowed:
        problems.append(f"{where}.action: {action} is not for {event} (only {', '.join(allowed)})")
    most, within = value.get("max", DEFAULT_MAX), value.get("within", DEFAULT_WITHIN)
    if not isinstance(most, int) or isinstance(most, bool) or not 1 <= most <= MAX_ATTEMPTS:
        problems.append(f"{where}.max: must be a whole number from 1 to {MAX_ATTEMPTS}, got {most!r}")
        most = DEFAULT_MAX
    if not _number(within) or not 0 < within <= MAX_WITHIN:
        problems.append(f"{where}.within: must be seconds, more than 0 and at most {MAX_WITHIN:g}, got {within!r}")
        within = DEFAULT_WITHIN
    return Rule(str(action), most, float(within))


def _rules(value: object, where: str, problems: list[str]) -> Rules:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{where}: must map events ({', '.join(EVENTS)}) to rules")
        return {}
    rules: Rules = {}
    for event, by_state in value.items():
        at = f"{where}.{event}"
        if event not in EVENTS:
            problems.append(f"{at}: unknown event (use {', '.join(EVENTS)})")
            continue
        if isinstance(by_state, Mapping) and "action" not in by_state:
            states: dict[str, Rule] = {}
            for state, rule in by_state.items():
                if state not in STATES:
                    problems.append(f"{at}.{state}: unknown partition state (use {', '.join(STATES)})")
                    continue
                found = _rule(rule, f"{at}.{state}", event, problems)
                if found is not None:
                    states[state] = found
            rules[event] = states
        else:
            found = _rule(by_state, at, event, problems)
            if found is not None:
                rules[event] = {"any": found}
    return rules


def _named(value: object, where: str, problems: list[str]) -> dict[str, Rules]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{where}: must map names to rules")
        return {}
    named = {}
    for name, rules in value.items():
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            problems.append(f"{where}.{name}: not a name (letters, digits, _ . : @ -)")
            continue
        named[name] = _rules(rules, f"{where}.{name}", problems)
    return named


def parse_rules(data: object, source: str) -> RecoveryRules:
    """Check and build the rules of C{data} (read from C{source}); L{ConfigError} naming every problem."""
    if data is None:
        return RecoveryRules(source)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: must be a mapping with defaults, types, systems")
    problems: list[str] = []
    unknown = sorted(str(k) for k in data if k not in ("defaults", "types", "systems"))
    for key in unknown:
        problems.append(f"{key}: unknown key (use defaults, types, systems)")
    rules = RecoveryRules(
        source,
        _rules(data.get("defaults"), "defaults", problems),
        _named(data.get("types"), "types", problems),
        _named(data.get("systems"), "systems", problems),
    )
    if problems:
        raise ConfigError([f"{source}: {p}" for p in problems])
    return rules


def load_rules(path: str | Path | None = None) -> RecoveryRules:
    """Load and check a rules file (by default the shipped C{fsm/recovery.yaml}); L{ConfigError}."""
    if path is None:
        try:
            path = paths.data_dir("fsm") / "recovery.yaml"
        except FileNotFoundError as e:
            raise ConfigError(str(e)) from None
    return parse_rules(load_yaml(path), str(path))
