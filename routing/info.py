"""INFO across a cluster: one standalone-looking report made of every primary's, plus slotless's.

`server` is the first primary's with slotless's own identity; `clients` counts slotless's
clients; counters in `memory`, `stats`, `cpu`, `commandstats`, `errorstats` and `keyspace`
are summed; other sections are the first primary's. A `# Proxy` section describes slotless.
Pure: the proxy passes its numbers in as `ProxyInfo`; texts stay bytes, never decoded.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from routing import replies
from routing.resp import encode_bulk, is_error

Fields: TypeAlias = dict[bytes, bytes]
Sections: TypeAlias = dict[bytes, Fields]  # lowercase title -> fields; titles kept apart


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """slotless's own numbers for INFO."""

    version: str
    mode: str
    tcp_port: int
    process_id: int
    uptime_in_seconds: int
    connected_clients: int
    maxclients: int
    nodes: int
    primaries: int
    replicas: int
    slots_covered: int
    slot_map_refreshes: int
    redirects_absorbed: int
    upstream_errors: int
    # issue 14: the figures /metrics shows (proxy/stats.py Figures), INFO's way.
    hot_path: str = "pure"  # routing.accel.HOT_PATH: "compiled" or "pure"
    total_connections_received: int = 0
    rejected_connections: int = 0
    total_commands_processed: int = 0
    command_errors: int = 0
    proxy_errors: int = 0
    redirects_moved: int = 0
    redirects_ask: int = 0
    retries_tryagain: int = 0
    retries_clusterdown: int = 0
    total_net_input_bytes: int = 0
    total_net_output_bytes: int = 0
    pending_replies: int = 0
    paused_clients: int = 0
    upstream_connections: int = 0
    upstream_requests: int = 0
    upstream_reconnects: int = 0
    tracking_clients: int = 0  # clients with CLIENT TRACKING on (the nodes count slotless's feeds)


_SUMMED: Final = frozenset(b"memory stats cpu commandstats errorstats keyspace clients".split())
_PROXY_WANTED: Final = frozenset(b"default all everything proxy".split())
# Per-node facts or gauges whose sum means nothing: the first primary's value is shown.
_NOT_SUMMED: Final = frozenset(
    b"total_system_memory latest_fork_usec client_recent_max_input_buffer "
    b"client_recent_max_output_buffer".split()
)
_HUMAN_UNITS: Final = (b"K", b"M", b"G", b"T", b"P")


def info_text(raw: bytes) -> bytes | None:
    """The text of an INFO reply: a bulk string (RESP2) or a txt verbatim string (RESP3)."""
    if raw[:1] not in (b"$", b"=") or raw.startswith(b"$-1"):
        return None
    body = raw[raw.find(b"\r\n") + 2 : -2]
    return body[4:] if raw[:1] == b"=" else body


def parse_info(text: bytes) -> tuple[list[bytes], Sections]:
    """Section titles in order, and each section's fields (server.c genRedisInfoString)."""
    titles: list[bytes] = []
    sections: Sections = {}
    fields: Fields | None = None
    for line in text.split(b"\r\n"):
        if line.startswith(b"# "):
            title = line[2:].strip()
            titles.append(title)
            fields = sections.setdefault(title.lower(), {})
        elif fields is not None and b":" in line:
            key, _, value = line.partition(b":")
            fields[key] = value
    return titles, sections


def wants_proxy_section(args: Sequence[bytes]) -> bool:
    """INFO, INFO default/all/everything, or INFO proxy among the sections asked for."""
    return len(args) < 2 or any(arg.lower() in _PROXY_WANTED for arg in args[1:])


