# -*- test-case-name: tests.test_config -*-
"""
Tests for L{ecs.config.settings}: the schema helper, the settings and subsystems
loaders, and the shipped C{etc/} files.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import yaml
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ecs import paths
from ecs.config.settings import (
    SETTINGS_SCHEMA,
    ActionSpec,
    ConfigError,
    Field,
    Int,
    ListOf,
    MappingOf,
    Number,
    OneOf,
    Record,
    Str,
    Subsystems,
    SystemType,
    Tagged,
    fail,
    format_path,
    load_settings,
    load_subsystems,
    load_yaml,
    validate,
)
from ecs.schema import Bool

SHIPPED_FSMS = ("detector-2step.yaml", "detector-3step.yaml", "global.yaml", "global-recording.yaml")


class _FileTestCase(SynchronousTestCase):
    """Base for tests that write small files into fresh temporary directories."""

    def make_dir(self) -> Path:
        """A new, empty directory for this test."""
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        return directory

    def write(self, directory: Path, name: str, text: str) -> Path:
        """Write C{text} (dedented) to C{directory/name} and return its path."""
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path


class ValidateTests(SynchronousTestCase):
    """The generic schema helper."""

    def problems(self, data: object, schema: object) -> list[str]:
        """The problem lines C{validate} reports for C{data}, failing if none."""
        error = self.assertRaises(ConfigError, validate, data, schema, "doc.yaml")
        return list(error.problems)

    def test_record_fills_defaults(self) -> None:
        """Missing optional keys take their defaults; given keys are kept."""
        schema = Record({"a": Field(Int()), "b": Field(Str(), default="x")})
        self.assertEqual(validate({"a": 3}, schema, "doc.yaml"), {"a": 3, "b": "x"})

    def test_mutable_default_not_shared(self) -> None:
        """Each result gets its own copy of a mutable default."""
        schema = Record({"items": Field(ListOf(Str()), default=[])})
        first = validate({}, schema, "doc.yaml")
        first["items"].append("changed")
        self.assertEqual(validate({}, schema, "doc.yaml"), {"items": []})

    def test_bool_is_not_an_int(self) -> None:
        """C{true} is rejected where an integer is expected."""
        self.assertEqual(
            self.problems({"n": True}, Record({"n": Field(Int())})),
            ["doc.yaml: n: expected an integer, got a boolean (true)"],
        )

    def test_bool_is_not_a_number(self) -> None:
        """C{false} is rejected where a number is expected."""
        self.assertEqual(
            self.problems(False, Number()),
            ["doc.yaml: expected a number, got a boolean (false)"],
        )

    def test_float_is_not_an_int(self) -> None:
        """A float is rejected where an integer is expected."""
        self.assertEqual(self.problems(3.0, Int()), ["doc.yaml: expected an integer, got 3.0"])

    def test_number_returns_float(self) -> None:
        """An integer given for a number comes back as a float."""
        result = validate(2, Number(ge=0), "doc.yaml")
        self.assertEqual((result, type(result)), (2.0, float))

    def test_number_rejects_non_finite(self) -> None:
        """NaN and infinity are not numbers for configuration purposes."""
        self.assertEqual(self.problems(float("nan"), Number()), ["doc.yaml: expected a number, got nan"])
        self.assertEqual(self.problems(float("inf"), Number()), ["doc.yaml: expected a number, got inf"])

    def test_number_bounds(self) -> None:
        """Bounds are enforced and described in the message."""
        self.assertEqual(
            self.problems(1.5, Number(ge=0, le=1)), ["doc.yaml: expected a number from 0 to 1, got 1.5"]
        )
        self.assertEqual(
            self.problems(0, Int(gt=0, lt=10)),
            ["doc.yaml: expected an integer greater than 0 and less than 10, got 0"],
        )
        self.assertEqual(validate(0, Number(ge=0), "doc.yaml"), 0.0)

    def test_bool(self) -> None:
        """Bool accepts only true and false."""
        self.assertIs(validate(True, Bool(), "doc.yaml"), True)
        self.assertEqual(self.problems("yes", Bool()), ["doc.yaml: expected true or false, got 'yes'"])

    def test_one_of(self) -> None:
        """OneOf names the choices and the value given."""
        self.assertEqual(validate("b", OneOf("a", "b"), "doc.yaml"), "b")
        self.assertEqual(self.problems("c", OneOf("a", "b")), ["doc.yaml: expected one of a, b, got 'c'"])

    def test_one_of_compares_types(self) -> None:
        """OneOf(1) does not accept true, although True == 1."""
        self.assertEqual(self.problems(True, OneOf(1, 2)), ["doc.yaml: expected one of 1, 2, got a boolean (true)"])

    def test_str_pattern_and_empty(self) -> None:
        """Str rejects empty strings by default, non-strings, and pattern mismatches."""
        self.assertEqual(self.problems("", Str()), ["doc.yaml: expected a non-empty string, got ''"])
        self.assertEqual(validate("", Str(allow_empty=True), "doc.yaml"), "")
        self.assertEqual(self.problems(5, Str()), ["doc.yaml: expected a non-empty string, got 5"])
        self.assertEqual(
            self.problems("ab1", Str(pattern="[a-z]+", description="lower-case letters")),
            ["doc.yaml: expected lower-case letters, got 'ab1'"],
        )

    def test_list_paths_name_the_index(self) -> None:
        """A bad list item is reported with its index in the key path."""
        schema = Record({"args": Field(ListOf(Str()))})
        self.assertEqual(
            self.problems({"args": ["ok", 7]}, schema),
            ["doc.yaml: args[1]: expected a non-empty string, got 7"],
        )

    def test_mapping_of_checks_keys_and_values(self) -> None:
        """MappingOf reports bad keys and bad values under the key's path."""
        schema = MappingOf(Int(), keys=Str(pattern="[a-z]+", description="a lower-case name"))
        self.assertEqual(validate({"a": 1}, schema, "doc.yaml"), {"a": 1})
        self.assertEqual(
            self.problems({"a": "x", "B": 2}, schema),
            [
                "doc.yaml: a: expected an integer, got 'x'",
                "doc.yaml: B: expected a lower-case name, got 'B'",
            ],
        )

    def test_unknown_key_suggests(self) -> None:
        """An unknown key is named with the allowed keys and a close match."""
        schema = Record({"outer": Field(Record({"interval": Field(Number())}))})
        self.assertEqual(
            self.problems({"outer": {"intervl": 1}}, schema),
            [
                "doc.yaml: outer: unknown key 'intervl' (did you mean 'interval'? allowed: interval)",
                "doc.yaml: outer.interval: required key is missing (expected a number)",
            ],
        )

    def test_wrong_container_type(self) -> None:
        """A list where a mapping is expected is reported as such."""
        self.assertEqual(
            self.problems({"r": [1]}, Record({"r": Field(Record({}))})),
            ["doc.yaml: r: expected a mapping, got a list"],
        )

    def test_record_checks_run_after_keys(self) -> None:
        """Cross-key checks see the normalised values and report under their path."""

        def ordered(values: dict, path: tuple, problems: object) -> None:
            """Report lo above hi."""
            if values["lo"] > values["hi"]:
                problems.add((*path, "lo"), "must not exceed hi")  # type: ignore[attr-defined]

        schema = Record({"r": Field(Record({"lo": Field(Int()), "hi": Field(Int())}, checks=[ordered]))})
        self.assertEqual(self.problems({"r": {"lo": 2, "hi": 1}}, schema), ["doc.yaml: r.lo: must not exceed hi"])
        self.assertEqual(validate({"r": {"lo": 1, "hi": 2}}, schema, "doc.yaml"), {"r": {"lo": 1, "hi": 2}})

    def test_tagged_picks_variant(self) -> None:
        """Tagged checks the rest of the mapping with the variant its tag names."""
        schema = Tagged("kind", {"a": Record({"x": Field(Int(), default=1)}), "b": Record({"y": Field(Str())})})
        self.assertEqual(validate({"kind": "a"}, schema, "doc.yaml"), {"kind": "a", "x": 1})
        self.assertEqual(
            self.problems({"kind": "a", "y": "s"}, schema),
            ["doc.yaml: unknown key 'y' (allowed for kind 'a': kind, x)"],
        )
        self.assertEqual(
            self.problems({"kind": "c"}, schema), ["doc.yaml: kind: expected one of a, b, got 'c'"]
        )
        self.assertEqual(
            self.problems({}, schema), ["doc.yaml: kind: required key is missing (expected one of a, b)"]
        )

    def test_format_path_quotes_odd_names(self) -> None:
        """Names with dots are quoted so the key path stays unambiguous."""
        self.assertEqual(format_path(("detector_types", "A.1", "fsm")), "detector_types['A.1'].fsm")
        self.assertEqual(format_path(("args", 0)), "args[0]")
        self.assertEqual(format_path(()), "")

    def test_all_problems_reported(self) -> None:
        """Several problems are all reported, one per line of the message."""
        schema = Record({"a": Field(Int()), "b": Field(Int())})
        error = self.assertRaises(ConfigError, validate, {"a": "x", "b": "y"}, schema, "doc.yaml")
        self.assertEqual(
            str(error),
            "doc.yaml: a: expected an integer, got 'x'\ndoc.yaml: b: expected an integer, got 'y'",
        )


