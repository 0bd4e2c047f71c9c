"""C2PA content credentials through c2pa-python: sign a PNG offline, read one back.

c2pa checks the signing certificate's profile: measured with c2pa-python 0.38, a leaf
without an extended key usage or without an authority key identifier is refused ("the
certificate is invalid"); the tests issue a proper leaf from their own test CA. A
manifest from a CA outside the reader's trust list still validates ("Valid", with
signingCredential.untrusted); pass that CA as a trust anchor to get "Trusted".
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import c2pa
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

import mmtrain
from mmtrain.provenance.config import ProvenanceConfig

ASSERTION = "org.mmtrain.generation"
AI_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
_OFFLINE = {"verify": {"ocsp_fetch": False, "remote_manifest_fetch": False}}


def _key(key_pem: bytes) -> tuple[c2pa.C2paSigningAlg, bytes]:
    """The signing algorithm for the key, and the key as PKCS#8 PEM (c2pa reads no other
    form; openssl's `ecparam -genkey` writes SEC1 "EC PRIVATE KEY")."""
    key = load_pem_private_key(key_pem, password=None)
    pkcs8 = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return _algorithm(key), pkcs8


def _algorithm(key) -> c2pa.C2paSigningAlg:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {"secp256r1": c2pa.C2paSigningAlg.ES256, "secp384r1": c2pa.C2paSigningAlg.ES384,
                "secp521r1": c2pa.C2paSigningAlg.ES512}
        if key.curve.name in algs:
            return algs[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return c2pa.C2paSigningAlg.ED25519
    if isinstance(key, rsa.RSAPrivateKey):
        return c2pa.C2paSigningAlg.PS256
    raise ValueError(f"C2PA signing key type {type(key).__name__} is not supported: use an "
                     "EC P-256/P-384/P-521, Ed25519 or RSA key")


def sign_png(png: bytes, fields: dict, config: ProvenanceConfig) -> bytes:
    """`png` with a signed C2PA manifest embedded: created by a trained model, plus the
    mmtrain fields as an assertion."""
    cert, key = Path(config.cert_path).read_bytes(), Path(config.key_path).read_bytes()
    manifest = {
        "claim_generator_info": [{"name": config.claim_generator, "version": mmtrain.__version__}],
        "title": "generated.png",
        "format": "image/png",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{
                "action": "c2pa.created", "digitalSourceType": AI_SOURCE,
                "softwareAgent": {"name": "mmtrain", "version": mmtrain.__version__}}]}},
            {"label": ASSERTION, "data": fields},
        ],
    }
    try:
        algorithm, key = _key(key)
    except (ValueError, TypeError) as e:
        raise ValueError(f"cannot read the C2PA signing key {config.key_path}: {e} (an "
                         "unencrypted PEM private key is needed)") from e
    info = c2pa.C2paSignerInfo(algorithm, cert, key, config.tsa_url)
    # no thumbnail: for a 32 px image it would be 50x the image
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    out = io.BytesIO()
    try:
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest, context) as builder:
            builder.sign(signer, "image/png", io.BytesIO(png), out)
    except c2pa.C2paError as e:
        raise ValueError(
            f"C2PA signing failed ({e}) with cert {config.cert_path} and key "
            f"{config.key_path}: C2PA needs the signing (leaf) certificate first in the PEM "
            "chain, followed by the CA(s) that issued it; the leaf must carry an extended key "
            "usage (e.g. emailProtection) and an authority key identifier, and the key must "
            "be the leaf's own; see docs/provenance.md") from e
    return out.getvalue()


@dataclass
class C2paResult:
    present: bool
    state: str | None = None  # Valid | Trusted | Invalid (c2pa's validation_state)
    failures: list[str] = field(default_factory=list)  # failure codes
    signer: dict | None = None  # issuer, common name, algorithm
    claim_generator: str | None = None
    generation: dict | None = None  # the org.mmtrain.generation assertion
    error: str | None = None


def read(data: bytes, mime: str, trust_anchors: str | None = None) -> C2paResult:
    settings = dict(_OFFLINE)
    if trust_anchors:
        settings = {"verify": {**_OFFLINE["verify"], "verify_trust": True},
                    "trust": {"trust_anchors": Path(trust_anchors).read_text()}}
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data), None,
                                        c2pa.Context.from_dict(settings))
    except c2pa.C2paError as e:  # a damaged manifest store, an unsupported format
        return C2paResult(present=False, error=str(e))
    if reader is None:
        return C2paResult(present=False)
    with reader:
        manifest = reader.get_active_manifest() or {}
        results = (reader.get_validation_results() or {}).get("activeManifest", {})
        state = reader.get_validation_state()
    generation = next((a.get("data") for a in manifest.get("assertions", [])
                       if a.get("label") == ASSERTION), None)
    generator = (manifest.get("claim_generator_info") or [{}])[0]
    return C2paResult(
        present=True, state=state,
        failures=[f["code"] for f in results.get("failure", [])],
        signer=manifest.get("signature_info"),
        claim_generator=" ".join(str(generator.get(k, "")) for k in ("name", "version")).strip(),
        generation=generation)
