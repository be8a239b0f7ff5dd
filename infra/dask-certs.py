"""Certificates for a Dask cluster over TLS: a private CA and one certificate it signs for the nodes.

    python infra/dask-certs.py OUT_DIR [--host scheduler.example.org ...] [--days 365]

Writes ``ca.pem`` (the CA's certificate: every node and client trusts it), ``node.pem`` and
``node-key.pem`` (the certificate and key the scheduler, the workers and the clients present; its
names are ``--host`` values plus ``localhost`` and ``127.0.0.1``) and ``dask-tls.env``, the
environment that turns TLS on for ``dask scheduler``, ``dask worker`` and ``ser`` (distributed reads
it as its configuration, and its ``Security`` then requires encryption and a certificate signed by
the CA from every peer: a client without one is refused). The CA's key is not kept: to add a node or
rotate, run the script again and redistribute the three files (mounted from a Secret, never committed).

Uses ``cryptography`` (a dependency of distributed's TLS support). Exits 2 when ``OUT_DIR`` already
holds certificates, so nothing is overwritten by accident (``--force`` to replace them).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ser-pipeline"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make(out: Path, hosts: list[str], days: int) -> dict[str, Path]:
    """Write the CA certificate, the node certificate and key, and the environment file into ``out``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False)
    ca_name = _name("ser-pipeline dask CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(usage, critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(h) for h in dict.fromkeys(["localhost", *hosts]) if not _is_ip(h)]
    ips = [x509.IPAddress(ipaddress.ip_address(h)) for h in dict.fromkeys(["127.0.0.1", *hosts]) if _is_ip(h)]
    node = (x509.CertificateBuilder().subject_name(_name("ser-pipeline dask node")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([*names, *ips]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    files = {"ca": out / "ca.pem", "cert": out / "node.pem", "key": out / "node-key.pem", "env": out / "dask-tls.env"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(node.public_bytes(serialization.Encoding.PEM))
    files["key"].touch(mode=0o600)
    files["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    env = {"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
           "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": files["ca"].resolve()}
    for role in ("SCHEDULER", "WORKER", "CLIENT"):
        env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__CERT"] = files["cert"].resolve()
        env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__KEY"] = files["key"].resolve()
    files["env"].write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return files


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def main() -> None:
    """Parse the arguments and write the files."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--host", action="append", default=[], help="A name or address the nodes are reached by.")
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--force", action="store_true", help="Replace certificates already in OUT_DIR.")
    args = ap.parse_args()
    if (args.out / "ca.pem").exists() and not args.force:
        print(f"{args.out} already holds certificates; --force replaces them", file=sys.stderr)
        sys.exit(2)
    files = make(args.out, args.host, args.days)
    print(f"wrote {', '.join(str(p) for p in files.values())}")


if __name__ == "__main__":
    main()
