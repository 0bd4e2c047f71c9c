"""A throwaway certificate authority for C2PA tests: each test session makes a CA and an
ES256 leaf it issues. c2pa 0.38 signs only with a leaf that carries an extended key usage
and an authority key identifier (measured: without either it answers "the certificate
is invalid")."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mmtrain tests")])


def _usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                         crl_sign=ca, encipher_only=False, decipher_only=False)


def _cert(subject, issuer, public_key, signing_key, *, ca: bool, profile: bool = True) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1))
               .not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
               .add_extension(_usage(sign=not ca, ca=ca), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if not ca and profile:  # C2PA's certificate profile: an extended key usage and the issuer's key id
        builder = (builder
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       signing_key.public_key()), critical=False))
    return builder.sign(signing_key, hashes.SHA256())


def _pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory) -> dict[str, Path]:
    """ca.pem (the root), chain.pem (leaf + root), key.pem (the leaf's P-256 key), and
    bare.pem (a leaf from the same CA without the C2PA extensions, which c2pa refuses);
    key_sec1.pem is key.pem as openssl's `ecparam -genkey` writes it."""
    out = tmp_path_factory.mktemp("ca")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert(_name("mmtrain test CA"), _name("mmtrain test CA"), ca_key.public_key(), ca_key, ca=True)
    leaf = _cert(_name("mmtrain test signer"), ca.subject, key.public_key(), ca_key, ca=False)
    bare = _cert(_name("mmtrain bare leaf"), ca.subject, key.public_key(), ca_key, ca=False,
                 profile=False)
    files = {"ca": _pem(ca), "chain": _pem(leaf) + _pem(ca), "key": _pem(key),
             "bare": _pem(bare) + _pem(ca),
             "key_sec1": key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption())}
    paths = {}
    for name, data in files.items():
        paths[name] = out / f"{name}.pem"
        paths[name].write_bytes(data)
    return paths
