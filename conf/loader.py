"""Turn a YAML file (or already-parsed data) into a validated `Config`.

This module only parses and validates: every default comes from `conf/schema.py`,
so a key that is absent here is simply not passed to the dataclass. Every mistake
becomes one `ConfigError` whose text is a single line naming the file and the key
path in YAML syntax ("upstream.nodes[1]"). It is the only place that reads the
environment, and only for `*_env` secrets.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Final

import yaml

from conf.schema import (
    Address,
    AuthConfig,
    Config,
    LimitsConfig,
    LogConfig,
    TLSConfig,
    UpstreamConfig,
    UpstreamTLSConfig,
    UserConfig,
)

_Parser = Callable[[object, str], Any]


class ConfigError(Exception):
    """A config mistake; str() is one line: "<file>: <key path>: <what is wrong>"."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        parts = [source, key, problem] if key else [source, problem]
        super().__init__(" ".join(": ".join(parts).split("\n")))


class _KeyPathError(Exception):
    """Raised by the parsers below; parse_config() adds the file name."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate a YAML config file."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(source, "", f"cannot read config file: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, "", f"invalid YAML{where}: {e.problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(source, "", f"invalid YAML: {e}") from None
    return _parse(data, source, environ, path=source)


def parse_config(
    data: object, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate already-parsed YAML data (as from yaml.safe_load) into a Config."""
    return _parse(data, source, environ, path=None)


def _parse(
    data: object, source: str, environ: Mapping[str, str] | None, path: str | None
) -> Config:
    env = os.environ if environ is None else environ
    try:
        return _parse_top(data, env, path)
    except _KeyPathError as e:
        raise ConfigError(source, e.key, e.problem) from None


# -- value descriptions and key paths ---------------------------------------------------


