# -*- test-case-name: tests.test_configs -*-
"""
Tests for L{ecs.config.sources}: configuration sources, their load-time checks,
inline configurations, and the shipped C{etc/demo-configs.yaml}.
"""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from ecs import paths
from ecs.config.settings import load_subsystems
from ecs.config.sources import (
    NO_SOURCE,
    ConfigLookupError,
    EmptyConfigSource,
    FileConfigSource,
    IConfigSource,
    normalise_inline,
)
from ecs.schema import ConfigError

DEMO_SYSTEMS = {"TFC", "DCS", "QA", "FLES", "STS", "MVD", "TOF", "TRD", "RICH"}


def sample() -> dict[str, Any]:
    """A small, valid configurations document."""
    return {
        "configurations": {
            "tfc-default": {"system": "TFC", "parameters": {"clock_mhz": 40}},
            "tfc-pulser": {"system": "TFC", "parameters": {"clock_mhz": 40, "pulser": True}},
            "sts-1": {"system": "STS", "parameters": {"hv": 1500, "threshold": 12, "masked": [3, 7]}},
            "sts-2": {"system": "STS", "parameters": {"hv": 1400, "threshold": 8, "masked": []}},
            "mvd-1": {"system": "MVD", "parameters": {}},
        },
        "tags": {
            "demo": ["tfc-default", "sts-1", "mvd-1"],
            "demo-alt": ["tfc-pulser", "sts-2"],
        },
    }


class _LookupTestCase(SynchronousTestCase):
    """Helpers for lookups that return Deferreds."""

    def refused(self, d: defer.Deferred[Any], code: str) -> ConfigLookupError:
        """The L{ConfigLookupError} C{d} failed with, after checking its code."""
        error = self.failureResultOf(d, ConfigLookupError).value
        self.assertEqual(error.code, code)
        self.assertEqual(str(error), error.reason)
        return error


class ConfigLookupErrorTests(SynchronousTestCase):
    """L{ConfigLookupError} carries a known code and a reason."""

    def test_code_and_reason(self) -> None:
        """The code and the reason are kept; str() is the reason."""
        error = ConfigLookupError("unknown_tag", "unknown configuration tag 'x'")
        self.assertEqual(error.code, "unknown_tag")
        self.assertEqual(error.reason, "unknown configuration tag 'x'")
        self.assertEqual(str(error), "unknown configuration tag 'x'")

    def test_unknown_code(self) -> None:
        """A code outside the three known ones is a programming error."""
        error = self.assertRaises(ValueError, ConfigLookupError, "nope", "reason")
        self.assertIn("'nope'", str(error))
        self.assertIn("unknown_tag, unknown_config, bad_request", str(error))


