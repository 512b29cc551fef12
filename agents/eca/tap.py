# -*- test-case-name: tests.test_demo -*-
"""
C{twistd -n ecs-eca} and C{twistd -n ecs-demo}: their options and
C{makeService}, which reads the settings and returns an L{ECAService}
(L{agents.eca.service}: the ECA with its web API and SSH shell; for the
demo, a seeded database and every agent placed C{local} on C{localhost}
and started by the ECA's supervisor).  The supervisor adopts the agents
still running from before and, with C{--autostart} (always on for the
demo), starts every placed autostart agent; when the ECA stops it stops
them all (unless C{--keep-agents}).  A failure to start is logged and the
process exits non-zero.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any, ClassVar

from twisted.application import service
from twisted.logger import Logger
from twisted.python import usage

from agents.eca.demo import DEMO_DETECTORS, seed_demo, seed_demo_placements
from agents.eca.service import ECAService

_log = Logger()

__all__ = [
    "DEMO_DETECTORS",
    "DemoOptions",
    "ECAService",
    "Options",
    "makeDemoService",
    "makeService",
    "seed_demo",
    "seed_demo_placements",
]


class Options(usage.Options):
    """Options of C{ecs-eca}."""

    optParameters: ClassVar[list[list[Any]]] = [
        ["config", "c", None, "Settings file (default: the installed etc/ecs.yaml)."],
        ["subsystems", None, None, "Detector types and global systems (default: etc/subsystems.yaml)."],
        ["sequence", None, None, "Partition sequence (default: the installed fsm/partition.yaml)."],
        ["recovery", None, None, "Recovery rules, read at start and reload (default: fsm/recovery.yaml)."],
        ["sequences", None, None, "Folder of run sequences, read at start and reload (default: etc/sequences)."],
        ["state-dir", None, None, "State directory: database, keys, logs (default ./var)."],
        ["web", None, "tcp:8080:interface=127.0.0.1", "Web endpoint (Twisted endpoint string; ssl:... for TLS)."],
        ["port", None, None, "Web port on 127.0.0.1 (shortcut for --web tcp:PORT:interface=127.0.0.1)."],
        ["registry-port", None, None, "Registry port on 127.0.0.1 (overrides registry.address)."],
        [
            "ssh",
            None,
            None,
            "SSH admin shell endpoint (default tcp:2222:interface=127.0.0.1, skipped if taken; none: no shell).",
        ],
        [
            "ssh-port",
            None,
            None,
            "SSH admin shell port on 127.0.0.1 (shortcut for --ssh tcp:PORT:interface=127.0.0.1).",
        ],
        ["security", None, None, "Override the settings' security mode: curve or none."],
        ["control-timeout", None, "1200", "Seconds without activity after which control is released."],
        ["log-retention", None, "30", "Days the stored log lines are kept."],
    ]
    optFlags: ClassVar[list[list[Any]]] = [
        ["autostart", None, "Start every placed agent with autostart at start-up (always on for ecs-demo)."],
        ["keep-agents", None, "Leave the agents running when the ECA stops (a restarted ECA adopts them)."],
    ]

    def postOptions(self) -> None:
        """Check what needs no files."""
        for name in ("control-timeout", "log-retention"):
            try:
                if float(self[name]) <= 0:
                    raise ValueError
            except ValueError:
                raise usage.UsageError(f"--{name} must be a positive number, got {self[name]!r}") from None
        for name in ("port", "registry-port", "ssh-port"):
            if self[name] is not None and not (str(self[name]).isdigit() and 0 < int(self[name]) < 65536):
                raise usage.UsageError(f"--{name} must be a port number, got {self[name]!r}")
        if self["port"]:
            self["web"] = f"tcp:{self['port']}:interface=127.0.0.1"
        if self["ssh-port"]:
            self["ssh"] = f"tcp:{self['ssh-port']}:interface=127.0.0.1"


class DemoOptions(Options):
    """Options of C{ecs-demo}."""

    optParameters: ClassVar[list[list[Any]]] = [
        ["detectors", None, "0", "Extra simulated detectors in partition demo."]
    ]

    def postOptions(self) -> None:
        """Check --detectors."""
        super().postOptions()
        if not str(self["detectors"]).isdigit():
            raise usage.UsageError("--detectors must be a number")


STATE_DIR_MODE = 0o700


def private_state_dir(path: Path) -> None:
    """
    Create the state directory 0700 (it holds the database, keys and
    passwords); an existing one open to others is left as it is, with a
    warning (tighten it by hand if nothing else needs it).
    """
    from ecs.config.settings import fail

    try:
        path.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as e:
        fail(f"cannot create the state directory {path}: {e}")
    if mode & 0o077:
        _log.warn(
            "state directory {path} is mode {mode:o}: others may read it (0700 is advised)", path=str(path), mode=mode
        )


def _compose(options: Options, demo: int | None) -> service.IService:
    import attrs
    from twisted.internet import reactor

    from agents._tap import Composition
    from ecs.config.settings import fail
    from ecs.fsm.reload import CoordinationFiles, VocabularyFiles, read_coordination, read_vocabulary
    from ecs.net.identity import ECA
    from ecs.schema import ConfigError

    options.setdefault("inventory", None)  # the ECA is the registry: no inventory
    composition = Composition(options)
    settings = composition.settings
    private_state_dir(settings.state_dir)
    if options["registry-port"]:
        settings = attrs.evolve(settings, registry_address=f"tcp://127.0.0.1:{options['registry-port']}")
    try:
        # the sequence and every state table, checked now (a few small files,
        # before the reactor runs); a reload reads the same files again
        vocabulary = read_vocabulary(VocabularyFiles(sequence=options["sequence"]), composition.subsystems)
    except ConfigError as e:
        fail(e)
    sequence = vocabulary.sequence
    # the recovery rules and the run sequences (a few small files; the sequences checked against the
    # partition states and run types); a reload reads the same files again
    coordination_files = CoordinationFiles(options["recovery"], options["sequences"])
    try:
        coordination = read_coordination(coordination_files, sequence.states(), settings.run_types)
    except ConfigError as e:
        fail(e)
    keys = composition.keys_for(ECA)
    if keys is not None and keys.server_secret is None:
        # Every agent and client reaches the registry with server.key.
        fail(
            f"the ECA serves the registry with the server pair: no {settings.key_dir / 'server.key_secret'} "
            f"(run `ecs keys init --dir {settings.key_dir}` on the ECA's host)"
        )
    agent_args: list[str] = []
    for name in ("config", "subsystems", "security"):
        if options[name]:
            agent_args += [f"--{name}", str(options[name])]
    if options["registry-port"]:
        # the agents must find this registry: give them a settings override file
        override = settings.state_dir / "demo-ecs.yaml"
        import yaml

        from ecs.config.settings import load_yaml

        base = load_yaml(options["config"]) if options["config"] else {}
        data = dict(base) if isinstance(base, dict) else {}
        data["registry"] = {**(data.get("registry") or {}), "address": settings.registry_address}
        override.write_text(yaml.safe_dump(data), encoding="utf-8")
        if "--config" in agent_args:
            index = agent_args.index("--config")
            del agent_args[index : index + 2]
        agent_args += ["--config", str(override)]
    return ECAService(
        settings,
        composition.subsystems,
        sequence,
        keys,
        options["web"],
        reactor,
        demo_detectors=demo,
        agent_args=agent_args,
        control_timeout=float(options["control-timeout"]),
        log_retention=float(options["log-retention"]) * 86400.0,
        autostart=bool(options["autostart"]) or demo is not None,
        stop_agents=not options["keep-agents"],
        ssh=options["ssh"],
        tables=vocabulary.tables,
        recovery=coordination.rules,
        run_sequences=coordination.sequences,
        coordination_files=coordination_files,
    )


def makeService(options: Options) -> service.IService:
    """C{ecs-eca}."""
    return _compose(options, None)


def makeDemoService(options: DemoOptions) -> service.IService:
    """C{ecs-demo}: keys made if missing, the demo seeded, every agent launched."""
    from ecs.config.settings import load_settings
    from ecs.net.keys import init_keys

    settings = load_settings(options["config"], options["state-dir"])
    private_state_dir(settings.state_dir)
    if settings.security == "curve" and not (settings.key_dir / "server.key_secret").exists():
        init_keys(settings.key_dir)
    return _compose(options, int(options["detectors"]))
