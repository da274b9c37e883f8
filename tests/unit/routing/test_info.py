"""INFO merged from several primaries into one standalone-looking report."""

from routing.info import ProxyInfo, bytes_to_human, info_text, merge_info, parse_info
from routing.resp import encode_bulk

PROXY = ProxyInfo(
    version="0.1.0",
    mode="cluster",
    tcp_port=6380,
    process_id=42,
    uptime_in_seconds=90000,
    connected_clients=7,
    maxclients=10000,
    nodes=6,
    primaries=3,
    replicas=3,
    slots_covered=16384,
    slot_map_refreshes=4,
    redirects_absorbed=2,
    upstream_errors=1,
    hot_path="compiled",
)


def node_info(port: int, keys: int, expires: int, ttl: int, memory: int, calls: int) -> bytes:
    sections = [
        b"# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\nprocess_id:%d\r\n"
        b"tcp_port:%d\r\nuptime_in_seconds:5\r\nuptime_in_days:0\r\n" % (port, port),
        b"# Clients\r\nconnected_clients:3\r\ncluster_connections:4\r\nmaxclients:10000\r\n"
        b"blocked_clients:1\r\n",
        b"# Memory\r\nused_memory:%d\r\nused_memory_human:x\r\nmem_fragmentation_ratio:1.%d\r\n"
        b"maxmemory_policy:noeviction\r\ntotal_system_memory:1000\r\n" % (memory, port % 10),
        b"# Stats\r\ntotal_commands_processed:%d\r\ninstantaneous_input_kbps:0.25\r\n" % calls,
        b"# Replication\r\nrole:master\r\nconnected_slaves:1\r\n"
        b"slave0:ip=127.0.0.1,port=1,state=online,offset=1,lag=0\r\nmaster_repl_offset:9\r\n",
        b"# CPU\r\nused_cpu_sys:0.500000\r\n",
        b"# Commandstats\r\ncmdstat_get:calls=%d,usec=%d,usec_per_call=1.00,rejected_calls=0,"
        b"failed_calls=0\r\n" % (calls, calls * 3),
        b"# Cluster\r\ncluster_enabled:1\r\n",
        b"# Keyspace\r\n" + (b"db0:keys=%d,expires=%d,avg_ttl=%d\r\n" % (keys, expires, ttl)),
    ]
    return encode_bulk(b"\r\n".join(sections))


def merged(raws: list[bytes], *args: bytes) -> dict[bytes, dict[bytes, bytes]]:
    raw = merge_info(raws, [b"INFO", *args], PROXY)
    text = info_text(raw)
    assert text is not None
    return parse_info(text)[1]


def test_one_standalone_report() -> None:
    raws = [
        node_info(7000, keys=10, expires=2, ttl=1000, memory=2048, calls=5),
        node_info(7001, keys=30, expires=6, ttl=2000, memory=1024 * 1024, calls=7),
    ]
    info = merged(raws)
    server = info[b"server"]
    assert server[b"redis_version"] == b"7.0.15"
    assert server[b"slotless_version"] == b"0.1.0"
    assert server[b"redis_mode"] == b"standalone"
    assert (server[b"tcp_port"], server[b"process_id"]) == (b"6380", b"42")
    assert (server[b"uptime_in_seconds"], server[b"uptime_in_days"]) == (b"90000", b"1")
    clients = info[b"clients"]
    assert clients[b"connected_clients"] == b"7"
    assert clients[b"cluster_connections"] == b"0"
    assert clients[b"blocked_clients"] == b"2"
    memory = info[b"memory"]
    assert memory[b"used_memory"] == b"%d" % (2048 + 1024 * 1024)
    assert memory[b"used_memory_human"] == b"1.00M"
    assert memory[b"mem_fragmentation_ratio"] == b"1.0"  # the first node's: not summed
    assert memory[b"total_system_memory"] == b"1000"
    assert memory[b"maxmemory_policy"] == b"noeviction"
    assert info[b"stats"][b"total_commands_processed"] == b"12"
    assert info[b"stats"][b"instantaneous_input_kbps"] == b"0.50"
    assert info[b"cpu"][b"used_cpu_sys"] == b"1.000000"
    assert info[b"commandstats"][b"cmdstat_get"] == (
        b"calls=12,usec=36,usec_per_call=3.00,rejected_calls=0,failed_calls=0"
    )
    assert info[b"replication"] == {
        b"role": b"master",
        b"connected_slaves": b"0",
        b"master_repl_offset": b"9",
    }
    assert info[b"cluster"] == {b"cluster_enabled": b"0"}
    assert info[b"keyspace"] == {b"db0": b"keys=40,expires=8,avg_ttl=1750"}
    assert info[b"proxy"][b"redirects_absorbed"] == b"2"
    assert info[b"proxy"][b"upstream_primaries"] == b"3"
    assert info[b"proxy"][b"hot_path"] == b"compiled"


def test_sections_and_format() -> None:
    raws = [node_info(7000, 1, 0, 0, 10, 1)]
    text = info_text(merge_info(raws, [b"INFO"], PROXY))
    assert text is not None
    titles = [line for line in text.split(b"\r\n") if line.startswith(b"# ")]
    assert titles[0] == b"# Server" and titles[-1] == b"# Proxy"
    assert b"\r\n\r\n# Clients\r\n" in text and text.endswith(b"\r\n")
    # asked for one section: no Proxy section; asked for proxy: nothing but
    assert b"proxy" not in merged([encode_bulk(b"# Keyspace\r\n")], b"keyspace")
    assert b"proxy" in merged([encode_bulk(b"# Keyspace\r\n")], b"keyspace", b"default")
    assert set(merged([encode_bulk(b"")], b"PROXY")) == {b"proxy"}


def test_resp3_verbatim_and_errors() -> None:
    text = b"# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"
    verbatim = b"=%d\r\ntxt:%b\r\n" % (len(text) + 4, text)
    raw = merge_info([verbatim, verbatim], [b"INFO", b"keyspace"], PROXY)
    assert raw.startswith(b"=") and b"txt:# Keyspace\r\ndb0:keys=2," in raw
    err = b"-ERR upstream 1.2.3.4:5 connection lost\r\n"
    assert merge_info([err, err], [b"INFO"], PROXY) == err
    partial = merge_info([err, verbatim], [b"INFO", b"keyspace"], PROXY)
    assert b"db0:keys=1," in partial


def test_bytes_to_human_as_redis() -> None:
    assert bytes_to_human(0) == b"0B"
    assert bytes_to_human(1023) == b"1023B"
    assert bytes_to_human(1024) == b"1.00K"
    assert bytes_to_human(1536 * 1024) == b"1.50M"
    assert bytes_to_human(3 * 1024**3) == b"3.00G"