class FileLookupTests(_LookupTestCase):
    """Tag and id lookups on a L{FileConfigSource}."""

    def setUp(self) -> None:
        """A source loaded from L{sample}."""
        self.source = FileConfigSource.from_dict(sample(), "sample.yaml")

    def test_provides_interface(self) -> None:
        """L{FileConfigSource} provides L{IConfigSource}."""
        self.assertTrue(verifyObject(IConfigSource, self.source))

    def test_tag(self) -> None:
        """A tag resolves to its configurations keyed by system, each with id, system and parameters."""
        self.assertEqual(
            self.successResultOf(self.source.tag("demo")),
            {
                "TFC": {"config_id": "tfc-default", "system": "TFC", "parameters": {"clock_mhz": 40}},
                "STS": {
                    "config_id": "sts-1",
                    "system": "STS",
                    "parameters": {"hv": 1500, "threshold": 12, "masked": [3, 7]},
                },
                "MVD": {"config_id": "mvd-1", "system": "MVD", "parameters": {}},
            },
        )

    def test_other_tag(self) -> None:
        """Each tag resolves to its own configurations."""
        result = self.successResultOf(self.source.tag("demo-alt"))
        ids = {system: config["config_id"] for system, config in result.items()}
        self.assertEqual(ids, {"TFC": "tfc-pulser", "STS": "sts-2"})

    def test_tag_names(self) -> None:
        """tag_names lists the tags in file order."""
        self.assertEqual(self.source.tag_names(), ["demo", "demo-alt"])

    def test_unknown_tag_close_match(self) -> None:
        """An unknown tag is unknown_tag, naming the tag, the source and a close match."""
        error = self.refused(self.source.tag("dmeo"), "unknown_tag")
        self.assertEqual(
            error.reason, "unknown configuration tag 'dmeo' (did you mean 'demo'?) in sample.yaml"
        )

    def test_unknown_tag_lists_known(self) -> None:
        """Without a close match, the reason lists the known tags."""
        error = self.refused(self.source.tag("physics"), "unknown_tag")
        self.assertEqual(
            error.reason, "unknown configuration tag 'physics' in sample.yaml (known tags: demo, demo-alt)"
        )

    def test_unknown_tag_many_known(self) -> None:
        """Only the first ten known tags are listed, with a count of the rest."""
        data = sample()
        data["tags"] = {f"run{i:02}": ["mvd-1"] for i in range(12)}
        source = FileConfigSource.from_dict(data, "many.yaml")
        error = self.refused(source.tag("zzz"), "unknown_tag")
        self.assertIn("known tags: run00, run01,", error.reason)
        self.assertIn("run09 and 2 more)", error.reason)
        self.assertNotIn("run10", error.reason)

    def test_unknown_tag_no_tags(self) -> None:
        """A source without tags says so."""
        source = FileConfigSource.from_dict({"configurations": {}}, "none.yaml")
        error = self.refused(source.tag("demo"), "unknown_tag")
        self.assertEqual(error.reason, "unknown configuration tag 'demo' in none.yaml (it defines no tags)")

    def test_tag_not_a_string(self) -> None:
        """A tag name that is not a string is a bad_request."""
        error = self.refused(self.source.tag(["demo"]), "bad_request")  # type: ignore[arg-type]
        self.assertEqual(error.reason, "expected a tag name (a string), got a list")

    def test_huge_tag_name(self) -> None:
        """An absurdly long tag name is refused quickly with a shortened echo."""
        error = self.refused(self.source.tag("d" * 100000), "unknown_tag")
        self.assertLess(len(error.reason), 200)
        self.assertIn("...", error.reason)

    def test_configs(self) -> None:
        """Configuration ids resolve to their configurations keyed by system."""
        result = self.successResultOf(self.source.configs(["sts-2", "tfc-default"]))
        self.assertEqual(
            result,
            {
                "STS": {
                    "config_id": "sts-2",
                    "system": "STS",
                    "parameters": {"hv": 1400, "threshold": 8, "masked": []},
                },
                "TFC": {"config_id": "tfc-default", "system": "TFC", "parameters": {"clock_mhz": 40}},
            },
        )

    def test_configs_empty(self) -> None:
        """No ids resolve to no configurations."""
        self.assertEqual(self.successResultOf(self.source.configs([])), {})

    def test_configs_unknown(self) -> None:
        """Unknown ids are unknown_config naming every unknown id (with close matches), not the known ones."""
        error = self.refused(self.source.configs(["sts-1", "sts-3", "tfc-defualt", "qa-x"]), "unknown_config")
        self.assertEqual(
            error.reason,
            "unknown configurations 'sts-3' (did you mean 'sts-2' or 'sts-1'?), "
            "'tfc-defualt' (did you mean 'tfc-default'?), 'qa-x' in sample.yaml",
        )

    def test_configs_one_unknown(self) -> None:
        """A single unknown id is named in the singular."""
        error = self.refused(self.source.configs(["nothing-like-it"]), "unknown_config")
        self.assertEqual(error.reason, "unknown configuration 'nothing-like-it' in sample.yaml")

    def test_configs_same_system(self) -> None:
        """Two ids for the same system are a bad_request naming both and the system."""
        error = self.refused(self.source.configs(["sts-1", "mvd-1", "sts-2"]), "bad_request")
        self.assertEqual(
            error.reason,
            "configurations 'sts-1' and 'sts-2' are both for system 'STS' "
            "(choose one configuration per system)",
        )

    def test_configs_several_clashes(self) -> None:
        """Every system with several ids is named."""
        error = self.refused(
            self.source.configs(["sts-1", "tfc-default", "sts-2", "tfc-pulser"]), "bad_request"
        )
        self.assertIn("'sts-1' and 'sts-2' are both for system 'STS'", error.reason)
        self.assertIn("'tfc-default' and 'tfc-pulser' are both for system 'TFC'", error.reason)

    def test_configs_listed_twice(self) -> None:
        """The same id twice is a bad_request naming it."""
        error = self.refused(self.source.configs(["sts-1", "sts-1"]), "bad_request")
        self.assertEqual(error.reason, "configuration 'sts-1' listed more than once")

    def test_configs_not_a_list(self) -> None:
        """Ids that are not a list are a bad_request."""
        error = self.refused(self.source.configs("sts-1"), "bad_request")  # type: ignore[arg-type]
        self.assertEqual(error.reason, "expected a list of configuration ids, got 'sts-1'")

    def test_configs_item_not_a_string(self) -> None:
        """An id that is not a string is a bad_request naming its index."""
        error = self.refused(self.source.configs(["sts-1", 7]), "bad_request")  # type: ignore[list-item]
        self.assertEqual(error.reason, "configuration ids[1]: expected a string, got 7")

    def test_sync_variants(self) -> None:
        """tag_now and configs_now return the same results and raise the same errors."""
        self.assertEqual(self.source.tag_now("demo"), self.successResultOf(self.source.tag("demo")))
        self.assertEqual(
            self.source.configs_now(["sts-1"]), self.successResultOf(self.source.configs(["sts-1"]))
        )
        error = self.assertRaises(ConfigLookupError, self.source.configs_now, ["x"])
        self.assertEqual(error.code, "unknown_config")


