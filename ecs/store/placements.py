# -*- test-case-name: tests.test_store_placements -*-
"""
Placement of agents (which host and launcher each one uses) and the launch
records of the agents the ECA started (tables C{placements} and
C{launches}, schema version 2).
"""

from __future__ import annotations

from ecs.store.txn import _StoreArea


class PlacementOperations(_StoreArea):
    """The operations on placements and launch records."""
