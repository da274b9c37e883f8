import pytest

from routing.slots import SLOT_COUNT, key_hash_slot


@pytest.mark.parametrize(
    ("key", "slot"),
    [
        (b"123456789", 12739),  # CRC16 0x31C3 mod 16384
        (b"", 0),
        (b"foo", 12182),
        (b"bar", 5061),
        (b"{user1000}.following", key_hash_slot(b"user1000")),
        (b"foo{}{bar}", key_hash_slot(b"foo{}{bar}")),  # empty tag: whole key
        (b"foo{{bar}}zap", key_hash_slot(b"{bar")),
        (b"foo{bar}{zap}", key_hash_slot(b"bar")),
        (b"{}x", key_hash_slot(b"{}x")),
        (b"\xff\x00{\xfe}", key_hash_slot(b"\xfe")),  # binary-safe
    ],
)
def test_key_hash_slot(key: bytes, slot: int) -> None:
    assert key_hash_slot(key) == slot


def test_hash_tags_share_a_slot() -> None:
    assert key_hash_slot(b"{user}.a") == key_hash_slot(b"{user}.b") == key_hash_slot(b"user")


def test_empty_tag_is_not_a_tag() -> None:
    assert key_hash_slot(b"{}x") != key_hash_slot(b"")


def test_slots_are_in_range() -> None:
    assert all(0 <= key_hash_slot(b"key:%d" % i) < SLOT_COUNT for i in range(2000))
    assert len({key_hash_slot(b"key:%d" % i) for i in range(2000)}) > 1800