def _describe(value: object) -> str:
    """Show a YAML value in an error message, always on one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return json.dumps(shown, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


# -- scalar parsers: (value, key path) -> parsed value, or raise _KeyPathError ----------------

_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?", re.IGNORECASE)
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Redis's memtoll() units: "k" is 1000 and "kb" is 1024.
_SIZE_RE: Final = re.compile(r"(\d+)\s*(b|k|kb|m|mb|g|gb)?", re.IGNORECASE)
_SIZE_UNITS: Final = {
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}
_HOST_RE: Final = re.compile(r"[A-Za-z0-9_.-]+")


def _is_number(value: object) -> bool:
    # YAML's true/false are ints to Python; a boolean is never a number here.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _duration(allow_zero: bool = False) -> _Parser:
    def parse(value: object, key: str) -> float:
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (m := _DURATION_RE.fullmatch(value.strip())):
            seconds = float(m[1]) * _DURATION_UNITS[(m[2] or "s").lower()]
        if seconds is None or not math.isfinite(seconds):
            raise _KeyPathError(
                key, f'expected a duration such as "1s", "500ms" or 2.5, got {_describe(value)}'
            )
        if seconds < 0 or (seconds == 0 and not allow_zero):
            limit = "zero or more" if allow_zero else "greater than zero"
            raise _KeyPathError(key, f"must be {limit}, got {_describe(value)}")
        return seconds

    return parse


def _count(minimum: int) -> _Parser:
    def parse(value: object, key: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _KeyPathError(key, f"expected an integer, got {_describe(value)}")
        if value < minimum:
            raise _KeyPathError(key, f"must be at least {minimum}, got {value}")
        return value

    return parse


def _size(value: object, key: str) -> int:
    size: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE_RE.fullmatch(value.strip())):
        size = int(m[1]) * _SIZE_UNITS[(m[2] or "b").lower()]
    if size is None:
        raise _KeyPathError(
            key, f'expected a size such as "512mb", "64kb" or bytes, got {_describe(value)}'
        )
    if size < 1:
        raise _KeyPathError(key, f"must be at least 1 byte, got {_describe(value)}")
    return size


def _choice(*options: str, aliases: Mapping[str, str] | None = None) -> _Parser:
    def parse(value: object, key: str) -> str:
        if isinstance(value, str):
            word = value.strip().lower()
            word = (aliases or {}).get(word, word)
            if word in options:
                return word
        shown = ", ".join(f'"{o}"' for o in options)
        raise _KeyPathError(key, f"expected one of {shown}, got {_describe(value)}")

    return parse


def _bool(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise _KeyPathError(key, f"expected true or false, got {_describe(value)}")


def _optional_str(value: object, key: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    hint = " (quote it in YAML)" if _is_number(value) or isinstance(value, bool) else ""
    raise _KeyPathError(key, f"expected a string or null, got {_describe(value)}{hint}")


def _env_name(value: object, key: str) -> str | None:
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    raise _KeyPathError(
        key, f"expected the name of an environment variable, got {_describe(value)}"
    )


def _listen(value: object, key: str) -> Address:
    """Like a node address, but port 0 asks the kernel for a free port (tests, sidecars)."""
    if isinstance(value, str) and value.strip().endswith(":0"):
        return replace(_address(value.strip()[:-1] + "1", key), port=0)
    return _address(value, key)


def _address(value: object, key: str) -> Address:
    text = value.strip() if isinstance(value, str) else ""
    host, sep, port = text.rpartition(":")
    valid_host = bool(_HOST_RE.fullmatch(host))
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid_host = _is_ipv6(host)
    if not (valid_host and sep and port.isascii() and port.isdigit()):
        hint = ' (IPv6 in brackets, as "[::1]:6379")' if text.count(":") > 1 else ""
        raise _KeyPathError(key, f'expected "host:port"{hint}, got {_describe(value)}')
    if not 1 <= int(port) <= 65535:
        raise _KeyPathError(key, f"port must be 1-65535, got {_describe(value)}")
    return Address(host, int(port))


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _nodes(value: object, key: str) -> tuple[Address, ...]:
    if not isinstance(value, list):
        raise _KeyPathError(key, f'expected a list of "host:port", got {_describe(value)}')
    nodes = tuple(_address(item, f"{key}[{i}]") for i, item in enumerate(value))
    for i, node in enumerate(nodes):
        if node in nodes[:i]:
            first = nodes.index(node)
            raise _KeyPathError(f"{key}[{i}]", f'"{node}" is listed twice (also {key}[{first}])')
    return nodes


def _address_map(value: object, key: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise _KeyPathError(
            key, f'expected a mapping of "host:port": "host:port", got {_describe(value)}'
        )
    pairs: list[tuple[str, str]] = []
    for announced, reachable in value.items():
        where = f"{key}[{_describe(announced)}]"
        pairs.append((str(_address(announced, where)), str(_address(reachable, where))))
    return tuple(pairs)


def _raw(value: object, key: str) -> object:
    """Sections are parsed by their own table once the top level is known to be valid."""
    return value


def auto_workers(cpus: int) -> int:
    """What `workers: auto` means on `cpus` usable CPUs: one worker per two CPUs.

    The proxy shares its CPUs with the application beside it (a sidecar) or with Redis and
    the load generator (the benchmark): on the 2-CPU machine that ./dev.sh bench measures,
    `workers: 2` is slower than `workers: 1` on every workload (README, Performance).
    Past two CPUs the rule is not measured here; set a number to choose otherwise.
    """
    return max(1, cpus // 2)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may run on (cgroups, taskset)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _workers(value: object, key: str) -> int:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return auto_workers(_usable_cpus())
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise _KeyPathError(key, f'expected "auto" or an integer of at least 1, got {_describe(value)}')


# -- operability (issue 14) ----------------------------------------------------------------


def _admin(value: object, key: str) -> Address | None:
    """The admin listener's "host:port" (port 0: any free port); null turns it off."""
    return None if value is None else _listen(value, key)