class CopyTests(SynchronousTestCase):
    """Results and the source never share mutable state."""

    def setUp(self) -> None:
        """A source loaded from L{sample}."""
        self.data = sample()
        self.source = FileConfigSource.from_dict(self.data)

    def test_tag_result_is_a_copy(self) -> None:
        """Mutating a tag's result, deep inside, does not change later lookups."""
        result = self.successResultOf(self.source.tag("demo"))
        result["STS"]["parameters"]["masked"].append(99)
        result["STS"]["parameters"]["hv"] = 0
        result["TFC"]["config_id"] = "changed"
        del result["MVD"]
        again = self.successResultOf(self.source.tag("demo"))
        self.assertEqual(again["STS"]["parameters"], {"hv": 1500, "threshold": 12, "masked": [3, 7]})
        self.assertEqual(again["TFC"]["config_id"], "tfc-default")
        self.assertIn("MVD", again)

    def test_configs_result_is_a_copy(self) -> None:
        """Mutating a configs result does not change what the tag returns for the same id."""
        result = self.successResultOf(self.source.configs(["sts-1"]))
        result["STS"]["parameters"]["masked"].clear()
        self.assertEqual(self.successResultOf(self.source.tag("demo"))["STS"]["parameters"]["masked"], [3, 7])

    def test_input_is_copied(self) -> None:
        """Mutating the loaded document afterwards does not change the source."""
        self.data["configurations"]["sts-1"]["parameters"]["masked"].append(1)
        self.data["tags"]["demo"].remove("mvd-1")
        result = self.successResultOf(self.source.tag("demo"))
        self.assertEqual(result["STS"]["parameters"]["masked"], [3, 7])
        self.assertIn("MVD", result)

    def test_input_untouched(self) -> None:
        """Loading does not modify the document it is given."""
        data = sample()
        before = copy.deepcopy(data)
        FileConfigSource.from_dict(data)
        self.assertEqual(data, before)