class LoadYamlTests(_FileTestCase):
    """Reading YAML files."""

    def test_reads_document(self) -> None:
        """A valid file gives its document."""
        path = self.write(self.make_dir(), "a.yaml", "a: [1, 2]\n")
        self.assertEqual(load_yaml(path), {"a": [1, 2]})

    def test_missing_file(self) -> None:
        """A missing file is a ConfigError naming the file."""
        path = self.make_dir() / "absent.yaml"
        error = self.assertRaises(ConfigError, load_yaml, path)
        self.assertEqual(str(error), f"{path}: file not found")

    def test_directory(self) -> None:
        """A directory given as the file is a ConfigError naming it."""
        directory = self.make_dir()
        error = self.assertRaises(ConfigError, load_yaml, directory)
        self.assertEqual(str(error), f"{directory}: is a directory, expected a YAML file")

    def test_syntax_error_names_line(self) -> None:
        """A YAML syntax error names the file, line and column."""
        path = self.write(self.make_dir(), "bad.yaml", "a: 1\nb: [1, 2\nc: 3\n")
        error = self.assertRaises(ConfigError, load_yaml, path)
        self.assertTrue(str(error).startswith(f"{path}: line "), str(error))
        self.assertIn("invalid YAML", str(error))

    def test_syntax_error_line_number(self) -> None:
        """The reported line is the one where the bad indentation is."""
        path = self.write(self.make_dir(), "bad.yaml", "a: 1\n  b: 2\n")
        error = self.assertRaises(ConfigError, load_yaml, path)
        self.assertEqual(
            str(error), f"{path}: line 2, column 4: invalid YAML: mapping values are not allowed here"
        )

    def test_not_utf8(self) -> None:
        """Bytes that are not UTF-8 are a ConfigError, not a crash."""
        path = self.make_dir() / "bin.yaml"
        path.write_bytes(b"a: \xff\xfe\n")
        error = self.assertRaises(ConfigError, load_yaml, path)
        self.assertIn(f"{path}: not UTF-8 text", str(error))

    def test_no_python_objects(self) -> None:
        """Python-specific tags are refused: safe_load only."""
        path = self.write(self.make_dir(), "evil.yaml", "a: !!python/object/apply:os.getcwd []\n")
        error = self.assertRaises(ConfigError, load_yaml, path)
        self.assertIn(f"{path}: ", str(error))


