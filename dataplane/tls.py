"""Certificates for HTTPS listeners served locally: ACM's certificate never leaves AWS (nor moto).

One throw-away CA per data plane signs a certificate for each listener's domain (the ACM certificate's
name), also valid for `localhost` and 127.0.0.1, so `curl --cacert <ca.pem> https://127.0.0.1:PORT`
verifies (or `curl -k` skips it). The CA's path is in the `/_dataplane/load-balancers` answer.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = datetime.timedelta(days=7)


class LocalCertificates:
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None

    @property
    def ca_file(self) -> Path:
        return self._directory / "ca.pem"

    def context(self, domain: str) -> ssl.SSLContext:
        """A server context whose certificate names `domain` (made once per domain)."""
        with self._lock:
            if domain not in self._contexts:
                self._contexts[domain] = self._make(domain)
            return self._contexts[domain]

    def _authority(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if self._ca is None:
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scaleout dataplane local CA")])
            cert = (
                builder(name, name, key)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(key_usage(cert_sign=True), critical=True)
                .sign(key, hashes.SHA256())
            )
            self.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            self._ca = cert, key
        return self._ca

    def _make(self, domain: str) -> ssl.SSLContext:
        ca, ca_key = self._authority()
        key = ec.generate_private_key(ec.SECP256R1())
        names = [
            x509.DNSName(domain),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        cert = (
            builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]), ca.subject, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        stem = self._directory / domain.replace("*", "_")
        cert_file, key_file = stem.with_suffix(".pem"), stem.with_suffix(".key")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # as ELBSecurityPolicy-TLS13-1-2-2021-06
        context.load_cert_chain(cert_file, key_file)
        return context


def builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALID_FOR)
    )


def key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