class ValidationTests(SynchronousTestCase):
    """A bad configurations document is a L{ConfigError} naming source, key path and problem."""

    def problems(self, data: object) -> list[str]:
        """The problem lines loading C{data} (as C{c.yaml}) raises."""
        error = self.assertRaises(ConfigError, FileConfigSource.from_dict, data, "c.yaml")
        self.assertEqual(str(error), "\n".join(error.problems))
        return list(error.problems)

    def with_changes(self, **sections: Any) -> dict[str, Any]:
        """L{sample}, with some top-level sections replaced."""
        data = sample()
        data.update(sections)
        return data

    def test_valid(self) -> None:
        """The sample document loads."""
        self.assertEqual(FileConfigSource.from_dict(sample()).tag_names(), ["demo", "demo-alt"])

    def test_empty_document(self) -> None:
        """An empty document (None or {}) is a source with nothing in it."""
        for data in (None, {}):
            source = FileConfigSource.from_dict(data)
            self.assertEqual(source.tag_names(), [])
            error = self.failureResultOf(source.configs(["a"]), ConfigLookupError).value
            self.assertEqual(error.code, "unknown_config")

    def test_not_a_mapping(self) -> None:
        """A document that is not a mapping is refused."""
        self.assertEqual(self.problems(["a"]), ["c.yaml: expected a mapping, got a list"])

    def test_unknown_top_level_key(self) -> None:
        """An unknown top-level key is named, with a guess."""
        data = sample()
        data["tag"] = data.pop("tags")
        [line] = self.problems(data)
        self.assertIn("c.yaml: unknown key 'tag' (did you mean 'tags'?", line)

    def test_unknown_configuration_key(self) -> None:
        """An unknown key in a configuration is named with its path."""
        data = sample()
        data["configurations"]["sts-1"]["params"] = {}
        [line] = self.problems(data)
        self.assertIn("c.yaml: configurations.sts-1: unknown key 'params'", line)
        self.assertIn("allowed: system, parameters", line)

    def test_missing_system(self) -> None:
        """A configuration without a system is refused."""
        data = sample()
        del data["configurations"]["mvd-1"]["system"]
        [line] = self.problems(data)
        self.assertTrue(line.startswith("c.yaml: configurations.mvd-1.system: required key is missing"), line)

    def test_missing_parameters(self) -> None:
        """A configuration without parameters is refused."""
        data = sample()
        del data["configurations"]["mvd-1"]["parameters"]
        [line] = self.problems(data)
        self.assertEqual(
            line, "c.yaml: configurations.mvd-1.parameters: required key is missing (expected a mapping)"
        )

    def test_bad_system(self) -> None:
        """A system that is not a name is refused."""
        data = sample()
        data["configurations"]["mvd-1"]["system"] = "M V D"
        [line] = self.problems(data)
        self.assertIn("configurations.mvd-1.system: expected a name of letters", line)
        self.assertIn("got 'M V D'", line)

    def test_parameters_not_a_mapping(self) -> None:
        """Parameters that are not a mapping are refused."""
        data = sample()
        data["configurations"]["mvd-1"]["parameters"] = [1, 2]
        self.assertEqual(
            self.problems(data), ["c.yaml: configurations.mvd-1.parameters: expected a mapping, got a list"]
        )

    def test_parameters_not_json(self) -> None:
        """A parameter value JSON cannot carry (an unquoted YAML date) is named with its path."""
        data = sample()
        data["configurations"]["mvd-1"]["parameters"] = yaml.safe_load("calibrated: 2024-03-01")
        [line] = self.problems(data)
        self.assertIn("c.yaml: configurations.mvd-1.parameters.calibrated: expected a JSON value", line)
        self.assertIn("got a date (2024-03-01)", line)

    def test_parameters_nested_problems(self) -> None:
        """Problems deep inside parameters (NaN, a non-string key) are all reported."""
        data = sample()
        data["configurations"]["mvd-1"]["parameters"] = {"a": [1.0, float("nan")], "b": {3: "x", "ok": 1}}
        self.assertEqual(
            self.problems(data),
            [
                "c.yaml: configurations.mvd-1.parameters.a[1]: expected a finite number, got nan",
                "c.yaml: configurations.mvd-1.parameters.b.3: expected a string key, got 3",
            ],
        )

    def test_parameters_json_kinds(self) -> None:
        """Strings, numbers, booleans, null, lists and mappings are all accepted, unchanged."""
        parameters = {
            "s": "x", "i": 1, "f": 2.5, "b": False, "n": None, "l": [1, "a", [True]], "m": {"k": {}}
        }
        data = sample()
        data["configurations"]["mvd-1"]["parameters"] = parameters
        source = FileConfigSource.from_dict(data)
        self.assertEqual(self.successResultOf(source.configs(["mvd-1"]))["MVD"]["parameters"], parameters)

    def test_bad_config_id(self) -> None:
        """A configuration id with characters outside the allowed set is refused."""
        data = sample()
        data["configurations"]["sts 3"] = {"system": "STS", "parameters": {}}
        [line] = self.problems(data)
        self.assertIn("c.yaml: configurations['sts 3']: expected a configuration id (1-200 letters", line)
        self.assertIn("got 'sts 3'", line)

    def test_config_id_length(self) -> None:
        """A configuration id may have 200 characters, not 201."""
        data = sample()
        data["configurations"]["a" * 200] = {"system": "X", "parameters": {}}
        FileConfigSource.from_dict(data)
        data["configurations"]["b" * 201] = {"system": "X", "parameters": {}}
        [line] = self.problems(data)
        self.assertIn("expected a configuration id (1-200", line)

    def test_config_id_characters(self) -> None:
        """Letters, digits, '_', '.', ':' and '-' are allowed in ids and tag names."""
        data = {
            "configurations": {"STS_v1.2:run-7": {"system": "STS", "parameters": {}}},
            "tags": {"Tag_v1.2:run-7": ["STS_v1.2:run-7"]},
        }
        source = FileConfigSource.from_dict(data)
        result = self.successResultOf(source.tag("Tag_v1.2:run-7"))
        self.assertEqual(result["STS"]["config_id"], "STS_v1.2:run-7")

    def test_config_id_not_a_string(self) -> None:
        """A configuration id that YAML read as a number is refused."""
        data = sample()
        data["configurations"][12] = {"system": "STS", "parameters": {}}
        [line] = self.problems(data)
        self.assertIn("c.yaml: configurations.12: expected a configuration id", line)
        self.assertIn("got 12", line)

    def test_bad_tag_name(self) -> None:
        """A tag name with characters outside the allowed set is refused."""
        [line] = self.problems(self.with_changes(tags={"demo/1": ["sts-1"]}))
        self.assertIn("c.yaml: tags['demo/1']: expected a tag name (1-200 letters", line)

    def test_tag_not_a_list(self) -> None:
        """A tag whose value is not a list of ids is refused."""
        [line] = self.problems(self.with_changes(tags={"demo": "sts-1"}))
        self.assertIn("c.yaml: tags.demo: expected a list (each item a configuration id", line)

    def test_tag_bad_id(self) -> None:
        """An id in a tag that is not a valid id is refused with its index."""
        [line] = self.problems(self.with_changes(tags={"demo": ["sts-1", 5]}))
        self.assertIn("c.yaml: tags.demo[1]: expected a configuration id", line)

    def test_tag_unknown_configuration(self) -> None:
        """A tag naming unknown configurations names the tag, every unknown id and close matches."""
        lines = self.problems(self.with_changes(tags={"demo": ["sts-1", "tfc-defualt", "qa-1"]}))
        self.assertEqual(
            lines,
            [
                "c.yaml: tags.demo: names unknown configurations 'tfc-defualt' "
                "(did you mean 'tfc-default'?), 'qa-1' (not defined under configurations)"
            ],
        )

    def test_tag_same_system(self) -> None:
        """A tag naming two configurations of one system names the tag, both ids and the system."""
        lines = self.problems(self.with_changes(tags={"demo": ["sts-1", "mvd-1", "sts-2"]}))
        self.assertEqual(
            lines,
            [
                "c.yaml: tags.demo: configurations 'sts-1' and 'sts-2' are both for system 'STS' "
                "(a tag holds at most one configuration per system)"
            ],
        )

    def test_tag_three_of_one_system(self) -> None:
        """Three configurations of one system are all named."""
        data = sample()
        data["configurations"]["sts-3"] = {"system": "STS", "parameters": {}}
        data["tags"] = {"demo": ["sts-1", "sts-2", "sts-3"]}
        [line] = self.problems(data)
        self.assertIn("configurations 'sts-1', 'sts-2' and 'sts-3' are all for system 'STS'", line)

    def test_tag_listed_twice(self) -> None:
        """A tag listing an id twice is refused, naming the id."""
        lines = self.problems(self.with_changes(tags={"demo": ["sts-1", "mvd-1", "sts-1"]}))
        self.assertEqual(lines, ["c.yaml: tags.demo: lists 'sts-1' more than once"])

    def test_tag_empty(self) -> None:
        """A tag naming no configuration is refused."""
        lines = self.problems(self.with_changes(tags={"demo": []}))
        self.assertEqual(
            lines, ["c.yaml: tags.demo: names no configuration (list at least one configuration id)"]
        )

    def test_all_problems_reported(self) -> None:
        """Problems in different tags are all reported together."""
        lines = self.problems(self.with_changes(tags={"a": ["nope"], "b": ["sts-1", "sts-2"], "c": []}))
        self.assertEqual([line.split(":")[1].strip() for line in lines], ["tags.a", "tags.b", "tags.c"])

    def test_schema_problems_all_reported(self) -> None:
        """Schema problems in several configurations are all reported together."""
        data = sample()
        data["configurations"]["sts-1"]["system"] = 3
        data["configurations"]["mvd-1"]["parameters"] = "none"
        self.assertEqual(len(self.problems(data)), 2)


