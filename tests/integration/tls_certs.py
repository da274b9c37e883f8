"""Certificates made at test time with trustme: a CA, certificates it signs, a foreign CA.

Every server certificate names 127.0.0.1 (IP SAN) and "localhost", as the TLS tests dial
them, and allows both server and client use (redis-server's bus links present it too).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import trustme

from proxy.localcluster import TLSFiles


@dataclass(frozen=True, slots=True)
class Certs:
    """Paths of PEM files under one directory."""

    ca: str  # the CA that signs everything below
    server: TLSFiles  # cert/key for 127.0.0.1 and localhost, signed by `ca`
    client_cert: str  # a client certificate signed by `ca`
    client_key: str
    other_ca: str  # a CA that signed none of these
    other_server: TLSFiles  # 127.0.0.1, signed by other_ca
    expired: TLSFiles  # 127.0.0.1, signed by `ca`, expired yesterday
    wrong_name: TLSFiles  # signed by `ca`, names only "redis.example" (hostname mismatch)


def _write(ca_file: str, cert: trustme.LeafCert, where: Path, name: str) -> TLSFiles:
    cert_file, key_file = where / f"{name}.crt", where / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return TLSFiles(ca=ca_file, cert=str(cert_file), key=str(key_file))


def make_certs(where: Path) -> Certs:
    where.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(), trustme.CA()
    ca_file, other_file = str(where / "ca.pem"), str(where / "other-ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    other.cert_pem.write_to_path(other_file)
    yesterday = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    expired = ca.issue_cert(
        "127.0.0.1",
        "localhost",
        not_before=yesterday - datetime.timedelta(days=30),
        not_after=yesterday,
    )
    client = _write(ca_file, ca.issue_cert("slotless-client@example.com"), where, "client")
    return Certs(
        ca=ca_file,
        server=_write(ca_file, ca.issue_cert("127.0.0.1", "localhost"), where, "server"),
        client_cert=client.cert,
        client_key=client.key,
        other_ca=other_file,
        other_server=_write(other_file, other.issue_cert("127.0.0.1"), where, "other"),
        expired=_write(ca_file, expired, where, "expired"),
        wrong_name=_write(ca_file, ca.issue_cert("redis.example"), where, "wrong-name"),
    )
