# -*- test-case-name: tests.test_demo -*-
"""
C{twistd -n ecs-demo [--port 8080] [--registry-port 5000] [--state-dir ./var]
[--detectors N]}: the ECA with the demo partition seeded and every agent
launched locally (see L{agents.eca.tap}).

Bad settings or a damaged key folder found while composing end the process
with one line (L{ecs.config.settings.fail}), as for every other plugin.
"""

from __future__ import annotations

from twisted.application.service import IService

from agents.eca.tap import DemoOptions as Options
from agents.eca.tap import makeDemoService
from ecs.config.settings import fail
from ecs.net.keys import KeyFileError
from ecs.schema import ConfigError


def makeService(options: Options) -> IService:
    """C{ecs-demo}: the ECA's demo composition; configuration errors exit with one line."""
    try:
        return makeDemoService(options)
    except (ConfigError, KeyFileError) as e:
        fail(e)


__all__ = ["Options", "makeService"]