class SettingsTests(_FileTestCase):
    """Loading C{etc/ecs.yaml}."""

    def settings_file(self, text: str) -> Path:
        """Write a settings file in a fresh directory."""
        return self.write(self.make_dir(), "ecs.yaml", text)

    def error(self, text: str, **kwargs: object) -> tuple[Path, str]:
        """Load C{text} as settings, expect a ConfigError; return (path, message)."""
        path = self.settings_file(text)
        error = self.assertRaises(ConfigError, load_settings, path, **kwargs)
        return path, str(error)

    def test_shipped_file(self) -> None:
        """The shipped etc/ecs.yaml loads with the documented values."""
        settings = load_settings()
        self.assertEqual(settings.source, str(paths.default_settings_path()))
        self.assertEqual(
            (
                settings.registry_address,
                settings.bind_host,
                settings.heartbeat_interval,
                settings.heartbeat_timeout,
                settings.request_timeout,
                settings.security,
                settings.log_level,
                settings.max_message_size,
                settings.high_water_mark,
            ),
            ("tcp://127.0.0.1:5000", "127.0.0.1", 1.0, 2.0, 5.0, "curve", "info", 1048576, 10000),
        )
        self.assertEqual(settings.state_dir, (Path.cwd() / "var").resolve())
        self.assertEqual(settings.key_dir, settings.state_dir / "keys")

    def test_shipped_file_matches_defaults(self) -> None:
        """The shipped file sets every key, to the same value as the built-in default."""
        shipped = load_yaml(paths.default_settings_path())
        assert isinstance(shipped, dict)
        self.assertEqual(sorted(shipped), sorted(SETTINGS_SCHEMA.fields))
        self.assertEqual(validate(shipped, SETTINGS_SCHEMA, "x"), validate({}, SETTINGS_SCHEMA, "x"))

    def test_empty_file_means_defaults(self) -> None:
        """An empty settings file gives the defaults."""
        settings = load_settings(self.settings_file("# nothing\n"))
        self.assertEqual((settings.heartbeat_timeout, settings.security), (2.0, "curve"))

    def test_missing_file(self) -> None:
        """A missing settings file is reported by name."""
        path = self.make_dir() / "nope.yaml"
        error = self.assertRaises(ConfigError, load_settings, path)
        self.assertEqual(str(error), f"{path}: file not found")

    def test_unknown_top_level_key(self) -> None:
        """A misspelt top-level key is named, with the allowed keys."""
        path, message = self.error("heartbeet: {interval: 1}\n")
        self.assertTrue(message.startswith(f"{path}: unknown key 'heartbeet' (did you mean 'heartbeat'? allowed: "))
        self.assertIn("request_timeout", message)

    def test_unknown_nested_key(self) -> None:
        """A misspelt nested key is named under its parent's path."""
        path, message = self.error("heartbeat: {interval: 1.0, timeot: 3.0}\n")
        self.assertEqual(
            message,
            f"{path}: heartbeat: unknown key 'timeot' (did you mean 'timeout'? allowed: interval, timeout)",
        )

    def test_wrong_type(self) -> None:
        """A string for an integer names the key, what was expected and what was found."""
        path, message = self.error("max_message_size: lots\n")
        self.assertEqual(message, f"{path}: max_message_size: expected an integer greater than 0, got 'lots'")

    def test_bool_for_int(self) -> None:
        """YAML true is not accepted as an integer."""
        path, message = self.error("high_water_mark: yes\n")
        self.assertEqual(message, f"{path}: high_water_mark: expected an integer greater than 0, got a boolean (true)")

    def test_out_of_range(self) -> None:
        """A non-positive timeout is out of range."""
        path, message = self.error("request_timeout: 0\n")
        self.assertEqual(message, f"{path}: request_timeout: expected a number greater than 0, got 0")

    def test_bad_choice(self) -> None:
        """A log level outside the list names the choices."""
        path, message = self.error("log_level: verbose\n")
        self.assertEqual(
            message, f"{path}: log_level: expected one of debug, info, warn, error, critical, got 'verbose'"
        )

    def test_heartbeat_timeout_below_interval(self) -> None:
        """A heartbeat timeout below the interval is refused, naming both keys."""
        path, message = self.error("heartbeat: {interval: 1.0, timeout: 0.5}\n")
        self.assertEqual(
            message, f"{path}: heartbeat.timeout: expected a number greater than heartbeat.interval (1.0), got 0.5"
        )

    def test_heartbeat_timeout_equal_interval(self) -> None:
        """A heartbeat timeout equal to the interval is refused too."""
        path, message = self.error("heartbeat: {interval: 2, timeout: 2}\n")
        self.assertIn(f"{path}: heartbeat.timeout: expected a number greater than heartbeat.interval (2.0)", message)

    def test_registry_address(self) -> None:
        """The registry address must be a ZeroMQ endpoint with a real port."""
        for bad in ("localhost:5000", "tcp://127.0.0.1:0", "tcp://127.0.0.1:70000", "tcp://127.0.0.1"):
            path, message = self.error(f"registry: {{address: '{bad}'}}\n")
            self.assertTrue(message.startswith(f"{path}: registry.address: expected a ZeroMQ endpoint"), message)
            self.assertIn(repr(bad), message)
        for good in ("tcp://ecs.example.org:5000", "tcp://[::1]:65535", "ipc:///tmp/ecs", "inproc://eca"):
            settings = load_settings(self.settings_file(f"registry: {{address: '{good}'}}\n"))
            self.assertEqual(settings.registry_address, good)

    def test_not_a_mapping(self) -> None:
        """A settings file holding a list is refused."""
        path, message = self.error("- a\n- b\n")
        self.assertEqual(message, f"{path}: expected a mapping, got a list")

    def test_several_problems(self) -> None:
        """Every problem in the file is reported, one per line."""
        path, message = self.error("security: plain\nhigh_water_mark: -1\n")
        self.assertEqual(
            message.splitlines(),
            [
                f"{path}: security: expected one of curve, none, got 'plain'",
                f"{path}: high_water_mark: expected an integer greater than 0, got -1",
            ],
        )

    def test_overrides_merge(self) -> None:
        """Nested overrides replace single keys and keep their siblings."""
        path = self.settings_file("heartbeat: {interval: 1.0, timeout: 3.0}\nrequest_timeout: 7\n")
        overrides = {"heartbeat": {"timeout": 10}, "security": "none"}
        settings = load_settings(path, overrides=overrides)
        self.assertEqual(
            (settings.heartbeat_interval, settings.heartbeat_timeout, settings.security, settings.request_timeout),
            (1.0, 10.0, "none", 7.0),
        )
        self.assertEqual(overrides, {"heartbeat": {"timeout": 10}, "security": "none"})
        self.assertEqual(settings.source, str(path))

    def test_overrides_are_validated(self) -> None:
        """A bad override is reported, marked as coming with overrides."""
        path, message = self.error("heartbeat: {interval: 1.0}\n", overrides={"heartbeat": {"timeout": 0.5}})
        self.assertEqual(
            message,
            f"{path} (with overrides): heartbeat.timeout: "
            "expected a number greater than heartbeat.interval (1.0), got 0.5",
        )

    def chdir(self, directory: Path) -> None:
        """Run the rest of the test in C{directory}."""
        old = os.getcwd()
        os.chdir(directory)
        self.addCleanup(os.chdir, old)

    def test_relative_state_dir_uses_cwd(self) -> None:
        """A relative state_dir resolves against the current directory, not the file's."""
        path = self.settings_file("state_dir: run/state\nkey_dir: k\n").resolve()
        work = self.make_dir().resolve()
        self.chdir(work)
        settings = load_settings(path)
        self.assertEqual(settings.state_dir, work / "run" / "state")
        self.assertEqual(settings.key_dir, work / "run" / "state" / "k")
        self.assertTrue(settings.state_dir.is_absolute())

    def test_absolute_key_dir_kept(self) -> None:
        """An absolute key_dir does not move under the state directory."""
        keys = self.make_dir().resolve()
        settings = load_settings(self.settings_file(f"key_dir: '{keys}'\n"))
        self.assertEqual(settings.key_dir, keys)

    def test_state_dir_argument_overrides_file(self) -> None:
        """The state_dir argument replaces the file's, and key_dir follows it."""
        path = self.settings_file("state_dir: /nowhere\n").resolve()
        work = self.make_dir().resolve()
        self.chdir(work)
        settings = load_settings(path, state_dir="elsewhere")
        self.assertEqual(settings.state_dir, work / "elsewhere")
        self.assertEqual(settings.key_dir, work / "elsewhere" / "keys")


