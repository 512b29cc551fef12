"""
ECS: the shared library of the experiment control system.

Configuration (:mod:`ecs.config`), the wire protocol (:mod:`ecs.protocol`),
the transports (:mod:`ecs.transport`, :mod:`ecs.zmq_transport`,
:mod:`ecs.memory_transport`), declarative state machines (:mod:`ecs.fsm`),
the registry interface (:mod:`ecs.registry`) and the ``ecs`` command line
(:mod:`ecs.cli`).
"""

__version__ = "0.1.0"