def merge_info(raws: list[bytes], args: Sequence[bytes], proxy: ProxyInfo) -> bytes:
    """One INFO reply from every primary's (errors left out unless all failed)."""
    texts = [text for raw in raws if not is_error(raw) and (text := info_text(raw)) is not None]
    if not texts:
        return next((raw for raw in raws if is_error(raw)), replies.UNEXPECTED_FANOUT.encode())
    parsed = [parse_info(text) for text in texts]
    titles = list(parsed[0][0])
    for other_titles, _ in parsed[1:]:
        titles += [t for t in other_titles if t.lower() not in {x.lower() for x in titles}]
    blocks = []
    for title in titles:
        name = title.lower()
        present = [sections[name] for _, sections in parsed if name in sections]
        blocks.append(_block(title, _SECTION_MERGES.get(name, _first)(present, proxy)))
    if wants_proxy_section(args):
        blocks.append(_block(b"Proxy", _proxy_fields(proxy)))
    text = b"\r\n".join(blocks)
    first = next(raw for raw in raws if not is_error(raw))
    if first[:1] == b"=":
        return b"=%d\r\ntxt:%b\r\n" % (len(text) + 4, text)
    return encode_bulk(text)


def _block(title: bytes, fields: Fields) -> bytes:
    return b"# " + title + b"\r\n" + b"".join(k + b":" + v + b"\r\n" for k, v in fields.items())


def _first(present: list[Fields], proxy: ProxyInfo) -> Fields:
    return dict(present[0])


