"""
The systemd units shipped under C{etc/systemd/} (docs/deployment.md,
section 4): their restart policy, state directory and sandboxing, and that
their command lines are accepted by twistd and by the plugin they name, so
that a renamed option or plugin breaks this test rather than a deployment.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from twisted.internet import reactor, utils
from twisted.python import usage
from twisted.scripts._twistd_unix import ServerOptions  # what twistd uses on POSIX, where units run
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tests.procs import ROOT, tool

UNITS = ROOT / "etc" / "systemd"
AGENT_PLUGINS = {"ecs-pca": "pca", "ecs-detector": "detector", "ecs-global": "global", "ecs-simhost": "simhost"}

#: (section, key, value) every unit must have.
REQUIRED = [
    ("Unit", "After", "network-online.target"),
    ("Service", "Type", "simple"),
    ("Service", "User", "ecs"),
    ("Service", "Restart", "on-failure"),
    ("Service", "StateDirectory", "ecs"),
    ("Service", "StateDirectoryMode", "0700"),
    ("Service", "WorkingDirectory", "/var/lib/ecs"),
    ("Service", "UMask", "0077"),
    ("Service", "NoNewPrivileges", "yes"),
    ("Service", "ProtectSystem", "strict"),
    ("Service", "ProtectHome", "yes"),
    ("Service", "PrivateTmp", "yes"),
    ("Service", "PrivateDevices", "yes"),
    ("Service", "ProtectKernelTunables", "yes"),
    ("Service", "ProtectKernelModules", "yes"),
    ("Service", "ProtectKernelLogs", "yes"),
    ("Service", "ProtectControlGroups", "yes"),
    ("Service", "RestrictNamespaces", "yes"),
    ("Service", "LockPersonality", "yes"),
    ("Service", "SystemCallArchitectures", "native"),
    ("Service", "CapabilityBoundingSet", ""),
    ("Install", "WantedBy", "multi-user.target"),
]
ADDRESS_FAMILIES = {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values, in order]}} (keys may repeat; '\\' continues a line)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    logical = re.sub(r"\s*\\\n\s*", " ", text)
    for number, line in enumerate(logical.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        if current is None or not equals:
            raise ValueError(f"line {number}: not a section or key=value: {line!r}")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_environment_file(text: str) -> dict[str, str]:
    """An EnvironmentFile: KEY=value lines, comments with '#'."""
    environment = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            environment[key.strip()] = value.strip()
    return environment


def expand(command: str, environment: dict[str, str]) -> list[str]:
    """An ExecStart line as systemd runs it: C{${X}} is one word, C{$X} splits at white space."""
    words: list[str] = []
    for word in shlex.split(command):
        whole = re.fullmatch(r"\$\{(\w+)\}", word)
        split = re.fullmatch(r"\$(\w+)", word)
        if whole:
            words.append(environment[whole.group(1)])
        elif split:
            words.extend(environment[split.group(1)].split())
        else:
            words.append(word)
    return words


def twistd_options(argv: list[str]) -> ServerOptions:
    """Parse a twistd command line (options of twistd, then of the plugin) as twistd does."""
    if not argv[0].endswith("/twistd"):
        raise usage.UsageError(f"ExecStart runs {argv[0]}, not a virtualenv's twistd")
    options = ServerOptions()
    options.parseOptions(argv[1:])
    return options


class UnitFileTests(SynchronousTestCase):
    """The shipped units parse and carry the restart policy, state directory and sandboxing."""

    def load(self, name: str) -> dict[str, dict[str, list[str]]]:
        return parse_unit((UNITS / name).read_text(encoding="utf-8"))

    def check_common(self, unit: dict[str, dict[str, list[str]]], name: str) -> None:
        for section, key, value in REQUIRED:
            self.assertIn(value, unit.get(section, {}).get(key, []), f"{name}: [{section}] {key}={value} missing")
        families = set(" ".join(unit["Service"]["RestrictAddressFamilies"]).split())
        self.assertEqual(families, ADDRESS_FAMILIES, name)
        self.assertNotIn("MemoryDenyWriteExecute", unit["Service"], f"{name}: breaks cffi callbacks (see the unit)")
        self.assertEqual(len(unit["Service"]["ExecStart"]), 1, name)

    def check_twistd(self, options: ServerOptions, name: str) -> None:
        """No daemonising, no pid file, the state directory of StateDirectory=."""
        self.assertTrue(options["nodaemon"], f"{name}: twistd must not daemonise under systemd")
        self.assertEqual(options["pidfile"], "", f"{name}: --pidfile= (systemd tracks the process)")
        self.assertEqual(options.subOptions["state-dir"], "/var/lib/ecs", name)
        self.assertEqual(options.subOptions["config"], "/etc/ecs/ecs.yaml", name)

    def test_eca_unit(self) -> None:
        """ecs-eca.service: sandboxed, restarted on failure, and its ExecStart is a valid ecs-eca command line."""
        unit = self.load("ecs-eca.service")
        self.check_common(unit, "ecs-eca.service")
        self.assertEqual(unit["Service"]["KillMode"], ["mixed"])  # the ECA stops its agents itself
        options = twistd_options(expand(unit["Service"]["ExecStart"][0], {}))
        self.assertEqual(options.subCommand, "ecs-eca")
        self.check_twistd(options, "ecs-eca.service")
        self.assertTrue(options.subOptions["autostart"])

    def test_agent_unit(self) -> None:
        """ecs-agent@.service with each example instance file: a valid command line of the plugin the file names."""
        unit = self.load("ecs-agent@.service")
        self.check_common(unit, "ecs-agent@.service")
        self.assertEqual(unit["Service"]["EnvironmentFile"], ["/etc/ecs/agents/%i.env"])
        examples = sorted((UNITS / "agents").glob("*.env"))
        seen = set()
        for example in examples:
            environment = parse_environment_file(example.read_text(encoding="utf-8"))
            options = twistd_options(expand(unit["Service"]["ExecStart"][0], environment))
            assert options.subCommand is not None
            self.assertIn(options.subCommand, AGENT_PLUGINS, example.name)
            self.check_twistd(options, example.name)
            # The instance name is the agent's name with '-' for ':'.
            kind, _, agent_id = example.stem.partition("-")
            self.assertEqual(kind, AGENT_PLUGINS[options.subCommand], example.name)
            named = options.subOptions["prefix"] if options.subCommand == "ecs-simhost" else options.subOptions["id"]
            self.assertEqual(agent_id, named, example.name)
            seen.add(options.subCommand)
        self.assertEqual(seen, set(AGENT_PLUGINS), "an example instance file for every agent plugin")

    def test_a_renamed_option_is_caught(self) -> None:
        """The check fails for an option the plugin does not have, a missing plugin, or a daemonising twistd."""
        unit = self.load("ecs-eca.service")
        command = unit["Service"]["ExecStart"][0]
        self.assertRaises(usage.UsageError, twistd_options, expand(command.replace("--web", "--www"), {}))
        self.assertRaises(usage.UsageError, twistd_options, expand(command.replace("ecs-eca", "ecs-ecaa"), {}))
        options = twistd_options(expand(command.replace("--nodaemon ", ""), {}))
        self.assertRaises(self.failureException, self.check_twistd, options, "changed")

    def test_parser(self) -> None:
        """Continuation lines join, keys repeat, comments are skipped, a stray line is an error."""
        unit = parse_unit("[Service]\n# c\nEnvironment=A=1\nEnvironment=B=2\nExecStart=/x \\\n    --y\n")
        self.assertEqual(unit, {"Service": {"Environment": ["A=1", "B=2"], "ExecStart": ["/x --y"]}})
        self.assertRaises(ValueError, parse_unit, "Key=value\n")
        self.assertEqual(expand("/t ${P} $A", {"P": "ecs-pca", "A": "--id  demo"}), ["/t", "ecs-pca", "--id", "demo"])


class SystemdAnalyzeTests(TestCase):
    """systemd's own checker accepts the units (where systemd-analyze is installed)."""

    def copy_units(self) -> Path:
        """The units in a temporary folder, an instance of the template too, running this virtualenv's twistd."""
        folder = Path(self.mktemp()).resolve()
        folder.mkdir()
        for name, copy in (("ecs-eca.service", "ecs-eca.service"),
                           ("ecs-agent@.service", "ecs-agent@.service"),
                           ("ecs-agent@.service", "ecs-agent@detector-STS.service")):
            text = (UNITS / name).read_text(encoding="utf-8").replace("/opt/ecs/venv/bin/twistd", tool("twistd"))
            (folder / copy).write_text(text, encoding="utf-8")
        return folder

    async def test_verify(self) -> None:
        """systemd-analyze verify reports nothing (the twistd path pointed at this virtualenv's)."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed")
        folder = self.copy_units()
        out, err, code = await utils.getProcessOutputAndValue(
            analyze,
            ["verify", "--man=no", str(folder / "ecs-eca.service"), str(folder / "ecs-agent@detector-STS.service")],
            path=str(folder),
            reactor=reactor,
        )
        report = (out + err).decode("utf-8", "replace")
        self.assertEqual((code, report), (0, ""))