class SubsystemsTests(_FileTestCase):
    """Loading C{etc/subsystems.yaml}."""

    def setUp(self) -> None:
        """A directory with the subsystems file and a separate 'shipped' fsm dir."""
        self.here = self.make_dir().resolve()
        self.shipped = self.make_dir().resolve()
        for name in SHIPPED_FSMS:
            self.write(self.shipped, name, "name: stub\n")

    def load(self, text: str) -> Subsystems:
        """Load C{text} as a subsystems file in C{self.here}."""
        return load_subsystems(self.write(self.here, "subsystems.yaml", text), fsm_dir=self.shipped)

    def error(self, text: str) -> tuple[Path, str]:
        """Load C{text}, expect a ConfigError; return (path, message)."""
        path = self.write(self.here, "subsystems.yaml", text)
        error = self.assertRaises(ConfigError, load_subsystems, path, fsm_dir=self.shipped)
        return path, str(error)

    def test_shipped_file_structure(self) -> None:
        """The shipped subsystems file lists the original's detector types and global systems."""
        subsystems = load_subsystems(fsm_dir=self.shipped)
        self.assertEqual(
            sorted(subsystems.detector_types), sorted(["DetectorA", "DetectorB", "STS", "MVD", "TOF", "TRD", "RICH"])
        )
        self.assertEqual(sorted(subsystems.global_systems), sorted(["TFC", "DCS", "QA", "FLES"]))
        fsm_names = {name: system.fsm_path.name for name, system in {
            **subsystems.detector_types, **subsystems.global_systems}.items()}
        self.assertEqual(fsm_names["DetectorA"], "detector-2step.yaml")
        self.assertEqual(fsm_names["DetectorB"], "detector-3step.yaml")
        self.assertEqual(fsm_names["STS"], "detector-2step.yaml")
        self.assertEqual(fsm_names["TFC"], "global.yaml")
        self.assertEqual(fsm_names["FLES"], "global-recording.yaml")
        self.assertTrue(all(s.is_global for s in subsystems.global_systems.values()))
        self.assertFalse(any(s.is_global for s in subsystems.detector_types.values()))
        self.assertEqual(subsystems.get("TFC").command_timeout, 10.0)
        self.assertEqual(subsystems.get("STS").action.kind, "simulated")

    def test_shipped_file_with_shipped_fsms(self) -> None:
        """The shipped subsystems file finds the shipped FSM tables."""
        fsm = paths.data_dir("fsm")
        if not all((fsm / name).is_file() for name in SHIPPED_FSMS):
            raise SkipTest("the shipped FSM tables are not all written yet")
        subsystems = load_subsystems()
        self.assertEqual(subsystems.get("QA").fsm_path, (fsm / "global-recording.yaml").resolve())
        self.assertEqual(subsystems.source, str(paths.default_subsystems_path()))

    def test_defaults(self) -> None:
        """command_timeout and simulated action parameters take their defaults."""
        subsystems = self.load("""
            detector_types:
              D: {fsm: detector-2step.yaml, action: {kind: simulated}}
            global_systems: {}
        """)
        self.assertEqual(
            subsystems.get("D"),
            SystemType(
                name="D",
                fsm_path=self.shipped / "detector-2step.yaml",
                action=ActionSpec("simulated", {"duration": 1.0, "failure_probability": 0.0, "seed": 0}),
                command_timeout=5.0,
                is_global=False,
            ),
        )

    def test_fsm_beside_file_wins(self) -> None:
        """An FSM table beside the subsystems file is preferred over the shipped one."""
        local = self.write(self.here, "global.yaml", "name: local\n")
        subsystems = self.load("""
            detector_types: {}
            global_systems:
              TFC: {fsm: global.yaml, action: {kind: simulated}}
        """)
        self.assertEqual(subsystems.get("TFC").fsm_path, local)
        self.assertTrue(subsystems.get("TFC").is_global)

    def test_missing_fsm_names_both_places(self) -> None:
        """A missing FSM table is reported with both places looked in."""
        path, message = self.error("""
            detector_types:
              D: {fsm: nothing.yaml, action: {kind: simulated}}
            global_systems: {}
        """)
        self.assertEqual(
            message,
            f"{path}: detector_types.D.fsm: FSM file 'nothing.yaml' not found "
            f"(looked in {self.here / 'nothing.yaml'} and {self.shipped / 'nothing.yaml'})",
        )

    def test_script_path_relative_to_file(self) -> None:
        """A relative script path resolves against the subsystems file's folder."""
        subsystems = self.load("""
            detector_types:
              D:
                fsm: detector-2step.yaml
                action: {kind: script, path: scripts/configure.sh}
            global_systems:
              G:
                fsm: global.yaml
                action: {kind: script, path: /opt/bin/run, args: ["-v", "x"], timeout: 5}
        """)
        self.assertEqual(
            subsystems.get("D").action,
            ActionSpec("script", {"path": str(self.here / "scripts" / "configure.sh"), "args": [], "timeout": 30.0}),
        )
        self.assertEqual(
            subsystems.get("G").action,
            ActionSpec("script", {"path": "/opt/bin/run", "args": ["-v", "x"], "timeout": 5.0}),
        )

    def test_python_action(self) -> None:
        """A python action keeps its class path and options."""
        subsystems = self.load("""
            detector_types:
              D:
                fsm: detector-2step.yaml
                action: {kind: python, class: site.hw.Configurer, options: {crate: 3}}
            global_systems: {}
        """)
        self.assertEqual(
            subsystems.get("D").action, ActionSpec("python", {"class": "site.hw.Configurer", "options": {"crate": 3}})
        )

    def test_python_class_syntax(self) -> None:
        """A python class that is not a dotted path is refused."""
        path, message = self.error("""
            detector_types:
              D: {fsm: detector-2step.yaml, action: {kind: python, class: Configurer}}
            global_systems: {}
        """)
        self.assertEqual(
            message,
            f"{path}: detector_types.D.action.class: expected a dotted Python path like pkg.module.Class, "
            "got 'Configurer'",
        )

    def test_bad_action_kind(self) -> None:
        """An unknown action kind names the allowed kinds."""
        path, message = self.error("""
            detector_types:
              STS: {fsm: detector-2step.yaml, action: {kind: simulatd}}
            global_systems: {}
        """)
        self.assertEqual(
            message,
            f"{path}: detector_types.STS.action.kind: expected one of simulated, script, python, got 'simulatd'",
        )

    def test_key_of_other_kind(self) -> None:
        """A key that belongs to another action kind is an unknown key for this kind."""
        path, message = self.error("""
            detector_types:
              STS: {fsm: detector-2step.yaml, action: {kind: simulated, path: x.sh}}
            global_systems: {}
        """)
        self.assertEqual(
            message,
            f"{path}: detector_types.STS.action: unknown key 'path' "
            "(allowed for kind 'simulated': kind, duration, failure_probability, seed)",
        )

    def test_missing_required_keys(self) -> None:
        """Missing fsm and script path are reported with their key paths."""
        path, message = self.error("""
            detector_types:
              STS: {action: {kind: script}}
            global_systems: {}
        """)
        self.assertEqual(
            message.splitlines(),
            [
                f"{path}: detector_types.STS.fsm: required key is missing (expected a non-empty string)",
                f"{path}: detector_types.STS.action.path: required key is missing (expected a non-empty string)",
            ],
        )

    def test_missing_section(self) -> None:
        """A file without global_systems is refused."""
        path, message = self.error("detector_types: {}\n")
        self.assertEqual(message, f"{path}: global_systems: required key is missing (expected a mapping)")

    def test_empty_file(self) -> None:
        """An empty subsystems file is refused with the keys it needs."""
        path, message = self.error("")
        self.assertEqual(message, f"{path}: file is empty (expected keys detector_types and global_systems)")

    def test_out_of_range(self) -> None:
        """Out-of-range action parameters and timeouts are named."""
        path, message = self.error("""
            detector_types:
              D:
                fsm: detector-2step.yaml
                action: {kind: simulated, failure_probability: 1.5, duration: -1}
                command_timeout: 0
            global_systems: {}
        """)
        self.assertEqual(
            sorted(message.splitlines()),
            sorted([
                f"{path}: detector_types.D.action.duration: expected a number at least 0, got -1",
                f"{path}: detector_types.D.action.failure_probability: expected a number from 0 to 1, got 1.5",
                f"{path}: detector_types.D.command_timeout: expected a number greater than 0, got 0",
            ]),
        )

    def test_bool_seed(self) -> None:
        """A boolean seed is not an integer."""
        path, message = self.error("""
            detector_types:
              D: {fsm: detector-2step.yaml, action: {kind: simulated, seed: false}}
            global_systems: {}
        """)
        self.assertEqual(message, f"{path}: detector_types.D.action.seed: expected an integer, got a boolean (false)")

    def test_bad_args(self) -> None:
        """Script args must be a list of strings; the bad item is named by index."""
        path, message = self.error("""
            detector_types:
              D: {fsm: detector-2step.yaml, action: {kind: script, path: a.sh, args: ["-n", 3]}}
            global_systems: {}
        """)
        self.assertEqual(message, f"{path}: detector_types.D.action.args[1]: expected a string, got 3")

    def test_unknown_key_in_system(self) -> None:
        """A misspelt key in a system entry is named under the system's path."""
        path, message = self.error("""
            detector_types:
              D: {fsm: detector-2step.yaml, action: {kind: simulated}, comand_timeout: 3}
            global_systems: {}
        """)
        self.assertEqual(
            message,
            f"{path}: detector_types.D: unknown key 'comand_timeout' "
            "(did you mean 'command_timeout'? allowed: fsm, action, command_timeout)",
        )

    def test_bad_names(self) -> None:
        """Names with spaces or other characters are refused; dots are allowed."""
        path, message = self.error("""
            detector_types:
              "TOF 2": {fsm: detector-2step.yaml, action: {kind: simulated}}
              12: {fsm: detector-2step.yaml, action: {kind: simulated}}
            global_systems: {}
        """)
        self.assertEqual(
            message.splitlines(),
            [
                f"{path}: detector_types['TOF 2']: expected a name of letters, digits, '_', '-' and '.', "
                "got 'TOF 2'",
                f"{path}: detector_types.12: expected a name of letters, digits, '_', '-' and '.', got 12",
            ],
        )
        subsystems = self.load("""
            detector_types:
              TOF.2-b_c: {fsm: detector-2step.yaml, action: {kind: simulated}}
            global_systems: {}
        """)
        self.assertEqual(list(subsystems.detector_types), ["TOF.2-b_c"])

    def test_name_clash(self) -> None:
        """A name used as both detector type and global system is refused."""
        path, message = self.error("""
            detector_types:
              TFC: {fsm: detector-2step.yaml, action: {kind: simulated}}
            global_systems:
              TFC: {fsm: global.yaml, action: {kind: simulated}}
        """)
        self.assertEqual(
            message,
            f"{path}: global_systems.TFC: 'TFC' is also a detector type (detector_types.TFC); "
            "a name must be either a detector type or a global system, not both",
        )

    def test_get_unknown_name(self) -> None:
        """get() of an unknown name raises KeyError naming the known ones."""
        subsystems = self.load("""
            detector_types:
              STS: {fsm: detector-2step.yaml, action: {kind: simulated}}
            global_systems:
              TFC: {fsm: global.yaml, action: {kind: simulated}}
        """)
        error = self.assertRaises(KeyError, subsystems.get, "RICH")
        self.assertEqual(
            str(error),
            f"unknown subsystem 'RICH' in {self.here / 'subsystems.yaml'} "
            "(detector types: STS; global systems: TFC)",
        )

    def test_yaml_syntax_error(self) -> None:
        """A syntax error in the subsystems file names its line."""
        path, message = self.error("detector_types:\n  D: {fsm: x\nglobal_systems: {}\n")
        self.assertTrue(message.startswith(f"{path}: line "), message)