def _server(present: list[Fields], proxy: ProxyInfo) -> Fields:
    out: Fields = {}
    for key, value in present[0].items():
        out[key] = value
        if key == b"redis_version":
            out[b"slotless_version"] = proxy.version.encode()
    out.update(
        {
            b"redis_mode": b"standalone",
            b"process_id": b"%d" % proxy.process_id,
            b"tcp_port": b"%d" % proxy.tcp_port,
            b"uptime_in_seconds": b"%d" % proxy.uptime_in_seconds,
            b"uptime_in_days": b"%d" % (proxy.uptime_in_seconds // 86400),
        }
    )
    return out


def _clients(present: list[Fields], proxy: ProxyInfo) -> Fields:
    out = _summed(present, proxy)
    out[b"connected_clients"] = b"%d" % proxy.connected_clients
    out[b"cluster_connections"] = b"0"
    out[b"maxclients"] = b"%d" % proxy.maxclients
    if b"tracking_clients" in out:
        out[b"tracking_clients"] = b"%d" % proxy.tracking_clients
    return out


def _replication(present: list[Fields], proxy: ProxyInfo) -> Fields:
    """A primary with no replicas of its own, as a standalone server without replicas says."""
    out = {k: v for k, v in present[0].items() if not k.startswith(b"slave")}
    out[b"role"] = b"master"
    out[b"connected_slaves"] = b"0"
    return out


def _cluster(present: list[Fields], proxy: ProxyInfo) -> Fields:
    return {**present[0], b"cluster_enabled": b"0"}


def _summed(present: list[Fields], proxy: ProxyInfo) -> Fields:
    out: Fields = {}
    for fields in present:
        for key in fields:
            out.setdefault(key, b"")
    for key in out:
        values = [fields[key] for fields in present if key in fields]
        out[key] = values[0] if key in _NOT_SUMMED else _sum_values(key, values)
    for key in out:
        if key.endswith(b"_human"):
            base = key[: -len(b"_human")]
            if base in out and base not in _NOT_SUMMED and out[base].isdigit():
                out[key] = bytes_to_human(int(out[base]))
    return out


def _sum_values(key: bytes, values: list[bytes]) -> bytes:
    if key.endswith((b"_ratio", b"_perc", b"_human")):
        return values[0]
    if all(_is_int(v) for v in values):
        return b"%d" % sum(int(v) for v in values)
    if all(_is_float(v) for v in values):
        decimals = len(values[0].partition(b".")[2])
        return b"%.*f" % (decimals, sum(float(v) for v in values))
    if all(b"=" in v for v in values):
        return _sum_subfields(values)
    return values[0]


def _sum_subfields(values: list[bytes]) -> bytes:
    """`calls=1,usec=2,usec_per_call=2.00` and `keys=1,expires=0,avg_ttl=0` lines."""
    parts = [dict(item.partition(b"=")[::2] for item in value.split(b",")) for value in values]
    keys = list(dict.fromkeys(k for part in parts for k in part))
    out: Fields = {}
    for key in keys:
        out[key] = _sum_values(key, [part[key] for part in parts if key in part])
    if b"usec_per_call" in out and _is_int(out.get(b"calls", b"")) and _is_int(out[b"usec"]):
        calls = int(out[b"calls"])
        out[b"usec_per_call"] = b"%.2f" % (int(out[b"usec"]) / calls if calls else 0.0)
    if b"avg_ttl" in out:
        out[b"avg_ttl"] = b"%d" % _weighted_ttl(parts)
    return b",".join(k + b"=" + v for k, v in out.items())


def _weighted_ttl(parts: list[Fields]) -> int:
    """keyspace avg_ttl: the nodes' averages weighted by how many keys have a TTL."""
    total = weight = 0
    for part in parts:
        expires, ttl = part.get(b"expires", b"0"), part.get(b"avg_ttl", b"0")
        if _is_int(expires) and _is_int(ttl):
            total += int(expires) * int(ttl)
            weight += int(expires)
    return total // weight if weight else 0


def _is_int(value: bytes) -> bool:
    return value.lstrip(b"-").isdigit()


def _is_float(value: bytes) -> bool:
    whole, dot, fraction = value.lstrip(b"-").partition(b".")
    return bool(dot) and whole.isdigit() and fraction.isdigit()


def bytes_to_human(n: int) -> bytes:
    """server.c bytesToHuman."""
    if n < 1024:
        return b"%dB" % n
    for power, unit in enumerate(_HUMAN_UNITS, 1):
        if n < 1024 ** (power + 1) or power == len(_HUMAN_UNITS):
            return b"%.2f%b" % (n / 1024**power, unit)
    raise AssertionError("unreachable")


def _proxy_fields(proxy: ProxyInfo) -> Fields:
    return {
        b"slotless_version": proxy.version.encode(),
        b"mode": proxy.mode.encode(),
        b"hot_path": proxy.hot_path.encode(),
        b"upstream_nodes": b"%d" % proxy.nodes,
        b"upstream_primaries": b"%d" % proxy.primaries,
        b"upstream_replicas": b"%d" % proxy.replicas,
        b"slots_covered": b"%d" % proxy.slots_covered,
        b"slot_map_refreshes": b"%d" % proxy.slot_map_refreshes,
        b"redirects_absorbed": b"%d" % proxy.redirects_absorbed,
        b"upstream_errors": b"%d" % proxy.upstream_errors,
        b"total_connections_received": b"%d" % proxy.total_connections_received,
        b"rejected_connections": b"%d" % proxy.rejected_connections,
        b"total_commands_processed": b"%d" % proxy.total_commands_processed,
        b"command_errors": b"%d" % proxy.command_errors,
        b"proxy_errors": b"%d" % proxy.proxy_errors,
        b"redirects_moved": b"%d" % proxy.redirects_moved,
        b"redirects_ask": b"%d" % proxy.redirects_ask,
        b"retries_tryagain": b"%d" % proxy.retries_tryagain,
        b"retries_clusterdown": b"%d" % proxy.retries_clusterdown,
        b"total_net_input_bytes": b"%d" % proxy.total_net_input_bytes,
        b"total_net_output_bytes": b"%d" % proxy.total_net_output_bytes,
        b"pending_replies": b"%d" % proxy.pending_replies,
        b"paused_clients": b"%d" % proxy.paused_clients,
        b"upstream_connections": b"%d" % proxy.upstream_connections,
        b"upstream_requests": b"%d" % proxy.upstream_requests,
        b"upstream_reconnects": b"%d" % proxy.upstream_reconnects,
    }


_SECTION_MERGES: Final[dict[bytes, Callable[[list[Fields], ProxyInfo], Fields]]] = {
    b"server": _server,
    b"clients": _clients,
    b"replication": _replication,
    b"cluster": _cluster,
    **{name: _summed for name in _SUMMED - {b"clients"}},
}
