"""twistd plugins of ECS: one ServiceMaker per agent."""

from twisted.application.service import ServiceMaker


class AgentMaker(ServiceMaker):
    """
    A ServiceMaker whose process, once its reactor runs, freezes the heap
    it built to start, so that the garbage collector's full scans stay
    short (L{agents._heap}).
    """

    def makeService(self, options):
        service = super().makeService(options)
        from twisted.internet import reactor

        from agents._heap import settle_when_running

        settle_when_running(reactor)
        return service


ecs_detector = AgentMaker(
    "ECS detector controller", "agents.controller.detector", "One detector controller.", "ecs-detector"
)
ecs_global = AgentMaker(
    "ECS global system controller",
    "agents.controller.global_system",
    "Global-system controllers (TFC, DCS, QA, FLES or all), one FSM per partition.",
    "ecs-global",
)
ecs_simhost = AgentMaker(
    "ECS sim host", "agents.controller.simhost", "Many simulated detector controllers in one process.", "ecs-simhost"
)
ecs_pca = AgentMaker(
    "ECS partition control agent",
    "agents.pca.tap",
    "One partition: its sequence, configure/record/abort, liveness of its systems.",
    "ecs-pca",
)
ecs_eca = AgentMaker(
    "ECS experiment control agent",
    "agents.eca.tap",
    "The ECA: database, registry, partitions, control, web API.",
    "ecs-eca",
)
ecs_demo = AgentMaker(
    "ECS demo",
    "agents.demo",
    "The ECA with a seeded demo partition and every agent launched locally.",
    "ecs-demo",
)
