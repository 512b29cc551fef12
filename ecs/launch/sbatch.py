# -*- test-case-name: tests.test_launch_slurm -*-
"""
An agent as a SLURM batch job, in SLURM's own terms and without any I/O:
the placement options (L{check_options}), the C{sbatch} command and batch
script (L{build_submission}), and the reading of what SLURM answers (output
file names, time stamps, exit codes).  L{ecs.launch.slurm} runs the commands.

Why no caller value can reach a shell: the SLURM commands are started
without a shell, so their options are single arguments checked against
strict patterns.  The only text a shell reads is the batch script; every
caller value in it has passed L{check_argument} (no NUL, newline or carriage
return, so it cannot start a new line, nor an C{#SBATCH} directive) and is
then single-quoted with C{shlex.quote}, which the shell takes literally;
environment variable names must match L{ENV_NAME_RE}.
"""

from __future__ import annotations

import re
import shlex
import signal
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ecs.launch import AgentSpec, LaunchError, Placement, check_argument, check_id
from ecs.launch.options import ENV_NAME_RE

NAMES_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}(?:,[A-Za-z0-9_.-]{1,128}){0,31}")
"""A partition, account or QOS name, or a comma-separated list of them."""
NODELIST_RE = re.compile(r"[A-Za-z0-9_.,\[\]-]{1,1024}")
TIME_RE = re.compile(r"(?:[0-9]{1,6}-)?[0-9]{1,6}(?::[0-9]{1,2}){0,2}|UNLIMITED|INFINITE")
EXTRA_RE = re.compile(r"--([a-z][a-z0-9-]{0,63})=(.+)")
EXTRA_REFUSED = frozenset({"wrap", "parsable", "output", "error", "job-name", "chdir", "array", "test-only"})
"""Options of C{extra} refused: we set them ourselves, or they change what a job is."""
OPTIONS = frozenset({"partition", "account", "qos", "time", "nodelist", "job_name", "output", "workdir",
                     "extra", "twistd", "args", "env", "agent_args"})
"""The placement options this launcher knows (C{agent_args} is the supervisor's: it is in the spec)."""

_HINTS = {"partition": "a name or names, comma-separated", "account": "a name", "qos": "a name",
          "time": "a string such as '90', '2:00:00' or '1-00:00:00'", "nodelist": "a host list such as 'n[01-04]'"}


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse unknown or malformed slurm placement options (L{LaunchError} C{invalid})."""
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise LaunchError(
            "invalid", f"unknown slurm option(s) {', '.join(unknown)}: known are {', '.join(sorted(OPTIONS))}"
        )
    for key, pattern in (("partition", NAMES_RE), ("account", NAMES_RE), ("qos", NAMES_RE),
                         ("time", TIME_RE), ("nodelist", NODELIST_RE)):
        if key in options and not (isinstance(options[key], str) and pattern.fullmatch(options[key])):
            raise LaunchError("invalid", f"invalid slurm option {key} {options[key]!r}: expected {_HINTS[key]}")
    if "job_name" in options:
        check_id(options["job_name"], "slurm job_name")
    for key in ("workdir", "output", "twistd"):
        if key in options:
            value = check_argument(options[key], f"slurm option {key}")
            if key != "twistd" and not value.startswith("/"):
                raise LaunchError("invalid", f"slurm option {key} must be an absolute path, got {value!r}")
            if value.startswith("-"):
                raise LaunchError("invalid", f"slurm option {key} must not start with '-'")
    if "output" in options and re.search(r"%(?![jx%])", options["output"]):
        raise LaunchError("invalid", f"slurm option output {options['output']!r}: only %j, %x and %% are allowed")
    for key in ("extra", "args"):
        value = options.get(key, [])
        if not isinstance(value, list):
            raise LaunchError("invalid", f"slurm option {key} must be a list of strings")
        for item in value:
            check_argument(item, f"item of slurm option {key}")
    for item in options.get("extra", []):
        match = EXTRA_RE.fullmatch(item)
        if not match:
            raise LaunchError("invalid", f"invalid sbatch option {item!r} in extra: use the form --name=value")
        if match.group(1) in EXTRA_REFUSED:
            raise LaunchError("invalid", f"sbatch option --{match.group(1)} is not allowed in extra")
    env = options.get("env", {})
    if not isinstance(env, Mapping):
        raise LaunchError("invalid", "slurm option env must be an object of name: value")
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
            raise LaunchError("invalid", f"invalid environment variable name {name!r}")
        check_argument(value, f"value of environment variable {name}")


@attrs.frozen
class Submission:
    """What C{start} submits: sbatch's arguments and the batch script."""

    argv: tuple[str, ...]
    script: str
    job_name: str
    output: str


