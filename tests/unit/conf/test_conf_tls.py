"""conf: the listener's `tls` and `upstream.tls`; files are checked when the config loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from conf import ConfigError, load_config
from conf.schema import TLSConfig, UpstreamTLSConfig

NODES = "upstream:\n  nodes: ['127.0.0.1:7000']\n"


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem, server.crt/.key, other.key (another key), junk.pem, in one directory."""
    where = tmp_path_factory.mktemp("pem")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(where / "ca.pem"))
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(where / "server.crt"))
    leaf.private_key_pem.write_to_path(str(where / "server.key"))
    ca.issue_cert("other").private_key_pem.write_to_path(str(where / "other.key"))
    (where / "junk.pem").write_text("not a certificate\n")
    return where


def load(pem: Path, text: str) -> object:
    path = pem / "slotless.yaml"
    path.write_text(text)
    return load_config(path, environ={})


def error_of(pem: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(pem, text)
    message = str(info.value)
    prefix = f"{pem / 'slotless.yaml'}: "
    assert message.startswith(prefix) and "\n" not in message
    return message[len(prefix) :]


def test_listener_tls_paths_relative_to_the_config(pem: Path) -> None:
    config = load(pem, f"tls: {{cert: server.crt, key: server.key, ca: ca.pem}}\n{NODES}")
    assert config.tls == TLSConfig(  # type: ignore[attr-defined]
        cert=str(pem / "server.crt"), key=str(pem / "server.key"), ca=str(pem / "ca.pem")
    )


def test_upstream_tls_defaults(pem: Path) -> None:
    config = load(pem, f"{NODES}  tls: {{}}\n")
    assert config.upstream.tls == UpstreamTLSConfig()  # type: ignore[attr-defined]
    assert UpstreamTLSConfig().verify_hostname  # CA and name checks are on by default


def test_upstream_tls_full(pem: Path) -> None:
    text = (
        f"{NODES}  tls: {{ca: ca.pem, cert: server.crt, key: server.key,"
        " server_name: redis.example}\n"
    )
    tls = load(pem, text).upstream.tls  # type: ignore[attr-defined]
    assert tls.ca == str(pem / "ca.pem") and tls.server_name == "redis.example"
    assert tls.cert == str(pem / "server.crt") and tls.verify_hostname


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"tls: {{key: server.key}}\n{NODES}", "tls.cert: the listener needs a certificate"),
        (f"tls: {{cert: server.crt}}\n{NODES}", "tls.key: the listener needs a certificate"),
        (f"tls: {{cert: nope.crt, key: server.key}}\n{NODES}", 'tls.cert: cannot read "'),
        (
            f"tls: {{cert: server.crt, key: other.key}}\n{NODES}",
            "tls.key: cannot load the certificate and key (not PEM, encrypted, or the key does"
            " not match the certificate): KEY_VALUES_MISMATCH",
        ),
        (
            f"tls: {{cert: server.crt, key: junk.pem}}\n{NODES}",
            "tls.key: cannot load the certificate and key",
        ),
        (
            f"tls: {{cert: server.crt, key: server.key, require_client_cert: true}}\n{NODES}",
            "tls.require_client_cert: needs tls.ca, the CA that client certificates must chain to",
        ),
        (
            f"tls: {{cert: server.crt, key: server.key, require_client_cert: 1}}\n{NODES}",
            "tls.require_client_cert: expected true or false, got 1",
        ),
        (
            f"tls: {{cert: server.crt, key: server.key, ca: junk.pem}}\n{NODES}",
            "tls.ca: not a PEM file of CA certificates",
        ),
        (f"tls: {{cert: server.crt, key: server.key, cafile: x}}\n{NODES}", "tls.cafile: unknown"),
        (f"{NODES}  tls: {{ca: missing.pem}}\n", 'upstream.tls.ca: cannot read "'),
        (f"{NODES}  tls: {{cert: server.crt}}\n", "upstream.tls.key: cert is set, so key is"),
        (f"{NODES}  tls: {{key: server.key}}\n", "upstream.tls.cert: key is set, so cert is"),
        (
            f"{NODES}  tls: {{verify_hostname: false, server_name: a.example}}\n",
            "upstream.tls.server_name: is checked only with verify_hostname: true",
        ),
        (f"{NODES}  tls: {{server_name: 'a b'}}\n", "upstream.tls.server_name: expected a host"),
        (f"{NODES}  tls: {{verify_hostname: 'no'}}\n", "upstream.tls.verify_hostname: expected"),
        (f"{NODES}  tls: [ca.pem]\n", "upstream.tls: expected a mapping, got a list"),
    ],
)
def test_tls_errors(pem: Path, text: str, message: str) -> None:
    assert error_of(pem, text).startswith(message)


def test_unreadable_key(pem: Path, tmp_path: Path) -> None:
    # A directory cannot be read even by root (a mode-000 file can).
    message = error_of(pem, f"tls: {{cert: server.crt, key: {str(tmp_path)!r}}}\n{NODES}")
    assert message == f'tls.key: cannot read "{tmp_path}": Is a directory'