class FromFileTests(_LookupTestCase):
    """L{FileConfigSource.from_file} reads YAML files."""

    def write(self, text: str) -> Path:
        """Write C{text} (dedented) to a new file and return its path."""
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def test_loads(self) -> None:
        """A YAML file in the documented format loads, and its source is the path."""
        path = self.write(
            """\
            configurations:
              tfc-default: {system: TFC, parameters: {clock_mhz: 40}}
              sts-1: {system: STS, parameters: {hv: 1500, threshold: 12}}
            tags:
              demo: [tfc-default, sts-1]
            """
        )
        source = FileConfigSource.from_file(path)
        self.assertEqual(source.source, str(path))
        result = self.successResultOf(source.tag("demo"))
        self.assertEqual(result["STS"]["parameters"], {"hv": 1500, "threshold": 12})
        self.assertEqual(self.refused(source.tag("x"), "unknown_tag").reason.count(str(path)), 1)

    def test_empty_file(self) -> None:
        """An empty file is a source with nothing in it."""
        self.assertEqual(FileConfigSource.from_file(self.write("")).tag_names(), [])

    def test_missing_file(self) -> None:
        """A missing file is a ConfigError naming it."""
        path = Path(self.mktemp())
        error = self.assertRaises(ConfigError, FileConfigSource.from_file, path)
        self.assertEqual(str(error), f"{path}: file not found")

    def test_invalid_file(self) -> None:
        """Problems in a file are reported against its path."""
        path = self.write("tags:\n  demo: [nope]\n")
        error = self.assertRaises(ConfigError, FileConfigSource.from_file, path)
        self.assertEqual(
            str(error),
            f"{path}: tags.demo: names unknown configuration 'nope' (not defined under configurations)",
        )


