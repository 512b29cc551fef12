"""
The installed package works from an unrelated directory: a normal (not
editable) C{pip install .} into a fresh virtualenv, then C{twistd} finds the
plugins, and the agents find their state tables and configuration.

This test builds a virtualenv (pip takes the dependencies from its cache or
the package index); set C{ECS_SKIP_INSTALL_TEST=1} to skip it on a machine
without either.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from twisted.trial.unittest import SkipTest, TestCase

from tests.procs import ROOT, spawn


class InstalledPackageTests(TestCase):
    """pip install . into a fresh venv, then use it from elsewhere."""

    timeout = 600

    async def run_ok(self, name: str, argv: list[str], cwd: Path) -> list[str]:
        proc, _ = spawn(self, name, argv, cwd=str(cwd), isolated=True)
        code = await proc.ended
        self.assertEqual(code, 0, f"{' '.join(argv)} failed:\n" + "\n".join(proc.lines[-40:]))
        return proc.lines

    async def test_install_and_run_elsewhere(self) -> None:
        """Plugins, tables and settings are found by the installed package."""
        if os.environ.get("ECS_SKIP_INSTALL_TEST"):
            raise SkipTest("ECS_SKIP_INSTALL_TEST is set")
        tmp = Path(self.mktemp()).resolve()
        tmp.mkdir()
        source = tmp / "source"
        # Copy the tree without its venv or build leftovers: pip builds from it.
        shutil.copytree(
            ROOT,
            source,
            ignore=shutil.ignore_patterns(
                ".venv", ".git", "_trial_temp*", "*.egg-info", "build", "var", "__pycache__",
                "dropin.cache",
            ),
        )
        venv = tmp / "venv"
        base = getattr(sys, "_base_executable", sys.executable)
        await self.run_ok("venv", [base, "-m", "venv", str(venv)], tmp)
        pip = str(venv / "bin" / "pip")
        await self.run_ok("pip", [pip, "install", "--quiet", str(source)], tmp)
        elsewhere = tmp / "elsewhere"
        elsewhere.mkdir()
        shutil.rmtree(source)  # nothing may come from the source tree any more

        help_lines = await self.run_ok("twistd --help", [str(venv / "bin" / "twistd"), "--help"], elsewhere)
        plugins = "\n".join(help_lines)
        for name in ("ecs-detector", "ecs-global", "ecs-simhost"):
            self.assertIn(name, plugins)

        share = venv / "share" / "ecs"
        tables = sorted(str(p) for p in (share / "fsm").glob("*.yaml"))
        self.assertEqual(len(tables), 5)  # four state tables and the partition sequence
        checked = await self.run_ok("ecs fsm check", [str(venv / "bin" / "ecs"), "fsm", "check", *tables], elsewhere)
        self.assertEqual(sum(1 for line in checked if line.startswith("OK")), 5)

        (elsewhere / "inventory.yaml").write_text("detectors:\n  STS: {type: STS}\n")
        proc, _ = spawn(
            self,
            "installed ecs-detector",
            [str(venv / "bin" / "twistd"), "-n", "--pidfile=", "ecs-detector", "--id", "STS",
             "--inventory", "inventory.yaml", "--security", "none"],
            cwd=str(elsewhere),
            isolated=True,
        )
        await proc.wait_for(r"serving 1 agent\(s\) at tcp://127\.0\.0\.1:\d+", timeout=60)
        # The process is stopped (by pid) by the cleanup that spawn() registered.
