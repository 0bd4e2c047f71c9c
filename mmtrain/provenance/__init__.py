"""Provenance of generated images: an invisible watermark (invisible-watermark's
dwtDctSvd), PNG metadata (bundle manifest hash, seed, prompt hash) and, when a signing
certificate is configured, a C2PA manifest (c2pa-python). docs/provenance.md.

    from mmtrain.provenance import ProvenanceConfig, stamp, verify
    png = stamp(image, manifest_sha256=..., seed=7, prompt="a red circle", out="a.png")
    verify("a.png").ok

CLI: python -m mmtrain.provenance verify IMAGE [--json]
"""

try:
    import c2pa  # noqa: F401
    import cv2  # noqa: F401
    import pywt  # noqa: F401
except ImportError as e:  # an extra: opencv and the c2pa library weigh about 250 MB
    raise ImportError(f"mmtrain.provenance needs the provenance extra ({e}): "
                      "pip install -e '.[provenance]' (serving and dev include it)") from e

from mmtrain.provenance.config import ProvenanceConfig  # noqa: E402
from mmtrain.provenance.stamp import manifest_sha256, stamp  # noqa: E402
from mmtrain.provenance.verify import Report, UnreadableImage, verify  # noqa: E402

__all__ = ["ProvenanceConfig", "Report", "UnreadableImage", "manifest_sha256", "stamp", "verify"]
