"""Classifying cluster error replies: MOVED/ASK redirects and retryable states.

Mirrors the CLUSTER_REDIR_* cases of Redis's cluster.c getNodeByQuery. Works on the raw
error bytes so the hot path never decodes a reply it will forward unchanged.
"""

from dataclasses import dataclass
from typing import Final, Literal

from routing.slotmap import AddressMap, format_addr, parse_addr


def _same(addr: str) -> str:
    return addr


RedirectKind = Literal["moved", "ask"]

# Errors after which the same request is simply sent again later: the cluster is busy.
RETRY_PREFIXES: Final = (b"-TRYAGAIN", b"-CLUSTERDOWN", b"-LOADING", b"-MASTERDOWN")
_REDIRECT_PREFIXES: Final = (b"-MOVED ", b"-ASK ")
CLUSTER_ERROR_PREFIXES: Final = _REDIRECT_PREFIXES + RETRY_PREFIXES


@dataclass(frozen=True, slots=True)
class Redirect:
    kind: RedirectKind
    slot: int
    node: str  # "host:port"


def parse_redirect(raw: bytes, replier_host: str, remap: AddressMap = _same) -> Redirect | None:
    """`-MOVED 3999 127.0.0.1:6381` -> Redirect; None for any other reply.

    An empty host (`-MOVED 3999 :6381`, cluster-preferred-endpoint-type unknown-endpoint)
    means the host of the node that replied. `remap` turns an announced address into a
    reachable one (upstream.address_map).
    """
    if not raw.startswith(_REDIRECT_PREFIXES):
        return None
    parts = raw[1:].split()
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    kind: RedirectKind = "moved" if parts[0] == b"MOVED" else "ask"
    slot = int(parts[1])
    if slot >= 16384:
        return None
    target = parts[2].decode("ascii", "replace")
    try:
        host, port = parse_addr(target) if not target.startswith(":") else ("", int(target[1:]))
    except ValueError:
        return None
    return Redirect(kind, slot, remap(format_addr(host or replier_host, port)))


def is_retryable(raw: bytes) -> bool:
    """TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN: not executed, try again shortly."""
    return raw.startswith(RETRY_PREFIXES)