def build_submission(spec: AgentSpec, placement: Placement, common_args: Sequence[str], log_dir: str) -> Submission:
    """Check C{spec} and C{placement} and build the C{sbatch} command and script."""
    name = spec.name
    if placement.launcher != "slurm":
        raise LaunchError("invalid", f"placement of {placement.agent} uses launcher {placement.launcher!r}, not slurm")
    if placement.agent != name:
        raise LaunchError("invalid", f"placement is for {placement.agent}, not {name}")
    options = placement.options
    check_options(options)
    plugin_args = [check_argument(a, "plugin argument") for a in spec.plugin_args]
    if not plugin_args:
        raise LaunchError("invalid", f"no plugin to run for {name}")
    job_name = options.get("job_name") or f"ecs-{spec.kind}-{spec.id}"
    folder = (options.get("workdir") or log_dir).rstrip("/").replace("%", "%%")
    output = options.get("output") or f"{folder}/ecs-{spec.kind}-{spec.id}-%j.log"
    argv = ["sbatch", "--parsable", f"--job-name={job_name}", f"--output={output}"]
    for key in ("partition", "account", "qos", "time", "nodelist"):
        if key in options:
            argv.append(f"--{key}={options[key]}")
    if "workdir" in options:
        argv.append(f"--chdir={options['workdir']}")
    argv += list(options.get("extra", []))
    command = [options.get("twistd", "twistd"), "-n", "--pidfile=", *plugin_args, *common_args,
               *options.get("args", [])]
    lines = [
        "#!/bin/sh",
        f"# ECS agent {shlex.quote(name)}, submitted by the ECA (ecs.launch.slurm).",
        "# Every value is single-quoted below: the shell runs it as it is.",
        *(f"export {var}={shlex.quote(value)}" for var, value in sorted(options.get("env", {}).items())),
        f'echo ecs-launch: agent {shlex.quote(name)} job "$SLURM_JOB_ID" pid $$ on "$(hostname)"',
        "exec " + " ".join(shlex.quote(arg) for arg in command),
    ]
    return Submission(tuple(argv), "\n".join(lines) + "\n", job_name, output)


def expand_output(output: str, job_id: str, job_name: str) -> str:
    """The output file name with SLURM's C{%j}, C{%x} and C{%%} replaced."""
    return re.sub(r"%([jx%])", lambda m: {"j": job_id, "x": job_name, "%": "%"}[m.group(1)], output)


def parse_time(text: str) -> float | None:
    """A SLURM time stamp (local time, C{2025-01-31T12:00:00}) as POSIX time; C{None} if none."""
    try:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def parse_exit(text: str) -> int | None:
    """SLURM's C{ExitCode} C{"code:signal"}: the code, or minus the signal; C{None} if unparsable."""
    match = re.fullmatch(r"\s*([0-9]+):([0-9]+)\s*", text)
    if not match:
        return None
    code, sig = int(match.group(1)), int(match.group(2))
    return -sig if sig else code


def describe(state: str, code: int | None) -> str:
    """C{"COMPLETED, exited with code 0"}, C{"CANCELLED, killed by signal 15 (SIGTERM)"}..."""
    if code is None:
        return f"{state}, exit code unknown"
    if code < 0:
        try:
            return f"{state}, killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"{state}, killed by signal {-code}"
    return f"{state}, exited with code {code}"
