"""Blocking commands as values: their slot, their timeout, and how to undo a pop.

Pure helpers for proxy/blocking.py: where a blocking command's timeout argument sits (to
re-arm it with the time left after a redirect) and which command puts back what a pop
returned to a client that is gone. No I/O; invalid arguments are left to the node, which
answers them with its own error.
"""

import math
from dataclasses import dataclass
from typing import Final

from routing import replies
from routing.commands import CommandSpec
from routing.keys import key_positions
from routing.resp import Args, ErrorReply, array_elements, string2ll
from routing.slots import key_hash_slot

ANY_NODE: Final = -1  # same value as routing.plan.ANY_NODE

# Where the timeout is (src/t_list.c, t_zset.c, t_stream.c argument layouts).
_TIMEOUT_LAST: Final = frozenset(
    (b"blpop", b"brpop", b"bzpopmin", b"bzpopmax", b"brpoplpush", b"blmove")
)
_TIMEOUT_FIRST: Final = frozenset((b"blmpop", b"bzmpop"))
_STREAM_READS: Final = frozenset((b"xread", b"xreadgroup"))
# The smallest timeout that still means "do not wait forever" (0 means forever).
_MIN_SECONDS: Final = 0.001


@dataclass(frozen=True, slots=True)
class Timeout:
    """A blocking command's timeout: argv index, seconds (0 = forever), and its unit."""

    index: int
    seconds: float
    millis: bool  # XREAD/XREADGROUP BLOCK counts milliseconds, the others seconds


def blocking_slot(spec: CommandSpec, args: Args) -> int | ErrorReply:
    """The one slot of a blocking command's keys; ANY_NODE if the node must judge the
    arguments; CROSSSLOT when keys (BLMOVE source and destination too) span slots."""
    positions = key_positions(spec, args)
    if not positions:
        return ANY_NODE
    slot = key_hash_slot(args[positions[0]])
    for pos in positions[1:]:
        if key_hash_slot(args[pos]) != slot:
            return replies.CROSSSLOT
    return slot


def parse_timeout(name: bytes, args: Args) -> Timeout | None:
    """The timeout argument of a blocking command (timeout.c getTimeoutFromObjectOrReply);
    None when absent or invalid (the node rejects it before blocking)."""
    if name in _TIMEOUT_LAST:
        index = len(args) - 1
    elif name in _TIMEOUT_FIRST:
        index = 1
    elif name in _STREAM_READS:
        found = _block_index(args)
        if found is None:
            return None
        millis = string2ll(args[found])
        if millis is None or millis < 0:
            return None
        return Timeout(found, millis / 1000, True)
    else:
        return None
    if index < 1 or index >= len(args):
        return None
    try:
        seconds = float(args[index])
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return Timeout(index, seconds, False)


def _block_index(args: Args) -> int | None:
    """argv index of XREAD/XREADGROUP's BLOCK value (t_stream.c xreadCommand option loop)."""
    found = None
    i = 1
    while i < len(args):
        option = args[i].lower()
        if option == b"streams":
            break
        if option == b"block" and i + 1 < len(args):
            found = i + 1
            i += 2
        elif option == b"count":
            i += 2
        elif option == b"group":
            i += 3
        else:
            i += 1
    return found


def rearm(args: Args, timeout: Timeout, remaining: float) -> Args:
    """`args` with the timeout replaced by the time left (a retry after a redirect);
    unchanged for 0 (forever). Never 0 for a finite wait: that would mean forever."""
    if timeout.seconds == 0:
        return args
    if timeout.millis:
        value = b"%d" % max(1, math.ceil(remaining * 1000))
    else:
        value = b"%.3f" % max(_MIN_SECONDS, remaining)
    out = list(args)
    out[timeout.index] = value
    return out


def restore_command(name: bytes, args: Args, raw: bytes) -> Args | None:
    """The command that puts back what a pop returned (`raw`, RESP2 or RESP3) to a client
    that disconnected meanwhile; None when nothing left its place (a null reply, an error,
    BLMOVE/BRPOPLPUSH which moved the element, XREAD/XREADGROUP which consume nothing
    that XREADGROUP's pending entries list does not keep)."""
    items = array_elements(raw) if raw[:1] == b"*" else None
    if not items:
        return None
    if name in (b"blpop", b"brpop") and len(items) == 2:
        key, element = _scalar(items[0]), _scalar(items[1])
        if key is None or element is None:
            return None
        return [b"LPUSH" if name == b"blpop" else b"RPUSH", key, element]
    if name in (b"bzpopmin", b"bzpopmax") and len(items) == 3:
        key, member, score = (_scalar(item) for item in items)
        if key is None or member is None or score is None:
            return None
        return [b"ZADD", key, score, member]
    if name in (b"blmpop", b"bzmpop") and len(items) == 2:
        return _restore_mpop(name, args, items)
    return None


def _restore_mpop(name: bytes, args: Args, items: list[bytes]) -> Args | None:
    key = _scalar(items[0])
    popped = array_elements(items[1])
    if key is None or not popped:
        return None
    if name == b"bzmpop":
        out = [b"ZADD", key]
        for pair in popped:
            fields = array_elements(pair)
            if fields is None or len(fields) != 2:
                return None
            member, score = _scalar(fields[0]), _scalar(fields[1])
            if member is None or score is None:
                return None
            out += [score, member]
        return out
    numkeys = string2ll(args[2]) if len(args) > 2 else None
    where = 3 + numkeys if numkeys is not None and numkeys > 0 else len(args)
    if where >= len(args):
        return None
    push = b"LPUSH" if args[where].lower() == b"left" else b"RPUSH"
    elements = [_scalar(item) for item in popped]
    if any(e is None for e in elements):
        return None
    # Popped first = nearest the end it came from: push back in reverse to restore order.
    return [push, key, *(e for e in reversed(elements) if e is not None)]


def _scalar(raw: bytes) -> bytes | None:
    """The text of a bulk string, simple string, integer or RESP3 double reply."""
    kind = raw[:1]
    if kind == b"$":
        newline = raw.find(b"\r\n")
        length = int(raw[1:newline])
        return raw[newline + 2 : newline + 2 + length] if length >= 0 else None
    if kind in (b"+", b":", b","):
        return raw[1:-2]
    return None
