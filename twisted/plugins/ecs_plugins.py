"""twistd plugins of ECS: one ServiceMaker per agent."""

from twisted.application.service import ServiceMaker

ecs_detector = ServiceMaker(
    "ECS detector controller", "agents.controller.detector", "One detector controller.", "ecs-detector"
)
ecs_global = ServiceMaker(
    "ECS global system controller",
    "agents.controller.global_system",
    "Global-system controllers (TFC, DCS, QA, FLES or all), one FSM per partition.",
    "ecs-global",
)
ecs_simhost = ServiceMaker(
    "ECS sim host", "agents.controller.simhost", "Many simulated detector controllers in one process.", "ecs-simhost"
)
ecs_pca = ServiceMaker(
    "ECS partition control agent",
    "agents.pca.tap",
    "One partition: its sequence, configure/record/abort, liveness of its systems.",
    "ecs-pca",
)
ecs_eca = ServiceMaker(
    "ECS experiment control agent",
    "agents.eca.tap",
    "The ECA: database, registry, partitions, control, web API.",
    "ecs-eca",
)
ecs_demo = ServiceMaker(
    "ECS demo",
    "agents.demo",
    "The ECA with a seeded demo partition and every agent launched locally.",
    "ecs-demo",
)
