# -*- test-case-name: tests.test_paths -*-
"""
Where the data folders (``fsm/``, ``etc/``, ``templates/``) live.

In a source checkout (or an editable install) they sit beside the ``ecs``
package; an installed wheel carries them inside it, as ``ecs/data/``
(setup.py copies them there), so a virtualenv, ``pip install --user`` and a
system prefix all find them.  ``ECS_DATA_DIR`` overrides both, for unusual
deployments.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_FOLDERS = ("fsm", "etc", "templates")


def data_root() -> Path:
    """
    The folder that holds ``fsm/``, ``etc/`` and ``templates/``.

    @raise FileNotFoundError: when no candidate holds an ``etc/ecs.yaml``.
    """
    candidates = []
    override = os.environ.get("ECS_DATA_DIR")
    if override:
        candidates.append(Path(override))
    here = Path(__file__).resolve().parent
    candidates.append(here.parent)
    candidates.append(here / "data")
    for candidate in candidates:
        if (candidate / "etc" / "ecs.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        "ECS data folders not found (looked for etc/ecs.yaml in "
        + ", ".join(str(c) for c in candidates)
        + "); reinstall the package or set ECS_DATA_DIR"
    )


def data_dir(name: str) -> Path:
    """The installed data folder C{name} (one of L{DATA_FOLDERS})."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {name!r}")
    return data_root() / name


def default_settings_path() -> Path:
    """The shipped C{etc/ecs.yaml}."""
    return data_dir("etc") / "ecs.yaml"


def default_subsystems_path() -> Path:
    """The shipped C{etc/subsystems.yaml}."""
    return data_dir("etc") / "subsystems.yaml"
