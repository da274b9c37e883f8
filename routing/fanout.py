"""Whole-keyspace plans: which commands go to every primary or every node, and how to merge.

Derived from each command's tips (`request_policy:all_shards|all_nodes`, `response_policy:
agg_sum|...`); hand-written only where Redis 7.0's tips say `special` or nothing (INFO,
RANDOMKEY, SLOWLOG GET, CONFIG RESETSTAT, SCAN, script calls). Pure: proxy/fanout.py sends
the requests, routing/merge.py, routing/scan.py and routing/info.py merge the replies.
"""

from dataclasses import dataclass
from typing import Final, Literal

from routing.commands import CommandSpec
from routing.resp import Args, string2ll


class Special:
    """A plan proxy/fanout.py serves: it needs several nodes, or the slot map, or memory."""

    __slots__ = ()


Targets = Literal["primaries", "nodes"]
FanoutMerge = Literal[
    "agg_sum",
    "agg_min",
    "agg_max",
    "agg_logical_and",
    "agg_logical_or",
    "all_succeeded",
    "one_succeeded",
    "concat",
    "random_key",
    "slowlog",
    "info",
    "pubsub",
]


@dataclass(frozen=True, slots=True)
class Fanout(Special):
    """Send the request to every primary (all_shards) or every node (all_nodes), then merge.

    `fresh_connection`: the command must not wait behind a busy script (allow_busy: KILL).
    `count`: SLOWLOG GET's entry count (-1: all).
    """

    targets: Targets
    merge: FanoutMerge
    fresh_connection: bool = False
    count: int = -1


@dataclass(frozen=True, slots=True)
class Scan(Special):
    """SCAN: one shard at a time, the cursor names the shard (routing/scan.py)."""


@dataclass(frozen=True, slots=True)
class Script(Special):
    """EVAL*/EVALSHA*: routed to `slot`; slotless remembers bodies and answers NOSCRIPT."""

    slot: int


SCAN_PLAN: Final = Scan()
SCRIPT_CALLS: Final = frozenset(b"eval evalsha eval_ro evalsha_ro".split())
_TARGETS: Final[dict[bytes, Targets]] = {b"all_shards": "primaries", b"all_nodes": "nodes"}
_MERGES: Final[dict[bytes | None, FanoutMerge]] = {
    None: "concat",  # KEYS: the default for arrays is to concatenate
    b"agg_sum": "agg_sum",
    b"agg_min": "agg_min",
    b"agg_max": "agg_max",
    b"agg_logical_and": "agg_logical_and",
    b"agg_logical_or": "agg_logical_or",
    b"all_succeeded": "all_succeeded",
    b"one_succeeded": "one_succeeded",
}
_OVERRIDES: Final[dict[bytes, tuple[Targets, FanoutMerge]]] = {
    b"info": ("primaries", "info"),  # response_policy:special
    b"randomkey": ("primaries", "random_key"),  # no response policy; a bulk, not an array
    b"slowlog|get": ("nodes", "slowlog"),  # no response policy; newest entries first
    b"config|resetstat": ("nodes", "all_succeeded"),  # no tips at all
    # No tips: a node knows only its own subscribers; proxy/pubsub.py merges.
    b"pubsub|channels": ("nodes", "pubsub"),
    b"pubsub|numsub": ("nodes", "pubsub"),
    b"pubsub|numpat": ("nodes", "pubsub"),
    b"pubsub|shardchannels": ("nodes", "pubsub"),
    b"pubsub|shardnumsub": ("nodes", "pubsub"),
}
_SLOWLOG_DEFAULT_COUNT: Final = 10

SpecialKind = Fanout | Literal["scan", "script", "one_primary"]


def special_plan(spec: CommandSpec) -> SpecialKind | None:
    """How a keyless whole-keyspace command is served; None when the tips say nothing.

    redis.io "Redis command tips"; `response_policy:special` reports (MEMORY STATS,
    LATENCY ..., FUNCTION STATS) are one primary's.
    """
    name = spec.name
    if name == b"scan":
        return "scan"
    if name in SCRIPT_CALLS:
        return "script"
    fresh = b"allow_busy" in spec.flags  # SCRIPT KILL, FUNCTION KILL
    override = _OVERRIDES.get(name)
    if override is not None:
        return Fanout(*override, fresh_connection=fresh)
    targets = _TARGETS.get(spec.request_policy or b"")
    if targets is None or spec.has_keys:
        return None
    if spec.response_policy == b"special":
        return "one_primary"
    merge = _MERGES.get(spec.response_policy)
    return Fanout(targets, merge, fresh) if merge is not None else None


def slowlog_plan(targets: Targets, args: Args) -> Fanout:
    """SLOWLOG GET [count] (slowlog.c: 10 by default, -1 for all)."""
    count = _SLOWLOG_DEFAULT_COUNT
    if len(args) > 2:
        parsed = string2ll(args[2])
        # A bad count: every node answers the same error, and errors win the merge.
        count = parsed if parsed is not None and parsed >= -1 else -1
    return Fanout(targets, "slowlog", count=count)


def wait_args(args: Args, max_timeout_ms: int) -> Args:
    """WAIT as sent to each primary, on a connection other clients share.

    The timeout is capped (0 means forever) so that a WAIT for more replicas than a shard
    has holds that connection no longer than the proxy's command timeout allows; the count
    answered is the one a standalone server gives at its timeout. Bad arguments go as they
    came: the node's error is Redis's (replication.c waitCommand).
    """
    if len(args) != 3:
        return args
    timeout = string2ll(args[2])
    if string2ll(args[1]) is None or timeout is None or timeout < 0:
        return args
    if 0 < timeout <= max_timeout_ms:
        return args
    return [args[0], args[1], b"%d" % max_timeout_ms]