class EmptySourceTests(_LookupTestCase):
    """L{EmptyConfigSource}: nothing is known, and the reason says how to fix that."""

    def setUp(self) -> None:
        """An empty source."""
        self.source = EmptyConfigSource()

    def test_provides_interface(self) -> None:
        """L{EmptyConfigSource} provides L{IConfigSource}."""
        self.assertTrue(verifyObject(IConfigSource, self.source))

    def test_tag(self) -> None:
        """Every tag is unknown_tag, naming it and saying no source is configured."""
        error = self.refused(self.source.tag("demo"), "unknown_tag")
        self.assertEqual(error.reason, f"unknown configuration tag 'demo': {NO_SOURCE}")
        self.assertIn("start the PCA with --configs FILE or run it under the ECA", error.reason)

    def test_configs(self) -> None:
        """Every id is unknown_config, all named, saying no source is configured."""
        error = self.refused(self.source.configs(["sts-1", "tfc-1", "sts-1"]), "unknown_config")
        self.assertEqual(error.reason, f"unknown configurations 'sts-1', 'tfc-1': {NO_SOURCE}")

    def test_no_ids(self) -> None:
        """No ids resolve to no configurations."""
        self.assertEqual(self.successResultOf(self.source.configs([])), {})

    def test_bad_arguments(self) -> None:
        """Arguments of the wrong type are bad_request, as for a file source."""
        self.refused(self.source.tag(5), "bad_request")  # type: ignore[arg-type]
        self.refused(self.source.configs({"a": 1}), "bad_request")  # type: ignore[arg-type]


