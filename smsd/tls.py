"""TLS helpers shared by the links smsd opens (SMPP to an SMSC, SMTP to the relay)."""

from __future__ import annotations

from typing import Any

from twisted.internet import ssl


def load_trust_root(path: str) -> Any:
    """The CA certificates of a PEM file, as a trust root for TLS; ValueError says why not."""
    from cryptography.x509 import load_pem_x509_certificates
    from OpenSSL.crypto import X509

    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    try:
        certificates = load_pem_x509_certificates(pem)
    except ValueError:  # cryptography's words point to its FAQ, not to the file
        raise ValueError(f"{path} holds no valid PEM certificate") from None
    return ssl.trustRootFromCertificates(
        [ssl.Certificate(X509.from_cryptography(c)) for c in certificates]
    )
