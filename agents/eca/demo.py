# -*- test-case-name: tests.test_demo -*-
"""
The demo's seed (C{twistd ecs-demo}): its inventory, configurations and
tag (L{seed_demo}), and its agents' placements (L{seed_demo_placements}).
Both are idempotent: a restarted demo reuses what it finds.
"""

from __future__ import annotations

import yaml

from ecs.paths import data_dir
from ecs.store import Store, StoreError

DEMO_DETECTORS = ("STS", "MVD", "TOF", "TRD", "RICH")


async def seed_demo(store: Store, extra: int) -> None:
    """The demo inventory, configurations and tag; idempotent (a restart reuses it)."""
    if "demo" not in {row.id for row in await store.partitions()}:
        await store.add_partition("demo")
    known = {row.id for row in await store.detectors()}
    detectors = [(d, d) for d in DEMO_DETECTORS] + [(f"sim{n}", "STS") for n in range(1, extra + 1)]
    for detector, type_name in detectors:
        if detector not in known:
            await store.add_detector(detector, type_name, "demo")
    data = yaml.safe_load((data_dir("etc") / "demo-configs.yaml").read_text(encoding="utf-8"))
    have = {row.config_id for row in await store.configs()}
    for config_id, config in data["configurations"].items():
        if config_id not in have:
            await store.save_config(config_id, config["system"], config["parameters"], "demo")
    members = list(data["tags"]["demo"])
    for detector, _ in detectors[len(DEMO_DETECTORS) :]:
        if f"{detector}-default" not in have:
            await store.save_config(f"{detector}-default", detector, {"threshold": 12}, "demo")
        members.append(f"{detector}-default")
    for name, ids in data["tags"].items():
        try:
            await store.tag(name)
            if name != "demo":
                continue
        except StoreError:
            pass
        await store.save_tag(name, members if name == "demo" else ids, "demo")


async def seed_demo_placements(store: Store, extra: int) -> None:
    """
    The demo's agents, placed C{local} on C{localhost} with autostart:
    C{global:all}, C{detector:<D>} for the five demo detectors, C{pca:demo}
    and, with C{extra} simulated detectors, C{simhost:sim}.
    """
    await store.set_placement("global:all", "localhost", "local", {}, True, "demo")
    for detector in DEMO_DETECTORS:
        await store.set_placement(
            f"detector:{detector}", "localhost", "local", {"agent_args": ["--type", detector]}, True, "demo"
        )
    if extra:
        args = ["--ids", f"1-{extra}", "--prefix", "sim", "--type", "STS"]
        await store.set_placement("simhost:sim", "localhost", "local", {"agent_args": args}, True, "demo")
    elif await store.placement("simhost:sim") is not None:
        await store.delete_placement("simhost:sim")
    await store.set_placement("pca:demo", "localhost", "local", {}, True, "demo")