def inline(config_id: str, system: str, **parameters: Any) -> dict[str, Any]:
    """An inline configuration."""
    return {"config_id": config_id, "system": system, "parameters": parameters}


class NormaliseInlineTests(SynchronousTestCase):
    """L{normalise_inline} checks configurations carried in a request."""

    def refused(self, configs: object) -> str:
        """The reason of the bad_request C{configs} raises."""
        error = self.assertRaises(ConfigLookupError, normalise_inline, configs)
        self.assertEqual(error.code, "bad_request")
        return error.reason

    def test_valid(self) -> None:
        """Valid configurations are returned keyed by system."""
        configs = [inline("sts-x", "STS", hv=1500), inline("tfc-x", "TFC", clock_mhz=40.0, modes=["a"])]
        self.assertEqual(
            normalise_inline(configs),
            {
                "STS": {"config_id": "sts-x", "system": "STS", "parameters": {"hv": 1500}},
                "TFC": {
                    "config_id": "tfc-x",
                    "system": "TFC",
                    "parameters": {"clock_mhz": 40.0, "modes": ["a"]},
                },
            },
        )

    def test_empty(self) -> None:
        """No configurations normalise to nothing."""
        self.assertEqual(normalise_inline([]), {})

    def test_copies(self) -> None:
        """The result shares nothing mutable with the request."""
        configs = [inline("sts-x", "STS", masked=[1])]
        result = normalise_inline(configs)
        configs[0]["parameters"]["masked"].append(2)
        configs[0]["system"] = "MVD"
        self.assertEqual(
            result, {"STS": {"config_id": "sts-x", "system": "STS", "parameters": {"masked": [1]}}}
        )

    def test_not_a_list(self) -> None:
        """Configurations that are not a list are refused."""
        self.assertEqual(self.refused({"STS": {}}), "expected a list of configurations, got a mapping")

    def test_item_not_a_mapping(self) -> None:
        """An item that is not a mapping is named by index."""
        self.assertEqual(
            self.refused([inline("a", "STS"), "tfc-1"]), "configurations[1]: expected a mapping, got 'tfc-1'"
        )

    def test_missing_field(self) -> None:
        """A missing field is named with the index."""
        item = inline("a", "STS")
        del item["parameters"]
        self.assertEqual(
            self.refused([item]),
            "configurations[0]: parameters: required key is missing (expected a mapping)",
        )

    def test_wrong_types(self) -> None:
        """Fields of the wrong type are each named with index and field."""
        reason = self.refused([{"config_id": 3, "system": "", "parameters": []}])
        self.assertIn("configurations[0]: config_id: expected a configuration id", reason)
        self.assertIn("got 3", reason)
        self.assertIn("configurations[0]: system: expected a name of letters", reason)
        self.assertIn("configurations[0]: parameters: expected a mapping, got a list", reason)
        self.assertEqual(reason.count("; "), 2)

    def test_unknown_key(self) -> None:
        """A key other than config_id, system and parameters is named with index and a guess."""
        item = inline("a", "STS")
        item["sytem"] = "STS"
        reason = self.refused([inline("b", "TFC"), item])
        self.assertEqual(
            reason,
            "configurations[1]: unknown key 'sytem' (did you mean 'system'? allowed for an inline "
            "configuration: config_id, system, parameters)",
        )

    def test_parameters_not_json(self) -> None:
        """A parameter JSON cannot carry is named with its path."""
        reason = self.refused([inline("a", "STS", gain=float("inf"))])
        self.assertEqual(reason, "configurations[0]: parameters.gain: expected a finite number, got inf")

    def test_same_system(self) -> None:
        """Two configurations for one system are named by index and id."""
        reason = self.refused([inline("sts-a", "STS"), inline("tfc", "TFC"), inline("sts-b", "STS")])
        self.assertEqual(
            reason,
            "configurations[0] ('sts-a') and configurations[2] ('sts-b') are both for system 'STS' "
            "(send one configuration per system)",
        )

    def test_same_config_id(self) -> None:
        """Two configurations with one config_id are named by index."""
        reason = self.refused([inline("x", "STS"), inline("x", "TFC")])
        self.assertEqual(reason, "configurations[0] and configurations[1] have the same config_id 'x'")

    def test_all_problems(self) -> None:
        """Problems in several items are all reported, in order."""
        reason = self.refused([5, inline("a", "STS"), {"config_id": "b"}])
        self.assertTrue(reason.startswith("configurations[0]: expected a mapping"), reason)
        self.assertIn("configurations[2]: system: required key is missing", reason)
        self.assertIn("configurations[2]: parameters: required key is missing", reason)


