"""Merging the replies of a split or fan-out request into the one reply a standalone Redis gives.

Works on raw reply bytes: elements are moved, never decoded and re-encoded, so values of
any RESP type reach the client as the node sent them. An error in any part wins (the
first one, in key order), as Envoy's FragmentedRequest::onChildFailure does, except where
the response_policy tip says otherwise (one_succeeded).
"""

from collections.abc import Callable, Sequence
from typing import Final

from routing import replies
from routing.fanout import FanoutMerge
from routing.plan import Split
from routing.resp import array_elements, encode_array, encode_int, is_error

_UNEXPECTED_SPLIT: Final = replies.UNEXPECTED_SPLIT.encode()
# MGET's nil, by protocol (RESP2, RESP3): what a GET part's WRONGTYPE becomes.
_NIL: Final = (b"$-1\r\n", b"_\r\n")


def merge_split(split: Split, raws: Sequence[bytes], resp3: bool = False) -> bytes:
    """Combine one raw reply per part (in the order of split.requests) into one raw reply."""
    if split.merge != "by_key":
        return merge_fanout(split.merge, list(raws))  # agg_sum, all_succeeded: the same merges
    ordinals = split.ordinals
    as_get = split.as_get
    if ordinals is None and as_get:
        return _merge_gets(raws, resp3)  # the usual cross-slot MGET
    items: list[bytes] = [b""] * split.key_count
    failed = None
    for index, raw in enumerate(raws):
        keys = ordinals[index] if ordinals is not None else None
        if keys is None or len(keys) == 1:
            ordinal = index if keys is None else keys[0]
            if as_get:  # MGET's one-key part, sent as GET: a bulk reply
                if raw[0] != 45:  # '-'
                    items[ordinal] = raw
                    continue
                if raw.startswith(b"-WRONGTYPE"):  # MGET answers nil for a non-string
                    items[ordinal] = _NIL[resp3]
                    continue
                return raw  # the first error, in part order, wins
            if raw.startswith(b"*1\r\n"):
                items[ordinal] = raw[4:]  # the common case: one key of this slot
                continue
        if is_error(raw):
            return raw
        elements = array_elements(raw) if keys is not None else None
        if elements is None or keys is None or len(elements) != len(keys):
            failed = _UNEXPECTED_SPLIT
            continue
        for ordinal, element in zip(keys, elements, strict=True):
            items[ordinal] = element
    if failed is not None:
        return failed
    return b"*%d\r\n" % len(items) + b"".join(items)


def _merge_gets(raws: Sequence[bytes], resp3: bool) -> bytes:
    """merge_split for an MGET whose key i went alone as GET i (the loop above, unrolled)."""
    items = list(raws)
    for index, raw in enumerate(raws):
        if raw[0] == 45:  # '-'
            if not raw.startswith(b"-WRONGTYPE"):
                return raw  # the first error, in key order, wins
            items[index] = _NIL[resp3]  # MGET answers nil for a non-string
    return b"*%d\r\n" % len(items) + b"".join(items)


# --- fan-out: one reply per node, merged as the command's response_policy tip says --------

_UNEXPECTED: Final = replies.UNEXPECTED_FANOUT.encode()
_NULLS: Final = (b"$-1\r\n", b"_\r\n", b"*-1\r\n")
_AGGREGATES: Final[dict[str, Callable[[list[int]], int]]] = {
    "agg_sum": sum,
    "agg_min": min,
    "agg_max": max,
    "agg_logical_and": lambda values: int(all(values)),
    "agg_logical_or": lambda values: int(any(values)),
}


def merge_fanout(kind: FanoutMerge, raws: list[bytes], count: int = -1) -> bytes:
    """One reply from one raw reply per node (redis.io "command tips": response_policy).

    Integer aggregates work on an integer or elementwise on arrays of integers (SCRIPT
    EXISTS). `count` is SLOWLOG GET's. The "info" kind needs the proxy's own numbers and is
    merged by routing/info.py instead.
    """
    if kind == "one_succeeded":
        return next((raw for raw in raws if not is_error(raw)), raws[0])
    if kind == "random_key":
        return _random_key(raws)
    for raw in raws:
        if is_error(raw):
            return raw
    if kind == "all_succeeded":
        return raws[0]
    if kind == "concat":
        return _concat(raws)
    if kind == "slowlog":
        return _slowlog(raws, count)
    aggregate = _AGGREGATES.get(kind)
    return _aggregate(raws, aggregate) if aggregate is not None else _UNEXPECTED


def _integer(raw: bytes) -> int | None:
    return int(raw[1:-2]) if raw[:1] == b":" else None


def _aggregate(raws: list[bytes], aggregate: Callable[[list[int]], int]) -> bytes:
    values = [_integer(raw) for raw in raws]
    if all(v is not None for v in values):
        return encode_int(aggregate([v for v in values if v is not None]))
    arrays = [array_elements(raw) for raw in raws]
    lengths = {len(a) if a is not None else -1 for a in arrays}
    if len(lengths) != 1 or -1 in lengths:
        return _UNEXPECTED
    out = []
    for column in zip(*(a for a in arrays if a is not None), strict=True):
        ints = [_integer(element) for element in column]
        if any(i is None for i in ints):
            return _UNEXPECTED
        out.append(encode_int(aggregate([i for i in ints if i is not None])))
    return encode_array(out)


def _concat(raws: list[bytes]) -> bytes:
    """KEYS: every node's array, each element once (a key lives on one shard only)."""
    seen: dict[bytes, None] = {}
    for raw in raws:
        elements = array_elements(raw)
        if elements is None:
            return _UNEXPECTED
        seen.update(dict.fromkeys(elements))
    return encode_array(list(seen))


def _random_key(raws: list[bytes]) -> bytes:
    """RANDOMKEY: any node's key; nil only when every node says its keyspace is empty."""
    for raw in raws:
        if not is_error(raw) and raw not in _NULLS:
            return raw
    return next((raw for raw in raws if is_error(raw)), raws[0])


def _slowlog(raws: list[bytes], count: int) -> bytes:
    """SLOWLOG GET: the newest `count` entries of all nodes (slowlog.c: newest first)."""
    entries: list[tuple[int, bytes]] = []
    for raw in raws:
        elements = array_elements(raw)
        if elements is None:
            return _UNEXPECTED
        for entry in elements:
            fields = array_elements(entry)
            stamp = _integer(fields[1]) if fields is not None and len(fields) > 1 else None
            entries.append((stamp or 0, entry))
    entries.sort(key=lambda item: -item[0])
    kept = entries if count < 0 else entries[:count]
    return encode_array([entry for _, entry in kept])
