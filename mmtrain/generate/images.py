"""Generate images from a t2i bundle, refine them through its cascade, stamp each one
(mmtrain.provenance) and write a JSON report next to them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mmtrain.generate.bundle import T2IBundle
from mmtrain.provenance import ProvenanceConfig, stamp, watermark
from mmtrain.provenance.metadata import prompt_sha256

REPORT = "report.json"


def generate(bundle: T2IBundle, prompt: str, out: str | Path, *, seed: int = 0, n: int = 1,
             negative_prompt: str | None = None, style: str | None = None,
             steps: int | None = None, sampler: str | None = None,
             guidance_scale: float | None = None, refine: bool = True,
             provenance: ProvenanceConfig | None = None) -> dict:
    """Writes `n` stamped PNGs (image i from seed + i, so its recorded seed alone
    reproduces it) and out/report.json; returns the report. The prompt itself goes
    nowhere, only its sha256 (docs/provenance.md says why)."""
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    if style is not None and style not in bundle.extras.style_names:
        known = ", ".join(bundle.extras.style_names)
        raise ValueError(f"unknown style {style!r}; this bundle knows "
                         + (known if known else "no styles (it was trained without presets)"))
    provenance = provenance or ProvenanceConfig()
    facts = bundle.facts
    sampler = bundle.use_sampler(sampler)
    steps = steps or facts.get("sampling_steps", 20)
    guidance = facts.get("guidance_scale", 7.5) if guidance_scale is None else guidance_scale
    side = facts.get("resolution") or bundle.pipe.unet.config.sample_size * bundle.pipe.vae_scale_factor
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cascade = bundle.cascade if refine else None
    images = []
    for i in range(n):
        result = bundle.extras.generate(
            bundle.pipe, [prompt], seed + i, negative_prompt=negative_prompt, style=style,
            num_inference_steps=steps, guidance_scale=guidance, height=side, width=side)
        image = cascade(result.images)[0] if cascade is not None else result.images[0]
        config, note = _fit_watermark(provenance, image)
        path = out / f"{i:03d}-seed{seed + i}.png"
        stamp(image, manifest_sha256=bundle.manifest_sha256, seed=seed + i, prompt=prompt,
              config=config, out=path)
        images.append({"file": path.name, "seed": seed + i, "size": list(image.size),
                       "watermark": note or f"{watermark.METHOD} message {config.message!r}",
                       "c2pa": config.signs, **result.report()[0]})
    report = {
        "bundle": str(bundle.folder), "manifest_sha256": bundle.manifest_sha256,
        "prompt_sha256": prompt_sha256(prompt),
        "negative_prompt_sha256": prompt_sha256(negative_prompt) if negative_prompt else None,
        "style": style, "sampler": sampler, "steps": steps, "guidance_scale": guidance,
        "base_resolution": side,
        "cascade": [{"scale": s.scale, "source": s.source} for s in cascade.stages]
        if cascade is not None else [],
        "images": images,
    }
    (out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _fit_watermark(config: ProvenanceConfig, image) -> tuple[ProvenanceConfig, str | None]:
    """The config to stamp with, and why the watermark was skipped (None: embedded).
    A message needs (H//8)*(W//8) >= its bits: a 16 px image holds 4 bits, the default
    16-bit message needs 32 px; such images get metadata (and C2PA) only, said loudly."""
    if not config.watermark:
        return config, "off (--no-watermark)"
    bits = len(watermark.message_bits(config.message))
    if watermark.capacity(*image.size) >= bits:
        return config, None
    note = (f"skipped: a {image.width}x{image.height} image holds "
            f"{watermark.capacity(*image.size)} bits, the {bits}-bit message needs "
            f"{watermark.min_side(bits)} px; add a cascade stage to the model or use a "
            "larger base resolution")
    print(f"warning: watermark {note}", file=sys.stderr)
    fields = {k: getattr(config, k) for k in config.__dataclass_fields__}
    return ProvenanceConfig(**(fields | {"watermark": False})), note
