"""
Packaging for ECS, the experiment control system.

The shared library (``ecs``), the agents (``agents``) and the twistd plugins
(``twisted/plugins/ecs_plugins.py``) are installed as Python packages.  The
data folders ``fsm/``, ``etc/`` and ``templates/`` are installed under
``<prefix>/share/ecs/``, where :mod:`ecs.paths` finds them when the package
is not run from a source checkout.
"""

import os
from glob import glob

from setuptools import setup

DATA_FOLDERS = ("fsm", "etc", "templates")


def _data_files():
    """Every file under the data folders, grouped by directory for ``data_files``."""
    by_dir = {}
    for folder in DATA_FOLDERS:
        for path in sorted(glob(f"{folder}/**/*", recursive=True)):
            if os.path.isfile(path) and "__pycache__" not in path:
                by_dir.setdefault(os.path.dirname(path), []).append(path)
    return [(f"share/ecs/{d}", paths) for d, paths in sorted(by_dir.items())]


setup(
    name="ecs",
    version="0.1.0",
    description="Experiment control system for particle-physics experiments (Twisted)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=["ecs", "ecs.store", "agents", "twisted.plugins"],
    package_data={"twisted": ["plugins/ecs_plugins.py"]},
    data_files=_data_files(),
    install_requires=[
        "twisted>=24.7",
        "txzmq==1.0.0",
        "pyzmq>=25",
        # Automat's TypeMachineBuilder and Transitioner are young: pinned (STYLE.md #4).
        "automat==25.4.16",
        "pyyaml>=6",
        "attrs>=23",
        # the ECA: web API, password hashing
        "klein>=24.8",
        "bcrypt>=4",
    ],
    extras_require={"test": ["treq>=24", "selenium>=4.20"]},
    entry_points={"console_scripts": ["ecs = ecs.cli:main"]},
)
