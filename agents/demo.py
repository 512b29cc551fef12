# -*- test-case-name: tests.test_demo -*-
"""
C{twistd -n ecs-demo [--port 8080] [--registry-port 5000] [--state-dir ./var]
[--detectors N]}: the ECA with the demo partition seeded and every agent
launched locally (see L{agents.eca.tap}).
"""

from agents.eca.tap import DemoOptions as Options
from agents.eca.tap import makeDemoService as makeService

__all__ = ["Options", "makeService"]
