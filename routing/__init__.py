"""slotless routing: pure, synchronous logic for serving a Redis Cluster as one Redis.

No sockets, no asyncio, no clocks, no logging here (tests/unit/test_layering.py checks).
"""

# First: accel installs its finder (SLOTLESS_PURE, or no complete build) before a compiled
# module loads, so that every import below gets the hot path it says.
from routing import accel  # noqa: F401

# isort: split
from routing.resp import ErrorReply
from routing.slotmap import SlotMap
from routing.slots import SLOT_COUNT, key_hash_slot

__all__ = ["SLOT_COUNT", "ErrorReply", "SlotMap", "key_hash_slot"]
