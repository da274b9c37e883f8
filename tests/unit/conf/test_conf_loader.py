"""conf.loader: every mistake is one ConfigError line naming the file and the key path."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from conf import (
    Address,
    Config,
    ConfigError,
    LimitsConfig,
    LogConfig,
    UpstreamConfig,
    load_config,
    parse_config,
)
from conf.loader import auto_workers

SOURCE = "slotless.yaml"
NODE = "upstream: {nodes: ['127.0.0.1:7000']}"

BRIEF_EXAMPLE = """\
listen: "127.0.0.1:6380"
upstream:
  mode: cluster          # cluster | standalone
  nodes: ["127.0.0.1:7000", "127.0.0.1:7001"]   # cluster: seeds; standalone: exactly one
  username: null         # optional upstream AUTH (ACL user)
  password: null         # optional
  connect_timeout: 1s
  command_timeout: 5s
  refresh_interval: 30s  # cluster: periodic slot-map refresh
log:
  level: info
  format: console        # console | json
"""


def parse(text: str, environ: dict[str, str] | None = None) -> Config:
    return parse_config(yaml.safe_load(text), source=SOURCE, environ=environ or {})


def upstream(extra: str, nodes: str = "['127.0.0.1:7000']") -> str:
    return f"upstream: {{nodes: {nodes}, {extra}}}"


# (YAML text, the exact ConfigError line)
ERROR_CASES: list[tuple[str, str]] = [
    # shape of the document
    ("- a\n- b", "expected a mapping at the top level, got a list"),
    ("just a string", 'expected a mapping at the top level, got "just a string"'),
    ("", "expected a mapping at the top level, got an empty document"),
    (f"{NODE}\nupstream_: 1", 'upstream_: unknown key (did you mean "upstream"?)'),
    (f"{NODE}\nlisen: '127.0.0.1:1'", 'lisen: unknown key (did you mean "listen"?)'),
    (
        f"{NODE}\nsource: x.yaml",
        "source: unknown key (valid keys: listen, tls, upstream, limits, log, auth, workers, "
        "deny_commands, shutdown_timeout, admin, slowlog_threshold_ms)",
    ),
    ("nodes: ['a:1']", 'nodes: unknown key (did you mean "upstream.nodes"?)'),
    (upstream("pasword: x"), 'upstream.pasword: unknown key (did you mean "upstream.password"?)'),
    (upstream("level: info"), 'upstream.level: unknown key (did you mean "log.level"?)'),
    (upstream("listen: 'a:1'"), 'upstream.listen: unknown key (did you mean "listen"?)'),
    (f"{NODE}\nlog: {{colour: true}}", "log.colour: unknown key (valid keys: level, format)"),
    ("upstream: ['a:1']", "upstream: expected a mapping, got a list"),
    (f"{NODE}\nlimits: 5", "limits: expected a mapping, got 5"),
    (f"{NODE}\nlog: [json]", "log: expected a mapping, got a list"),
    ("upstream: {1: x}", "upstream: keys must be strings, got 1"),
    # addresses
    (
        upstream("", nodes="['127.0.0.1:7000', 'nonsense']"),
        'upstream.nodes[1]: expected "host:port", got "nonsense"',
    ),
    (upstream("", nodes="['a:0']"), 'upstream.nodes[0]: port must be 1-65535, got "a:0"'),
    (upstream("", nodes="['a:65536']"), 'upstream.nodes[0]: port must be 1-65535, got "a:65536"'),
    (upstream("", nodes="['a:']"), 'upstream.nodes[0]: expected "host:port", got "a:"'),
    (upstream("", nodes="[':6379']"), 'upstream.nodes[0]: expected "host:port", got ":6379"'),
    (upstream("", nodes="['a:b']"), 'upstream.nodes[0]: expected "host:port", got "a:b"'),
    (upstream("", nodes="['a b:1']"), 'upstream.nodes[0]: expected "host:port", got "a b:1"'),
    (upstream("", nodes="[7000]"), 'upstream.nodes[0]: expected "host:port", got 7000'),
    (
        upstream("", nodes="['::1:6379']"),
        'upstream.nodes[0]: expected "host:port" (IPv6 in brackets, as "[::1]:6379"), '
        'got "::1:6379"',
    ),
    (
        upstream("", nodes="['[nothex]:6379']"),
        'upstream.nodes[0]: expected "host:port", got "[nothex]:6379"',
    ),
    (
        upstream("", nodes="['a:1', 'b:2', 'a:1']"),
        'upstream.nodes[2]: "a:1" is listed twice (also upstream.nodes[0])',
    ),
    (f"{NODE}\nlisten: 6380", 'listen: expected "host:port", got 6380'),
    (f"{NODE}\nlisten: localhost", 'listen: expected "host:port", got "localhost"'),
    # nodes and mode
    ("upstream: {mode: cluster}", 'upstream.nodes: at least one "host:port" node is required'),
    ("{}", 'upstream.nodes: at least one "host:port" node is required'),
    ("listen: 'a:1'", 'upstream.nodes: at least one "host:port" node is required'),
    ("upstream: {nodes: []}", 'upstream.nodes: at least one "host:port" node is required'),
    ("upstream: {nodes: 'a:1'}", 'upstream.nodes: expected a list of "host:port", got "a:1"'),
    (
        "upstream: {mode: standalone, nodes: ['a:1', 'b:2']}",
        "upstream.nodes: standalone mode takes exactly one node, got 2",
    ),
    (
        upstream("mode: replicated"),
        'upstream.mode: expected one of "cluster", "standalone", "sentinel", got "replicated"',
    ),
    (
        upstream("mode: null"),
        'upstream.mode: expected one of "cluster", "standalone", "sentinel", got null',
    ),
    # durations
    (upstream("connect_timeout: 0"), "upstream.connect_timeout: must be greater than zero, got 0"),
    (
        upstream("command_timeout: -1"),
        "upstream.command_timeout: must be greater than zero, got -1",
    ),
    (
        upstream("refresh_interval: 0s"),
        'upstream.refresh_interval: must be greater than zero, got "0s"',
    ),
    (
        upstream("connect_timeout: -1s"),
        'upstream.connect_timeout: expected a duration such as "1s", "500ms" or 2.5, got "-1s"',
    ),
    (
        upstream("connect_timeout: 1d"),
        'upstream.connect_timeout: expected a duration such as "1s", "500ms" or 2.5, got "1d"',
    ),
    (
        upstream("connect_timeout: [1]"),
        'upstream.connect_timeout: expected a duration such as "1s", "500ms" or 2.5, got a list',
    ),
    (
        upstream("connect_timeout: true"),
        'upstream.connect_timeout: expected a duration such as "1s", "500ms" or 2.5, got true',
    ),
    (
        upstream("connect_timeout: .inf"),
        'upstream.connect_timeout: expected a duration such as "1s", "500ms" or 2.5, got inf',
    ),
    (upstream("retry_timeout: -1"), "upstream.retry_timeout: must be zero or more, got -1"),
    # counts and sizes
    (upstream("max_redirects: -1"), "upstream.max_redirects: must be at least 0, got -1"),
    (
        upstream("connections_per_node: 0"),
        "upstream.connections_per_node: must be at least 1, got 0",
    ),
    (
        upstream("connections_per_node: '2'"),
        'upstream.connections_per_node: expected an integer, got "2"',
    ),
    (f"{NODE}\nlimits: {{max_clients: 1.5}}", "limits.max_clients: expected an integer, got 1.5"),
    (f"{NODE}\nlimits: {{max_clients: yes}}", "limits.max_clients: expected an integer, got true"),
    (
        f"{NODE}\nlimits: {{proto_max_bulk_len: 12zb}}",
        'limits.proto_max_bulk_len: expected a size such as "512mb", "64kb" or bytes, got "12zb"',
    ),
    (
        f"{NODE}\nlimits: {{max_inline_len: 0kb}}",
        'limits.max_inline_len: must be at least 1 byte, got "0kb"',
    ),
    (
        f"{NODE}\nlimits: {{max_multibulk_len: 0}}",
        "limits.max_multibulk_len: must be at least 1, got 0",
    ),
    (f"{NODE}\nworkers: 0", 'workers: expected "auto" or an integer of at least 1, got 0'),
    (f"{NODE}\nworkers: many", 'workers: expected "auto" or an integer of at least 1, got "many"'),
    # log
    (
        f"{NODE}\nlog: {{level: trace}}",
        'log.level: expected one of "debug", "info", "warning", "error", got "trace"',
    ),
    (f"{NODE}\nlog: {{format: xml}}", 'log.format: expected one of "console", "json", got "xml"'),
    # secrets
    (
        upstream("password: 1234"),
        "upstream.password: expected a string or null, got 1234 (quote it in YAML)",
    ),
    (upstream("username: [a]"), "upstream.username: expected a string or null, got a list"),
    (
        upstream("username: app"),
        "upstream.username: a username needs a password (or password_env)",
    ),
    (
        upstream("password: x, password_env: REDIS_PASSWORD"),
        "upstream.password_env: set either password or password_env, not both",
    ),
    (
        upstream("username: u, username_env: REDIS_USER, password: p"),
        "upstream.username_env: set either username or username_env, not both",
    ),
    (
        upstream("password_env: MISSING_PASSWORD"),
        'upstream.password_env: environment variable "MISSING_PASSWORD" is not set',
    ),
    (
        upstream("password_env: EMPTY"),
        'upstream.password_env: environment variable "EMPTY" is empty',
    ),
    (
        upstream("password_env: ''"),
        'upstream.password_env: expected the name of an environment variable, got ""',
    ),
    # deny_commands
    (
        f"{NODE}\ndeny_commands: flushall",
        'deny_commands: expected a list of command names such as "flushall", got "flushall"',
    ),
    (
        f"{NODE}\ndeny_commands: [flushall, 'config set']",
        'deny_commands[1]: expected a command name such as "flushall" or a subcommand such as'
        ' "config|set", got "config set"',
    ),
    (
        f"{NODE}\ndeny_commands: [a|b|c]",
        'deny_commands[0]: expected a command name such as "flushall" or a subcommand such as'
        ' "config|set", got "a|b|c"',
    ),
    (
        f"{NODE}\ndeny_commands: [7]",
        'deny_commands[0]: expected a command name such as "flushall" or a subcommand such as'
        ' "config|set", got 7',
    ),
    (
        f"{NODE}\ndeny_commands: [keys, KEYS]",
        'deny_commands[1]: "keys" is listed twice (also deny_commands[0])',
    ),
    # sentinel mode (issue 15)
    (
        "upstream: {mode: sentinel}",
        'upstream.sentinels: sentinel mode needs at least one "host:port" sentinel',
    ),
    (
        upstream("mode: sentinel, sentinels: ['127.0.0.1:26379']"),
        "upstream.nodes: sentinel mode finds the primary through upstream.sentinels: "
        "leave nodes out",
    ),
    (
        upstream("sentinels: ['127.0.0.1:26379']"),
        'upstream.sentinels: only sentinel mode takes sentinels (upstream.mode is "cluster")',
    ),
    (
        "upstream: {mode: sentinel, sentinels: ['h:1'], master_name: ''}",
        "upstream.master_name: expected the name the sentinels monitor",
    ),
    (
        "upstream: {mode: sentinel, sentinels: ['h:1', 'h:1']}",
        'upstream.sentinels[1]: "h:1" is listed twice (also upstream.sentinels[0])',
    ),
    (
        "upstream: {mode: sentinel, sentinels: ['h:1'], sentinel_username: u}",
        "upstream.sentinel_username: a username needs a password (or sentinel_password_env)",
    ),
    (
        "upstream: {mode: sentinel, sentinels: ['h:1'], switch_timeout: 0}",
        "upstream.switch_timeout: must be greater than zero, got 0",
    ),
]


def test_sentinel_mode() -> None:
    config = parse(
        "upstream: {mode: sentinel, sentinels: ['127.0.0.1:26379', '127.0.0.1:26380'],"
        " master_name: cache, sentinel_password_env: SP, password: data}",
        environ={"SP": "secret"},
    )
    up = config.upstream
    assert up.mode == "sentinel" and up.nodes == () and up.single_node
    assert [str(a) for a in up.sentinels] == ["127.0.0.1:26379", "127.0.0.1:26380"]
    assert up.master_name == "cache"
    assert (up.sentinel_password, up.password) == ("secret", "data")
    assert "secret" not in repr(config)


@pytest.mark.parametrize(("text", "message"), ERROR_CASES)
def test_error_names_file_and_key_path(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, environ={"EMPTY": "", "REDIS_USER": "u", "REDIS_PASSWORD": "p"})
    assert str(info.value) == f"{SOURCE}: {message}"
    assert "\n" not in str(info.value)


def test_error_attributes() -> None:
    with pytest.raises(ConfigError) as info:
        parse(upstream("", nodes="['a:1', 'nonsense']"))
    assert info.value.source == SOURCE
    assert info.value.key == "upstream.nodes[1]"
    assert info.value.problem == 'expected "host:port", got "nonsense"'


def test_brief_example_loads() -> None:
    config = parse(BRIEF_EXAMPLE)
    assert config.listen == Address("127.0.0.1", 6380)
    assert config.upstream == UpstreamConfig(
        mode="cluster", nodes=(Address("127.0.0.1", 7000), Address("127.0.0.1", 7001))
    )
    assert config.log == LogConfig(level="info", format="console")
    assert config.source is None


def test_defaults_come_from_schema() -> None:
    config = parse(NODE)
    assert config == Config(upstream=UpstreamConfig(nodes=(Address("127.0.0.1", 7000),)))
    assert config.limits == LimitsConfig()
    assert config.log == LogConfig()
    assert config.workers == 1


def test_schema_defaults() -> None:
    up = UpstreamConfig()
    assert (up.mode, up.nodes, up.username, up.password) == ("cluster", (), None, None)
    assert (up.connect_timeout, up.command_timeout, up.refresh_interval) == (1.0, 5.0, 30.0)
    assert (up.max_redirects, up.retry_timeout, up.connections_per_node) == (5, 2.0, 1)
    limits = LimitsConfig()
    assert limits.proto_max_bulk_len == 512 * 1024 * 1024
    assert limits.max_multibulk_len == 2**31 - 1
    assert limits.max_inline_len == 64 * 1024
    assert limits.max_clients == 10000
    assert Config().listen == Address("127.0.0.1", 6380)
    assert Config().source is None


def test_deny_commands() -> None:
    assert "shutdown" in Config().deny_commands and "cluster|meet" in Config().deny_commands
    assert parse(f"{NODE}\ndeny_commands: [FlushAll, ' Config|Set ', json.set]").deny_commands == (
        "flushall",
        "config|set",
        "json.set",
    )
    assert parse(f"{NODE}\ndeny_commands: []").deny_commands == ()


@pytest.mark.parametrize("section", ["limits:", "log:", "limits: {}", "log: {}"])
def test_empty_sections_are_fine(section: str) -> None:
    config = parse(f"{NODE}\n{section}")
    assert config.limits == LimitsConfig()
    assert config.log == LogConfig()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        (" 10 S ", 10.0),
        ("'250'", 250.0),
        ("3", 3.0),
        ("2.5", 2.5),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse(upstream(f"command_timeout: {text}")).upstream.command_timeout == seconds


def test_retry_timeout_zero_disables_retries() -> None:
    assert parse(upstream("retry_timeout: 0")).upstream.retry_timeout == 0.0


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512mb", 512 * 1024**2),
        ("64kb", 64 * 1024),
        ("1gb", 1024**3),
        ("10MB", 10 * 1024**2),
        ("1k", 1000),
        ("2m", 2_000_000),
        ("100b", 100),
        ("1048576", 1048576),
    ],
)
def test_sizes(text: str, size: int) -> None:
    limits = parse(f"{NODE}\nlimits: {{proto_max_bulk_len: {text}, max_inline_len: {text}}}")
    assert limits.limits.proto_max_bulk_len == size
    assert limits.limits.max_inline_len == size


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("cluster", "cluster"),
        ("CLUSTER", "cluster"),
        ("Cluster", "cluster"),
        ("standalone", "standalone"),
        ("STANDALONE", "standalone"),
    ],
)
def test_mode_is_case_insensitive(text: str, mode: str) -> None:
    assert parse(upstream(f"mode: {text}")).upstream.mode == mode


@pytest.mark.parametrize(
    ("text", "level"), [("DEBUG", "debug"), ("warn", "warning"), ("Error", "error")]
)
def test_log_level_words(text: str, level: str) -> None:
    log = parse(f"{NODE}\nlog: {{level: {text}, format: JSON}}").log
    assert (log.level, log.format) == (level, "json")


@pytest.mark.parametrize(
    ("text", "address", "shown"),
    [
        ("127.0.0.1:6379", Address("127.0.0.1", 6379), "127.0.0.1:6379"),
        ("redis-0.redis.svc:6379", Address("redis-0.redis.svc", 6379), "redis-0.redis.svc:6379"),
        ("localhost:1", Address("localhost", 1), "localhost:1"),
        ("[::1]:6379", Address("::1", 6379), "[::1]:6379"),
        ("[2001:db8::7]:65535", Address("2001:db8::7", 65535), "[2001:db8::7]:65535"),
    ],
)
def test_addresses(text: str, address: Address, shown: str) -> None:
    config = parse(f"listen: '{text}'\nupstream: {{nodes: ['{text}']}}")
    assert config.listen == address
    assert config.upstream.nodes == (address,)
    assert str(address) == shown


def test_password_and_username_from_env() -> None:
    environ = {"REDIS_USER": "app", "REDIS_PASSWORD": "s3cret"}
    config = parse(upstream("username_env: REDIS_USER, password_env: REDIS_PASSWORD"), environ)
    assert (config.upstream.username, config.upstream.password) == ("app", "s3cret")


def test_password_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTLESS_TEST_PASSWORD", "from-os")
    data = yaml.safe_load(upstream("password_env: SLOTLESS_TEST_PASSWORD"))
    assert parse_config(data).upstream.password == "from-os"


def test_inline_password_is_kept_out_of_repr() -> None:
    config = parse(upstream("password: hunter2"))
    assert config.upstream.password == "hunter2"
    assert "hunter2" not in repr(config)


def test_workers_auto() -> None:
    assert parse(f"{NODE}\nworkers: auto").workers == auto_workers(len(os.sched_getaffinity(0)))
    assert parse(f"{NODE}\nworkers: 4").workers == 4


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_auto_is_one_worker_per_two_cpus(cpus: int, workers: int) -> None:
    assert auto_workers(cpus) == workers


def test_config_is_frozen() -> None:
    config = parse(NODE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.workers = 2  # type: ignore[misc]  # the point of the test


def test_parse_config_default_source() -> None:
    with pytest.raises(ConfigError, match=r"^<config>: upstream\.nodes: "):
        parse_config({})


# -- load_config: files ---------------------------------------------------------------------


def test_load_config_sets_source(tmp_path: Path) -> None:
    path = tmp_path / "slotless.yaml"
    path.write_text(BRIEF_EXAMPLE)
    assert load_config(str(path)).source == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("listen: [", "invalid YAML at line 1, column 10: expected the node content"),
        ("a: b\n  c: d", "invalid YAML at line 2, column 4: mapping values are not allowed here"),
        ("- x", "expected a mapping at the top level, got a list"),
        ("", "expected a mapping at the top level, got an empty document"),
    ],
)
def test_load_config_file_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "slotless.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value).startswith(f"{path}: {message}")
    assert "\n" not in str(info.value)


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: cannot read config file: No such file or directory"


def test_load_config_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file: Is a directory"):
        load_config(str(tmp_path))


def test_load_config_errors_name_the_given_path(tmp_path: Path) -> None:
    path = tmp_path / "slotless.yaml"
    path.write_text("upstream:\n  nodes: ['127.0.0.1:7000', nonsense]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f'{path}: upstream.nodes[1]: expected "host:port", got "nonsense"'


def test_resilience_keys() -> None:
    config = parse(
        upstream(
            "tcp_keepalive: 3s, tcp_user_timeout: 0, read_from: prefer_replica, "
            "address_map: {'10.0.0.1:6379': '127.0.0.1:7000', 'node-a:6379': 'x.y:1'}"
        )
        + "\nlimits: {client_idle_timeout: 5m}\nshutdown_timeout: 30s"
    )
    assert config.upstream.tcp_keepalive == 3.0
    assert config.upstream.tcp_user_timeout == 0.0
    assert config.upstream.read_from == "prefer-replica"
    assert config.upstream.address_map == (
        ("10.0.0.1:6379", "127.0.0.1:7000"),
        ("node-a:6379", "x.y:1"),
    )
    assert config.limits.client_idle_timeout == 300.0
    assert config.shutdown_timeout == 30.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("address_map: [a]", 'upstream.address_map: expected a mapping of "host:port"'),
        ("address_map: {'a:1': 'nope'}", 'upstream.address_map["a:1"]: expected "host:port"'),
        ("tcp_keepalive: -1", "upstream.tcp_keepalive: must be zero or more"),
    ],
)
def test_resilience_key_errors(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(upstream(extra))
    assert str(info.value).startswith(f"{SOURCE}: {message}")


def test_tuning_key_defaults() -> None:
    up = UpstreamConfig()
    assert (up.max_idle_dedicated, up.min_refresh_gap) == (32, 0.2)
    assert (up.reconnect_backoff, up.reconnect_backoff_max, up.resubscribe_backoff_max) == (
        0.05,
        1.0,
        2.0,
    )
    limits = LimitsConfig()
    assert (limits.max_blocked_clients, limits.max_pubsub_backlog) == (1024, 100_000)
    assert limits.script_cache_size == 32 * 1024 * 1024
    assert limits.max_pending_replies == 1024
    assert limits.tracking_table_max_keys == 1_000_000  # as Redis's tracking-table-max-keys


def test_tuning_keys() -> None:
    config = parse(
        upstream(
            "max_idle_dedicated: 0, min_refresh_gap: 0, reconnect_backoff: 10ms, "
            "reconnect_backoff_max: 10ms, resubscribe_backoff_max: 5s"
        )
        + "\nlimits: {max_blocked_clients: 8, max_pubsub_backlog: 500, script_cache_size: 1mb,"
        " max_pending_replies: 64, tracking_table_max_keys: 0}"
    )
    up = config.upstream
    assert (up.max_idle_dedicated, up.min_refresh_gap) == (0, 0.0)
    assert (up.reconnect_backoff, up.reconnect_backoff_max, up.resubscribe_backoff_max) == (
        0.01,
        0.01,
        5.0,
    )
    limits = config.limits
    assert (limits.max_blocked_clients, limits.max_pubsub_backlog) == (8, 500)
    assert limits.script_cache_size == 1024 * 1024
    assert limits.max_pending_replies == 64
    assert limits.tracking_table_max_keys == 0  # no bound


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (upstream("max_idle_dedicated: -1"), "upstream.max_idle_dedicated: must be at least 0"),
        (upstream("min_refresh_gap: soon"), "upstream.min_refresh_gap: expected a duration"),
        (upstream("reconnect_backoff: 0"), "upstream.reconnect_backoff: must be greater than zero"),
        (
            upstream("reconnect_backoff: 2s"),
            "upstream.reconnect_backoff_max: must be at least upstream.reconnect_backoff (2s),"
            " got 1s",
        ),
        (
            upstream("reconnect_backoff: 100ms, resubscribe_backoff_max: 50ms"),
            "upstream.resubscribe_backoff_max: must be at least upstream.reconnect_backoff"
            " (0.1s), got 0.05s",
        ),
        (f"{NODE}\nlimits: {{max_blocked_clients: 0}}", "limits.max_blocked_clients: must be at"),
        (f"{NODE}\nlimits: {{max_pubsub_backlog: many}}", "limits.max_pubsub_backlog: expected an"),
        (f"{NODE}\nlimits: {{script_cache_size: 0}}", "limits.script_cache_size: must be at least"),
        (
            f"{NODE}\nlimits: {{tracking_table_max_keys: -1}}",
            "limits.tracking_table_max_keys: must be at least 0",
        ),
    ],
)
def test_tuning_key_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert str(info.value).startswith(f"{SOURCE}: {message}")
