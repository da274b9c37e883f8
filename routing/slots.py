"""Hash slots: which of the 16384 slots a key lives in.

Mirrors `keyHashSlot` in Redis's src/cluster.c (cluster spec, "Keys distribution
model"). Keys are bytes and are never decoded.
"""

from binascii import crc_hqx
from collections.abc import Sequence
from typing import Final

SLOT_COUNT: Final = 16384
_SLOT_MASK: Final = SLOT_COUNT - 1


def key_hash_slot(key: bytes) -> int:
    """CRC16-CCITT (XMODEM) of the key, or of its hash tag, mod 16384 (cluster.c keyHashSlot)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        # An empty tag ("{}") means the whole key is hashed, as Redis does.
        if end > start + 1:
            return crc_hqx(key[start + 1 : end], 0) & _SLOT_MASK
    return crc_hqx(key, 0) & _SLOT_MASK


def key_hash_slots(keys: Sequence[bytes]) -> list[int]:
    """key_hash_slot of each key; keys without a "{" skip the function call (multi-key
    commands pay it once per key otherwise)."""
    # 123 is "{": an int membership test costs a tenth of b"{" in key.
    return [key_hash_slot(k) if 123 in k else crc_hqx(k, 0) & _SLOT_MASK for k in keys]