class FailTests(SynchronousTestCase):
    """L{fail}: exiting with a message."""

    def test_fail_raises_system_exit(self) -> None:
        """fail() raises SystemExit carrying an 'ecs:' message, so the exit status is non-zero."""
        error = self.assertRaises(SystemExit, fail, ConfigError("a.yaml: file not found"))
        self.assertEqual(error.code, "ecs: a.yaml: file not found")


class DocumentRoundTripTests(SynchronousTestCase):
    """The schema accepts exactly what yaml.safe_load produces for ordinary files."""

    def test_yaml_scalars(self) -> None:
        """YAML integers, floats and booleans map onto Int, Number and Bool."""
        data = yaml.safe_load("i: 3\nf: 2.5\nb: on\n")
        schema = Record({"i": Field(Int()), "f": Field(Number()), "b": Field(Bool())})
        self.assertEqual(validate(data, schema, "doc.yaml"), {"i": 3, "f": 2.5, "b": True})


class ModuleSplitTests(SynchronousTestCase):
    def test_settings_keeps_the_names_that_moved(self) -> None:
        """Names moved to ecs.config.subsystems and ecs.config.yamlfile are still the same objects in settings."""
        from ecs.config import settings, subsystems, yamlfile

        moved = {
            subsystems: ("load_subsystems", "Subsystems", "SystemType", "ActionSpec", "UnknownSystemError",
                         "SUBSYSTEMS_SCHEMA", "ACTION_SCHEMA"),
            yamlfile: ("load_yaml", "fail", "NAME"),
        }
        for module, names in moved.items():
            for name in names:
                self.assertIs(getattr(settings, name), getattr(module, name), name)
        self.assertLessEqual(set(settings.__all__), set(dir(settings)))
