"""
Packaging for ECS (metadata in pyproject.toml; this file adds what setuptools
cannot declare there).

The data folders ``fsm/``, ``etc/`` and ``templates/`` sit at the top of the
source tree (the design card's layout).  The wheel carries them inside the
``ecs`` package, as ``ecs/data/<folder>/``, so that every way of installing
(virtualenv, ``pip install --user``, a system prefix) finds them beside the
code: :mod:`ecs.paths` looks there when it is not run from a checkout.
"""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

DATA_FOLDERS = ("fsm", "etc", "templates")
HERE = Path(__file__).resolve().parent


class BuildWithData(build_py):
    """build_py, then copy the data folders into the built ``ecs/data``."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "ecs" / "data"
        for folder in DATA_FOLDERS:
            source = HERE / folder
            if not source.is_dir():
                raise SystemExit(f"setup.py: data folder {source} is missing")
            destination = target / folder
            if destination.exists():
                shutil.rmtree(destination)
            shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


# Every package under ecs/ and agents/, found (nothing to forget when one is
# added), and the plugin folder: twisted/plugins has no __init__.py (twistd's
# rule), so it is named here.
PACKAGES = [*find_packages(include=["ecs", "ecs.*", "agents", "agents.*"]), "twisted.plugins"]

setup(packages=PACKAGES, cmdclass={"build_py": BuildWithData})
