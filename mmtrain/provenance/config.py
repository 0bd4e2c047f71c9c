"""What `stamp` puts into a generated image."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ProvenanceConfig:
    watermark: bool = True
    # The invisible watermark's payload, as UTF-8 text (8 bits a character). An image holds
    # (H//8)*(W//8) bits: 2 characters fit 32 px images, 8 fit 64 px (docs/provenance.md).
    message: str = "mt"
    # A C2PA manifest is signed only when both are set: a PEM certificate chain (the leaf
    # first, then the CA(s) that issued it; the leaf needs an extended key usage and an
    # authority key identifier) and the leaf's PEM private key (EC P-256 -> ES256,
    # P-384 -> ES384, P-521 -> ES512, Ed25519, RSA -> PS256).
    cert_path: str | None = None
    key_path: str | None = None
    claim_generator: str = "mmtrain"
    # An RFC 3161 timestamp authority; None signs offline (the manifest then validates only
    # while the certificate is valid).
    tsa_url: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_path is None) != (self.key_path is None):
            raise ValueError("provenance: set both cert_path and key_path to sign C2PA "
                             "manifests, or neither")
        if self.watermark and not self.message:
            raise ValueError("provenance: the watermark message is empty; set message= "
                             "(e.g. 'mt') or watermark=False")

    @property
    def signs(self) -> bool:
        return self.cert_path is not None
