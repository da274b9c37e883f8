"""Merging the replies of a split request into the one reply a standalone Redis would give.

Works on raw reply bytes: elements are moved, never decoded and re-encoded, so values of
any RESP type reach the client as the node sent them. An error in any part wins (the
first one, in key order), as Envoy's FragmentedRequest::onChildFailure does.
"""

from routing.plan import Split
from routing.resp import array_elements, encode_int, is_error


def merge_replies(split: Split, raws: list[bytes]) -> bytes:
    """Combine one raw reply per part (same order as split.parts) into one raw reply."""
    for raw in raws:
        if is_error(raw):
            return raw
    if split.merge == "agg_sum":
        return encode_int(sum(int(raw[1:-2]) for raw in raws))
    if split.merge == "all_succeeded":
        return raws[0]
    return _merge_by_key(split, raws)


def _merge_by_key(split: Split, raws: list[bytes]) -> bytes:
    items: list[bytes] = [b""] * split.key_count
    for part, raw in zip(split.parts, raws, strict=True):
        ordinals = part.ordinals
        if len(ordinals) == 1 and raw.startswith(b"*1\r\n"):
            items[ordinals[0]] = raw[4:]  # the common case: one key of this slot
            continue
        elements = array_elements(raw)
        if elements is None or len(elements) != len(ordinals):
            return b"-ERR upstream returned an unexpected reply to a split command\r\n"
        for ordinal, element in zip(ordinals, elements, strict=True):
            items[ordinal] = element
    return b"*%d\r\n" % len(items) + b"".join(items)
