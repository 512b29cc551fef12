# -*- test-case-name: tests.test_store_keys -*-
"""
Users' SSH public keys, for the ECA's SSH admin shell (table C{user_keys},
schema version 2).
"""

from __future__ import annotations

from ecs.store.txn import _StoreArea


class KeyOperations(_StoreArea):
    """The operations on users' SSH public keys."""
