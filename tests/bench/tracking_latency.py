"""How soon a CLIENT TRACKING invalidation reaches the client through slotless (issue 17).

    .venv/bin/python -m tests.bench.tracking_latency [--rounds 1000]

Starts a 3-primary cluster, slotless in front (in this process, on a thread) and a
standalone redis-server. A RESP3 client reads a key (tracked), a second client SETs it;
reported: the SET round trip, in how many rounds the push was already waiting when the
writer had its acknowledgement, and how long the client then waited for it.
"""

from __future__ import annotations

import argparse
import select
import statistics
import time

from proxy.localcluster import LocalCluster, start_standalone
from tests.integration.proxy_thread import ProxyThread, proxy_config
from tests.integration.test_cluster_pubsub import Raw
from tests.integration.test_cluster_tracking import keys_on_every_primary


def measure(port: int, keys: list[str], rounds: int) -> str:
    a, w = Raw(port), Raw(port)
    a.call(b"HELLO", b"3")
    assert a.call(b"CLIENT", b"TRACKING", b"on") == b"+OK\r\n"
    waits, trips, waiting = [], [], 0
    for i in range(rounds):
        key = keys[i % len(keys)].encode()
        a.call(b"GET", key)
        start = time.perf_counter()
        w.call(b"SET", key, b"%d" % i)
        acked = time.perf_counter()
        trips.append(acked - start)
        waiting += bool(a.buf) or bool(select.select([a.sock], [], [], 0)[0])
        assert a.frame().startswith(b">2\r\n$10\r\ninvalidate")
        waits.append(time.perf_counter() - acked)
    a.close()
    w.close()
    trip, wait = statistics.quantiles(trips, n=100), statistics.quantiles(waits, n=100)
    return (
        f"SET round trip p50 {trip[49] * 1e6:.0f} us; push already there at the ack in "
        f"{waiting}/{rounds} rounds; wait after the ack p50 {wait[49] * 1e6:.0f} us, "
        f"p99 {wait[98] * 1e6:.0f} us, max {max(waits) * 1e6:.0f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1000)
    rounds = parser.parse_args().rounds
    with LocalCluster(primaries=3, replicas=0) as cluster:
        keys = keys_on_every_primary(cluster, "latency-", 30)
        standalone = start_standalone()
        try:
            with ProxyThread(proxy_config("cluster", cluster.seeds[:1])) as proxy:
                print("slotless + cluster:", measure(proxy.port, keys, rounds))
            print("standalone redis:  ", measure(standalone.port, keys, rounds))
        finally:
            standalone.close()


if __name__ == "__main__":
    main()