class DemoFileTests(SynchronousTestCase):
    """The shipped C{etc/demo-configs.yaml}."""

    def setUp(self) -> None:
        """Load the shipped file."""
        self.path = paths.data_dir("etc") / "demo-configs.yaml"
        self.source = FileConfigSource.from_file(self.path)

    def test_tags(self) -> None:
        """The file defines the tags demo and demo-alt."""
        self.assertEqual(self.source.tag_names(), ["demo", "demo-alt"])

    def test_demo_covers_nine_systems(self) -> None:
        """demo holds exactly one configuration for each of the nine demo systems."""
        result = self.successResultOf(self.source.tag("demo"))
        self.assertEqual(set(result), DEMO_SYSTEMS)
        for system, config in result.items():
            self.assertEqual(config["system"], system)
            self.assertTrue(config["parameters"], f"{system} has no parameters")

    def test_demo_alt(self) -> None:
        """demo-alt covers the same systems, differing from demo exactly in STS and TFC."""
        demo = self.successResultOf(self.source.tag("demo"))
        alt = self.successResultOf(self.source.tag("demo-alt"))
        self.assertEqual(set(alt), DEMO_SYSTEMS)
        changed = {system for system in DEMO_SYSTEMS if alt[system]["config_id"] != demo[system]["config_id"]}
        self.assertEqual(changed, {"STS", "TFC"})
        for system in changed:
            self.assertNotEqual(alt[system]["parameters"], demo[system]["parameters"])

    def test_systems_are_shipped(self) -> None:
        """Every system the demo configures is a shipped detector type or global system."""
        subsystems = load_subsystems()
        for system in DEMO_SYSTEMS:
            subsystems.get(system)
        self.assertEqual(set(subsystems.global_systems), {"TFC", "DCS", "QA", "FLES"})

    def test_every_configuration_resolves(self) -> None:
        """Each configuration in the file resolves by id on its own."""
        demo = self.successResultOf(self.source.tag("demo"))
        alt = self.successResultOf(self.source.tag("demo-alt"))
        ids = {c["config_id"] for c in [*demo.values(), *alt.values()]}
        self.assertEqual(len(ids), 11)
        for config_id in ids:
            [config] = self.successResultOf(self.source.configs([config_id])).values()
            self.assertEqual(config["config_id"], config_id)