def _milliseconds(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _KeyPathError(key, f"expected a number of milliseconds, got {_describe(value)}")
    if value < 0:
        raise _KeyPathError(key, f"must be zero (off) or more, got {_describe(value)}")
    return float(value)


def _check_admin(config: Config) -> None:
    admin, listen = config.admin, config.listen
    if (
        admin is not None
        and admin.port != 0
        and (admin.host, admin.port)
        == (
            listen.host,
            listen.port,
        )
    ):
        raise _KeyPathError("admin", f'must differ from listen ("{listen}"), got "{admin}"')


# Redis command names: letters, digits and - _ . : (module commands: "json.set").
_COMMAND_RE: Final = re.compile(r"[a-z0-9_.:-]+(\|[a-z0-9_.:-]+)?")


def _deny_commands(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _KeyPathError(
            key, f'expected a list of command names such as "flushall", got {_describe(value)}'
        )
    names: list[str] = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        name = item.strip().lower() if isinstance(item, str) else ""
        if not _COMMAND_RE.fullmatch(name):
            raise _KeyPathError(
                where,
                'expected a command name such as "flushall" or a subcommand such as '
                f'"config|set", got {_describe(item)}',
            )
        if name in names:
            first = names.index(name)
            raise _KeyPathError(where, f'"{name}" is listed twice (also {key}[{first}])')
        names.append(name)
    return tuple(names)


# -- sections -----------------------------------------------------------------------------

_SECRETS: Final = ("username", "password", "sentinel_username", "sentinel_password")

_UPSTREAM: Final[Mapping[str, _Parser]] = {
    "mode": _choice("cluster", "standalone", "sentinel"),
    "nodes": _nodes,
    "username": _optional_str,
    "username_env": _env_name,
    "password": _optional_str,
    "password_env": _env_name,
    "connect_timeout": _duration(),
    "command_timeout": _duration(),
    "refresh_interval": _duration(),
    "max_redirects": _count(0),
    "retry_timeout": _duration(allow_zero=True),
    "connections_per_node": _count(1),
    "tcp_keepalive": _duration(allow_zero=True),
    "tcp_user_timeout": _duration(allow_zero=True),
    "address_map": _address_map,
    "read_from": _choice(
        "primary", "prefer-replica", "replica", "any", aliases={"prefer_replica": "prefer-replica"}
    ),
    "max_idle_dedicated": _count(0),
    "min_refresh_gap": _duration(allow_zero=True),
    "reconnect_backoff": _duration(),
    "reconnect_backoff_max": _duration(),
    "resubscribe_backoff_max": _duration(),
    "tls": _raw,
    "sentinels": _nodes,
    "master_name": _optional_str,
    "sentinel_username": _optional_str,
    "sentinel_username_env": _env_name,
    "sentinel_password": _optional_str,
    "sentinel_password_env": _env_name,
    "switch_timeout": _duration(),
}
_LIMITS: Final[Mapping[str, _Parser]] = {
    "proto_max_bulk_len": _size,
    "max_multibulk_len": _count(1),
    "max_inline_len": _size,
    "max_clients": _count(1),
    "client_idle_timeout": _duration(allow_zero=True),
    "max_blocked_clients": _count(1),
    "max_pending_replies": _count(2),
    "max_pubsub_backlog": _count(1),
    "tracking_table_max_keys": _count(0),
    "script_cache_size": _size,
}
_LOG: Final[Mapping[str, _Parser]] = {
    "level": _choice("debug", "info", "warning", "error", aliases={"warn": "warning"}),
    "format": _choice("console", "json"),
}
_AUTH: Final[Mapping[str, _Parser]] = {
    "password": _optional_str,
    "password_env": _env_name,
    "users": _raw,
}
_USER: Final[Mapping[str, _Parser]] = {
    "name": _optional_str,
    "password": _optional_str,
    "password_env": _env_name,
    "commands": _raw,
}
_TLS: Final[Mapping[str, _Parser]] = {
    "cert": _optional_str,
    "key": _optional_str,
    "ca": _optional_str,
    "require_client_cert": _bool,
}
_UPSTREAM_TLS: Final[Mapping[str, _Parser]] = {
    "ca": _optional_str,
    "cert": _optional_str,
    "key": _optional_str,
    "verify_hostname": _bool,
    "server_name": _optional_str,
}
_SECTIONS: Final[Mapping[str, Mapping[str, _Parser]]] = {
    "tls": _TLS,
    "upstream": _UPSTREAM,
    "auth": _AUTH,
    "limits": _LIMITS,
    "log": _LOG,
}
_TOP: Final[Mapping[str, _Parser]] = {
    "listen": _listen,
    "tls": _raw,
    "upstream": _raw,
    "limits": _raw,
    "log": _raw,
    "auth": _raw,
    "workers": _workers,
    "deny_commands": _deny_commands,
    "shutdown_timeout": _duration(allow_zero=True),
    # -- operability (issue 14) --
    "admin": _admin,
    "slowlog_threshold_ms": _milliseconds,
}


def _unknown_key(name: str, section: str, parsers: Mapping[str, _Parser]) -> str:
    close = difflib.get_close_matches(name, list(parsers), n=1, cutoff=0.6)
    if close:
        return f'unknown key (did you mean "{_join(section, close[0])}"?)'
    # A key that belongs to another section is a common indentation slip.
    for other, keys in {"": _TOP, **_SECTIONS}.items():
        if other != section and name in keys:
            return f'unknown key (did you mean "{_join(other, name)}"?)'
    valid = ", ".join(parsers)
    return f"unknown key (valid keys: {valid})"


def _section(value: object, key: str, parsers: Mapping[str, _Parser]) -> dict[str, Any]:
    """Check a mapping's keys against `parsers` and parse each present value."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        where = "" if key else " at the top level"
        raise _KeyPathError(key, f"expected a mapping{where}, got {_describe(value)}")
    parsed: dict[str, Any] = {}
    for name, item in value.items():
        if not isinstance(name, str):
            raise _KeyPathError(key, f"keys must be strings, got {_describe(name)}")
        parser = parsers.get(name)
        if parser is None:
            raise _KeyPathError(_join(key, name), _unknown_key(name, key, parsers))
        parsed[name] = parser(item, _join(key, name))
    return parsed


def _resolve_secrets(fields: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Replace `username_env`/`password_env` with the variable's value, in place."""
    for secret in _SECRETS:
        env_key = f"{secret}_env"
        name = fields.pop(env_key, None)
        if name is None:
            continue
        if fields.get(secret) is not None:
            raise _KeyPathError(
                f"upstream.{env_key}", f"set either {secret} or {env_key}, not both"
            )
        if name not in environ:
            raise _KeyPathError(f"upstream.{env_key}", f'environment variable "{name}" is not set')
        if not environ[name]:
            raise _KeyPathError(f"upstream.{env_key}", f'environment variable "{name}" is empty')
        fields[secret] = environ[name]


def _parse_upstream(value: object, environ: Mapping[str, str], base: str | None) -> UpstreamConfig:
    fields = _section(value, "upstream", _UPSTREAM)
    _resolve_secrets(fields, environ)
    if fields.get("tls") is not None:
        fields["tls"] = _parse_upstream_tls(fields["tls"], base)
    if "master_name" in fields and not (fields["master_name"] or "").strip():
        raise _KeyPathError("upstream.master_name", "expected the name the sentinels monitor")
    upstream = UpstreamConfig(**fields)
    _check_sentinel(upstream)
    if not upstream.nodes and upstream.mode != "sentinel":
        raise _KeyPathError("upstream.nodes", 'at least one "host:port" node is required')
    if upstream.mode == "standalone" and len(upstream.nodes) > 1:
        raise _KeyPathError(
            "upstream.nodes",
            f"standalone mode takes exactly one node, got {len(upstream.nodes)}",
        )
    for prefix in ("", "sentinel_"):
        if getattr(upstream, f"{prefix}username") is not None and (
            getattr(upstream, f"{prefix}password") is None
        ):
            raise _KeyPathError(
                f"upstream.{prefix}username",
                f"a username needs a password (or {prefix}password_env)",
            )
    for key in ("reconnect_backoff_max", "resubscribe_backoff_max"):
        if getattr(upstream, key) < upstream.reconnect_backoff:
            raise _KeyPathError(
                f"upstream.{key}",
                f"must be at least upstream.reconnect_backoff ({upstream.reconnect_backoff:g}s),"
                f" got {getattr(upstream, key):g}s",
            )
    return upstream


def _check_sentinel(upstream: UpstreamConfig) -> None:
    """sentinel mode takes `sentinels` instead of `nodes`; the other modes take no sentinels."""
    if upstream.mode != "sentinel":
        if upstream.sentinels:
            raise _KeyPathError(
                "upstream.sentinels",
                f'only sentinel mode takes sentinels (upstream.mode is "{upstream.mode}")',
            )
        return
    if not upstream.sentinels:
        raise _KeyPathError(
            "upstream.sentinels", 'sentinel mode needs at least one "host:port" sentinel'
        )
    if upstream.nodes:
        raise _KeyPathError(
            "upstream.nodes",
            "sentinel mode finds the primary through upstream.sentinels: leave nodes out",
        )


# -- tls: the listener's and the upstream's ----------------------------------------------


def _pem_path(fields: dict[str, Any], name: str, key: str, base: str | None) -> str | None:
    """The file `fields[name]` names (relative to the config file's directory), readable."""
    value = fields.get(name)
    if value is None:
        return None
    where = _join(key, name)
    if not value.strip():
        raise _KeyPathError(where, "expected the path of a PEM file, got an empty string")
    path = os.path.join(base, value) if base is not None else value
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise _KeyPathError(where, f'cannot read "{path}": {e.strerror or e}') from None
    return path


def _check_pem(cert: str | None, key: str | None, ca: str | None, where: str) -> None:
    """Load the files the way the proxy will, so that a bad PEM fails at startup."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cert is not None:
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as e:
            raise _KeyPathError(
                _join(where, "key"),
                f"cannot load the certificate and key (not PEM, encrypted, or the key does"
                f" not match the certificate): {e.reason or e}",
            ) from None
    if ca is not None:
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as e:
            raise _KeyPathError(
                _join(where, "ca"), f"not a PEM file of CA certificates: {e.reason or e}"
            ) from None


def _cert_and_key(fields: dict[str, Any], key: str, base: str | None) -> tuple[str | None, ...]:
    cert = _pem_path(fields, "cert", key, base)
    private = _pem_path(fields, "key", key, base)
    if (cert is None) != (private is None):
        missing, given = ("key", "cert") if private is None else ("cert", "key")
        raise _KeyPathError(_join(key, missing), f"{given} is set, so {missing} is required too")
    ca = _pem_path(fields, "ca", key, base)
    _check_pem(cert, private, ca, key)
    return cert, private, ca


def _parse_tls(value: object, base: str | None) -> TLSConfig:
    fields = _section(value, "tls", _TLS)
    for name in ("cert", "key"):
        if fields.get(name) is None:
            raise _KeyPathError(
                _join("tls", name), "the listener needs a certificate and its key (cert, key)"
            )
    cert, key, ca = _cert_and_key(fields, "tls", base)
    assert cert is not None and key is not None
    extra = {k: fields[k] for k in ("require_client_cert",) if k in fields}
    tls = TLSConfig(cert=cert, key=key, ca=ca, **extra)
    if tls.require_client_cert and ca is None:
        raise _KeyPathError(
            "tls.require_client_cert", "needs tls.ca, the CA that client certificates must chain to"
        )
    return tls


def _parse_upstream_tls(value: object, base: str | None) -> UpstreamTLSConfig:
    fields = _section(value, "upstream.tls", _UPSTREAM_TLS)
    cert, key, ca = _cert_and_key(fields, "upstream.tls", base)
    name = fields.get("server_name")
    if name is not None and not _HOST_RE.fullmatch(name):
        raise _KeyPathError("upstream.tls.server_name", f"expected a host name, got {name!r}")
    if name is not None and fields.get("verify_hostname") is False:
        raise _KeyPathError(
            "upstream.tls.server_name", "is checked only with verify_hostname: true"
        )
    return UpstreamTLSConfig(
        ca=ca,
        cert=cert,
        key=key,
        **{k: fields[k] for k in ("verify_hostname", "server_name") if k in fields},
    )


# -- auth: client logins -------------------------------------------------------------------

# Redis 7.0's ACL CAT, plus "all".
_CATEGORY_NAMES: Final = (
    "all keyspace read write set sortedset list hash string bitmap hyperloglog geo stream "
    "pubsub admin fast slow blocking dangerous connection transaction scripting"
)
ACL_CATEGORIES: Final = frozenset(_CATEGORY_NAMES.split())
_USER_NAME_RE: Final = re.compile(r"[!-~]+")  # printable ASCII, no spaces (as ACL SETUSER)


def _auth_secret(fields: dict[str, Any], key: str, environ: Mapping[str, str]) -> str | None:
    """`password` or `password_env` (resolved now); `key` is the section's path."""
    name = fields.pop("password_env", None)
    password: str | None = fields.pop("password", None)
    if name is not None:
        where = _join(key, "password_env")
        if password is not None:
            raise _KeyPathError(where, "set either password or password_env, not both")
        if name not in environ:
            raise _KeyPathError(where, f'environment variable "{name}" is not set')
        password = environ[name]
        if not password:
            raise _KeyPathError(where, f'environment variable "{name}" is empty')
    elif password == "":
        raise _KeyPathError(_join(key, "password"), "must not be empty")
    return password


def _acl_rules(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _KeyPathError(
            key, f'expected a list of rules such as "+@read" or "-flushall", got {_describe(value)}'
        )
    rules: list[str] = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        rule = item.strip().lower() if isinstance(item, str) else ""
        if rule in ("allcommands", "nocommands"):
            rules.append(rule)
            continue
        sign, body = rule[:1], rule[1:]
        if sign not in ("+", "-") or not body:
            raise _KeyPathError(
                where,
                'expected "+command", "-command", "+@category", "-@category", "allcommands" '
                f'or "nocommands", got {_describe(item)}',
            )
        if body.startswith("@"):
            if body[1:] not in ACL_CATEGORIES:
                raise _KeyPathError(
                    where,
                    f'unknown command category "{body}" '
                    f"(known: {', '.join('@' + c for c in sorted(ACL_CATEGORIES))})",
                )
        elif not _COMMAND_RE.fullmatch(body):
            raise _KeyPathError(
                where, f'expected a command name such as "+get" or "-config|set", got {item!r}'
            )
        rules.append(rule)
    return tuple(rules)


def _parse_user(value: object, key: str, environ: Mapping[str, str]) -> UserConfig:
    fields = _section(value, key, _USER)
    name = fields.get("name")
    if not name:
        raise _KeyPathError(_join(key, "name"), "every user needs a name")
    if not _USER_NAME_RE.fullmatch(name):
        raise _KeyPathError(
            _join(key, "name"), f"expected printable characters without spaces, got {name!r}"
        )
    password = _auth_secret(fields, key, environ)
    if password is None:
        raise _KeyPathError(_join(key, "password"), "every user needs a password (or password_env)")
    commands: tuple[str, ...] = ()
    if "commands" in fields:
        commands = _acl_rules(fields["commands"], _join(key, "commands"))
    return UserConfig(name=name, password=password, commands=commands)


def _parse_auth(value: object, environ: Mapping[str, str]) -> AuthConfig:
    fields = _section(value, "auth", _AUTH)
    password = _auth_secret(fields, "auth", environ)
    raw_users = fields.get("users", [])
    if not isinstance(raw_users, list):
        raise _KeyPathError("auth.users", f"expected a list of users, got {_describe(raw_users)}")
    users: list[UserConfig] = []
    for i, item in enumerate(raw_users):
        user = _parse_user(item, f"auth.users[{i}]", environ)
        where = f"auth.users[{i}].name"
        if user.name == "default" and password is not None:
            raise _KeyPathError(where, '"default" is the user of auth.password; set one of them')
        for j, other in enumerate(users):
            if other.name == user.name:
                raise _KeyPathError(where, f'"{user.name}" is listed twice (also auth.users[{j}])')
        users.append(user)
    if password is None and not users:
        raise _KeyPathError("auth", "set password (or password_env), users, or both")
    return AuthConfig(password=password, users=tuple(users))


def _parse_top(data: object, environ: Mapping[str, str], path: str | None) -> Config:
    if data is None:
        raise _KeyPathError("", "expected a mapping at the top level, got an empty document")
    fields = _section(data, "", _TOP)
    base = os.path.dirname(os.path.abspath(path)) if path is not None else None
    if fields.get("tls") is not None:
        fields["tls"] = _parse_tls(fields["tls"], base)
    fields["upstream"] = _parse_upstream(fields.get("upstream"), environ, base)
    if "limits" in fields:
        fields["limits"] = LimitsConfig(**_section(fields["limits"], "limits", _LIMITS))
    if "log" in fields:
        fields["log"] = LogConfig(**_section(fields["log"], "log", _LOG))
    if fields.get("auth") is not None:  # null, like no auth section: clients need no AUTH
        fields["auth"] = _parse_auth(fields["auth"], environ)
    config = Config(**fields, source=path)
    _check_admin(config)
    return config
