"""The restoration family's servable artifacts, two views of one network:

- a transformers folder (config.json, model.safetensors, preprocessor_config.json) that
  `Swin2SRForImageSuperResolution.from_pretrained` / `AutoImageProcessor` load offline
  with no mmtrain code: the Swin2SR weights exactly as trained, nothing folded in;
- `restorer.onnx`: the whole served computation (reflect padding to the window, Swin2SR,
  the residual skip, crop), dynamic batch and size, checked against PyTorch with
  onnxruntime at export time.

With the residual skip (config `mmtrain_residual: true`, also in the manifest) the
Swin2SR folder's `reconstruction` is not yet the image: the restored image is
    reconstruction - model.swin2sr.mean + bicubic_upsample(pixel_values[:, :3], upscale)
(the input itself at upscale 1), which is what restorer.onnx computes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmtrain.families.restore.module import Restore
from mmtrain.families.restore.networks import Restorer

ONNX_FILE = "restorer.onnx"
ONNX_TOLERANCE = 1e-4


def export(module: Restore, out: Path) -> dict:
    from transformers.models.swin2sr.image_processing_pil_swin2sr import Swin2SRImageProcessorPil

    restorer = module.restorer
    model = restorer.model
    was_training = module.training
    module.eval()
    model.save_pretrained(out, safe_serialization=True)
    Swin2SRImageProcessorPil(size_divisor=restorer.window).save_pretrained(out)
    channels = int(model.config.num_channels)
    max_diff = export_onnx(restorer, Path(out) / ONNX_FILE, channels)
    module.train(was_training)
    skip = ("bicubic upsampling of the RGB input" if restorer.scale > 1 else "the RGB input") \
        if restorer.residual else None
    return {
        "format": "transformers+onnx",
        "model_class": "Swin2SRForImageSuperResolution",
        "processor_class": "Swin2SRImageProcessorPil",
        "task": module.config.task,
        "upscale": restorer.scale,
        "input_channels": channels,
        "input": "RGB in [0, 1]" + (" + hole mask (1 = missing) as a 4th channel"
                                    if channels == 4 else ""),
        "residual_skip": skip,
        "served": (f"restored = reconstruction - swin2sr.mean + {skip}" if skip
                   else "restored = reconstruction"),
        "onnx": {"file": ONNX_FILE, "input": "pixels (N, C, H, W)",
                 "output": "restored (N, 3, H*upscale, W*upscale)",
                 "max_abs_diff_vs_pytorch": max_diff},
    }


def export_onnx(restorer: Restorer, path: Path, channels: int) -> float:
    """Writes the served graph (TorchScript-based exporter: about a second, where the
    dynamo exporter takes 30-70 s) and returns its largest difference to PyTorch on an
    input of another size than the traced one (so the dynamic axes are exercised)."""
    import onnxruntime as ort

    device = next(restorer.parameters()).device
    example = torch.rand(2, channels, restorer.window * 2 + 3, restorer.window * 2 + 5,
                         device=device)
    torch.onnx.export(
        restorer, (example,), str(path), dynamo=False, opset_version=17,
        input_names=["pixels"], output_names=["restored"],
        dynamic_axes={"pixels": {0: "batch", 2: "height", 3: "width"},
                      "restored": {0: "batch", 2: "out_height", 3: "out_width"}})
    probe = torch.rand(1, channels, restorer.window * 3 + 1, restorer.window * 2)
    with torch.no_grad():
        expected = restorer(probe.to(device)).cpu().numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"pixels": probe.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    if got.shape != expected.shape or diff > ONNX_TOLERANCE:
        raise RuntimeError(f"restore export: onnxruntime output {got.shape} differs from "
                           f"PyTorch {expected.shape} by {diff:.2e} (> {ONNX_TOLERANCE})")
    return diff
