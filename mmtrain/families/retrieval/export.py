"""The retrieval family's servable artifact: the encoder in ecosystem formats + a FAISS
index over the evaluation gallery.

    text_encoder/     transformers folder (AutoModel + AutoTokenizer), mean-pooled
    image_encoder/    CLIPVisionModel folder (vit) or config.json + model.safetensors (cnn)
    document_encoder/ (document tower on) LayoutLMv3Model + tokenizer + image processor
    heads.safetensors text_proj.weight, image_proj.weight, logit_scale
                      (+ document_proj.weight)
    index/            mmtrain.rag VectorIndex (flat, exact): index.faiss (faiss.read_index
                      loadable) + manifest.json with the encoder hash + metadata.json
                      (id -> {id, modality, source, text}) over the gallery's images and
                      captions (+ evaluation documents)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from mmtrain.families.retrieval.document_tower import summary
from mmtrain.families.retrieval.module import Retrieval
from mmtrain.families.retrieval.networks import ConvTower, ViTTower, canonical_hash
from mmtrain.rag.index import VectorIndex


def encoder_hash(module: Retrieval) -> str:
    """sha256 over both towers, both projections and the logit scale, canonical order
    (+ the document tower and its projection when on): an index built with other weights
    carries another hash."""
    parts = {"text_encoder": module.text_encoder, "image_encoder": module.image_encoder,
             "text_proj": module.text_proj, "image_proj": module.image_proj,
             "logit_scale": module.logit_scale.data}
    if module.document_tower is not None:
        parts |= {"document_encoder": module.document_tower.model,
                  "document_proj": module.document_proj}
    return canonical_hash(parts)


def gallery(module: Retrieval, seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """The evaluation scenes' images and captions (+ evaluation documents, document
    tower on) embedded -> (vectors, metadata)."""
    _, captions, images = module.eval_scenes(seed)
    parts = [module.embed(images), module.embed(captions)]
    meta = [{"id": f"image-{i}", "modality": "image", "source": f"synthetic:scene:{seed}:{i}",
             "text": c} for i, c in enumerate(captions)]
    meta += [{"id": f"text-{i}", "modality": "text", "source": f"synthetic:caption:{seed}:{i}",
              "text": c} for i, c in enumerate(captions)]
    if module.document_tower is not None:
        pages = module.eval_documents(seed)
        parts.append(module.embed(pages))
        meta += [{"id": f"document-{i}", "modality": "document", "source": p["source"],
                  "text": summary(p)} for i, p in enumerate(pages)]
    vectors = torch.cat(parts).numpy()
    return np.ascontiguousarray(vectors, dtype=np.float32), meta


def export(module: Retrieval, out: Path) -> dict:
    out = Path(out)
    tok = module.tokenizer
    # tokenizing with padding/truncation leaves them set on the fast backend, and
    # save_pretrained would write them into tokenizer.json: reset for stable bytes
    tok.backend_tokenizer.no_padding()
    tok.backend_tokenizer.no_truncation()
    module.text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
    tok.save_pretrained(out / "text_encoder")
    tower = module.image_encoder
    if isinstance(tower, ViTTower):
        tower.model.save_pretrained(out / "image_encoder", safe_serialization=True)
        image_format = "transformers CLIPVisionModel (pooler_output)"
    else:
        assert isinstance(tower, ConvTower)
        tower.save(out / "image_encoder")
        image_format = "mmtrain ConvTower (config.json + model.safetensors)"
    heads = {"text_proj.weight": module.text_proj.weight.detach().contiguous(),
             "image_proj.weight": module.image_proj.weight.detach().contiguous(),
             "logit_scale": module.logit_scale.detach().reshape(1).contiguous()}
    if module.document_tower is not None:
        module.document_tower.save(out / "document_encoder")
        heads["document_proj.weight"] = module.document_proj.weight.detach().contiguous()
    save_file(heads, str(out / "heads.safetensors"))
    vectors, meta = gallery(module)
    digest = encoder_hash(module)
    index = VectorIndex.build(vectors, np.arange(len(vectors)), kind="flat", encoder_hash=digest)
    index.save(out / "index")
    (out / "index" / "metadata.json").write_text(json.dumps(meta, indent=1))
    c = module.config
    facts = {
        "format": "dual-encoder",
        "encoder_hash": digest,
        "embed_dim": c.embed_dim,
        "text_encoder": "transformers AutoModel, mean pooling over tokens, then "
                        "text_proj, then L2 norm",
        "text_max_length": c.text.max_length,
        "image_encoder": image_format,
        "image_resolution": c.resolution,
        "image_mean": list(c.image_mean),
        "image_std": list(c.image_std),
        "index": {"folder": "index", "loader": "mmtrain.rag.index.VectorIndex.load",
                  "metadata": "index/metadata.json", "kind": "flat",
                  "metric": "inner_product", "count": len(index),
                  "modalities": sorted({m["modality"] for m in meta})},
        "logit_scale": float(module.scale().detach()),
    }
    if module.document_tower is not None:
        facts["document_encoder"] = {
            "folder": "document_encoder",
            "format": "transformers LayoutLMv3Model + LayoutLMv3Tokenizer + "
                      "LayoutLMv3ImageProcessor (apply_ocr off)",
            "pool": c.document.pool, "projection": "heads.safetensors document_proj.weight",
            "input": "page image + words + pixel boxes (normalised to 0..1000)",
            "paired_text": "header + key-value fields (document_tower.summary), "
                           f"text tower max_length {c.document.text_max_length}"}
    return facts
