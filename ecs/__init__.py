"""
ECS: the shared library of the experiment control system.

Configuration (:mod:`ecs.config.settings`), the wire protocol (:mod:`ecs.protocol`),
the transports (:mod:`ecs.net.transport`, :mod:`ecs.net.zeromq`,
:mod:`ecs.net.memory`), declarative state machines (:mod:`ecs.fsm.machine`),
the registry interface (:mod:`ecs.net.registry`) and the ``ecs`` command line
(:mod:`ecs.cli`).
"""

__version__ = "0.1.0"
