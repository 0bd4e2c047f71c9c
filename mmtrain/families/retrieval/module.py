"""Cross-modal retrieval: a dual encoder (text tower + image tower) trained CLIP-style.

Losses: `contrastive`, symmetric InfoNCE over the batch with a learnable temperature
(logit_scale, exp clamped at `max_logit_scale` as CLIP does), negatives gathered from every
data-parallel rank with gradients (torch.distributed.nn.functional.all_gather), so a DDP
step equals the single-process step on the concatenated batch; `document_contrastive`
(document tower on), the same loss between documents (the doc family's LayoutLMv3
encoder, document_tower.py) and their summary texts.

Queries of any modality (text, PIL image, document) embed into the one unit-norm space
(`embed`), and `search` ranks a mixed gallery in one list.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from mmtrain.data.synth.scenes import CAPTION_TEMPLATES, render_scene, sample_scene
from mmtrain.families.base import FamilyModule
from mmtrain.families.retrieval import batch as batch_codec
from mmtrain.families.retrieval import document_tower as doc_tower
from mmtrain.families.retrieval import metrics as M
from mmtrain.families.retrieval import networks
from mmtrain.families.retrieval.config import RetrievalConfig
from mmtrain.families.retrieval.loss import contrastive_loss, distributed

# A document query: a dict carrying the page's "words" (the doc family's decoded sample).
Query = str | Image.Image | dict


class Retrieval(FamilyModule):
    name = "retrieval"
    default_loss_weights = {"contrastive": 1.0}

    def __init__(self, config: RetrievalConfig) -> None:
        super().__init__()
        self.config = config
        self.text_encoder, self.tokenizer = networks.build_text_tower(config)
        self.text_proj = networks.projection(self.text_encoder.config.hidden_size,
                                             config.embed_dim)
        self.image_encoder = networks.build_image_tower(config)
        self.image_proj = networks.projection(self.image_encoder.out_dim, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.init_temperature)))
        # Documents: the doc family's LayoutLMv3 encoder + a projection when
        # `document.enabled`; else their words through the text tower. `document_encoder`
        # (documents -> (N, embed_dim) unit vectors) overrides both when set.
        self.document_tower: doc_tower.DocumentTower | None = None
        self.document_proj: nn.Linear | None = None
        if config.document.enabled:
            self.document_tower = doc_tower.DocumentTower(config.document)
            self.document_proj = networks.projection(self.document_tower.out_dim,
                                                     config.embed_dim)
            self.default_loss_weights = {**type(self).default_loss_weights,
                                         "document_contrastive": 1.0}
        self.document_encoder: Callable[[list[dict]], Tensor] | None = None
        self._text_cache: dict[str, Tensor] = {}  # frozen text tower: caption -> features
        self._cache_stamp: tuple = ()  # the weights the cache was computed with
        self._apply_train_modes()

    def _apply_train_modes(self) -> None:
        if self.config.text.train == "head":
            self.text_encoder.requires_grad_(False)
        if self.config.image.train == "head":
            self.image_encoder.requires_grad_(False)
        if self.document_tower is not None and self.config.document.train == "head":
            self.document_tower.requires_grad_(False)
        self._text_cache.clear()

    def on_phase_start(self, active: set[str]) -> None:
        # after the curriculum's freeze plan, which unfreezes the whole family
        self._apply_train_modes()

    def sample_decoder(self):
        c = self.config
        return batch_codec.decoder(c.resolution, c.image_mean, c.image_std,
                                   documents=self.document_tower is not None)

    def required_fields(self) -> dict[str, tuple[str, ...]]:
        if self.document_tower is not None:
            return batch_codec.FIELDS_WITH_DOCUMENTS
        return batch_codec.FIELDS

    collate = staticmethod(batch_codec.collate)

    # ---- encoders -------------------------------------------------------------------
    def _text_features(self, texts: list[str], max_length: int | None = None) -> Tensor:
        tok = self.tokenizer(texts, padding=True, truncation=True,
                             max_length=max_length or self.config.text.max_length,
                             return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items()}
        return networks.text_features(self.text_encoder, tok["input_ids"], tok["attention_mask"])

    def encode_text(self, texts: list[str], max_length: int | None = None) -> Tensor:
        """-> (N, embed_dim) unit vectors. A frozen text tower runs in eval mode without
        gradients, and its features are cached per string (captions repeat a lot).
        max_length: tokens kept (default text.max_length; document summaries are longer)."""
        if any(p.requires_grad for p in self.text_encoder.parameters()):
            features = self._text_features(texts, max_length)
        else:
            # any in-place write (load_state_dict, a moved module) bumps a version or a
            # pointer: the cached features belong to other weights then
            stamp = tuple((p.data_ptr(), p._version) for p in self.text_encoder.parameters())
            if stamp != self._cache_stamp:
                self._text_cache.clear()
                self._cache_stamp = stamp
            missing = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
            if missing:
                was = self.text_encoder.training
                self.text_encoder.eval()
                with torch.no_grad():
                    new = self._text_features(missing, max_length)
                self.text_encoder.train(was)
                if len(self._text_cache) > 100_000:
                    self._text_cache.clear()
                self._text_cache.update(zip(missing, new, strict=True))
            features = torch.stack([self._text_cache[t] for t in texts]).to(self.device)
        return F.normalize(self.text_proj(features), dim=-1)

    def encode_images(self, pixels: Tensor) -> Tensor:
        features = self.image_encoder(pixels.to(self.device))
        return F.normalize(self.image_proj(features), dim=-1)

    def pixels(self, images: Sequence[Image.Image]) -> Tensor:
        c = self.config
        return torch.stack([batch_codec.to_pixels(im, c.resolution, c.image_mean, c.image_std)
                            for im in images])

    def encode_documents(self, documents: list[dict]) -> Tensor:
        if self.document_encoder is not None:
            return self.document_encoder(documents)
        if self.document_tower is not None:
            return F.normalize(self.document_proj(self.document_tower(documents)), dim=-1)
        # no document tower configured: the page's words as text
        return self.encode_text([" ".join(d["words"]) for d in documents])

    def encode_summaries(self, texts: list[str]) -> Tensor:
        """The texts paired with documents (longer than captions)."""
        return self.encode_text(texts, self.config.document.text_max_length)

    def scale(self) -> Tensor:
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    # ---- training -------------------------------------------------------------------
    def losses(self, batch: dict, active: set[str], generator: torch.Generator) -> dict[str, Tensor]:
        # Under DDP every rank joins each loss's gather, even with none of that kind in
        # its share of a mixed batch (then with zero rows).
        out: dict[str, Tensor] = {}
        if "contrastive" in active and ("pixels" in batch or distributed()):
            if "pixels" in batch:
                image_emb = self.encode_images(batch["pixels"])
                text_emb = self.encode_text(batch["captions"])
            else:
                image_emb, text_emb = self._no_rows(self.image_proj), self._no_rows(self.text_proj)
            out["contrastive"] = contrastive_loss(image_emb, text_emb, self.scale())
        docs = batch.get("documents") or []
        if "document_contrastive" in active and docs and self.document_tower is None:
            raise ValueError("retrieval.document_contrastive needs the document tower: set "
                             "model.retrieval.document.enabled=true (or drop the loss from "
                             "the phase's loss_weights)")
        if "document_contrastive" in active and (docs or (distributed() and
                                                          self.document_tower is not None)):
            if docs:
                doc_emb = self.encode_documents(docs)
                text_emb = self.encode_summaries(batch["summaries"])
            else:
                doc_emb, text_emb = self._no_rows(self.document_proj), self._no_rows(self.text_proj)
            out["document_contrastive"] = contrastive_loss(doc_emb, text_emb, self.scale())
        return out

    @staticmethod
    def _no_rows(proj: nn.Linear) -> Tensor:
        """(0, embed_dim) embeddings tied to the graph (backward reaches the projection)."""
        return proj.weight.new_zeros(0, proj.out_features) + 0 * proj.weight.sum()

    # ---- queries --------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, queries: Query | list[Query]) -> Tensor:
        """Texts, PIL images and documents (dicts with "words") -> (N, embed_dim) unit
        vectors in one space, in the order given."""
        queries = queries if isinstance(queries, list) else [queries]
        was = self.training
        self.eval()
        out = torch.empty(len(queries), self.config.embed_dim)
        groups: dict[str, list[int]] = {"text": [], "image": [], "document": []}
        for i, q in enumerate(queries):
            groups[modality_of(q)].append(i)
        for kind, idx in groups.items():
            if not idx:
                continue
            items = [queries[i] for i in idx]
            if kind == "text":
                vectors = self.encode_text(items)
            elif kind == "image":
                vectors = self.encode_images(self.pixels(items))
            else:
                vectors = self.encode_documents(items)
            out[idx] = vectors.float().cpu()
        self.train(was)
        return out

    def search(self, index_vectors, metadata: list[dict], query: Query,
               top_k: int = 10) -> list[tuple[str, str, float]]:
        """Ranks a gallery of any modalities for one query -> [(id, modality, score)],
        best first. index_vectors: an (N, D) array/tensor of unit vectors, a FAISS
        inner-product index or an mmtrain.rag VectorIndex whose ids are row numbers;
        metadata[i] holds "id" and "modality" of row i."""
        return [(h["id"], h["modality"], h["score"])
                for h in self.ranked(index_vectors, metadata, query, top_k)]

    def ranked(self, index_vectors, metadata: list[dict], query: Query,
               top_k: int = 10) -> list[dict]:
        """`search` with every hit's whole record: [{rank, id, modality, source, score, and
        the rest of metadata[row]}], best first, one list across modalities. `source`
        is metadata's "source" ("" when absent)."""
        q = self.embed(query).numpy().astype(np.float32)
        top_k = min(top_k, len(metadata))
        if hasattr(index_vectors, "search"):  # a faiss index
            scores, rows = index_vectors.search(q, top_k)
            scores, rows = scores[0], rows[0]
        else:
            sims = torch.as_tensor(np.asarray(index_vectors, np.float32)) @ torch.from_numpy(q[0])
            scores, rows = (t.numpy() for t in sims.topk(top_k))
        hits = [(r, s) for r, s in zip(rows.tolist(), scores.tolist(), strict=True) if r >= 0]
        return [{**metadata[r], "rank": rank, "id": str(metadata[r]["id"]),
                 "modality": metadata[r]["modality"],
                 "source": metadata[r].get("source", ""), "score": float(s)}
                for rank, (r, s) in enumerate(hits, start=1)]

    # ---- evaluation -----------------------------------------------------------------
    def eval_scenes(self, seed: int) -> tuple[list, list[str], list[Image.Image]]:
        """Held-out scenes drawn from their own random stream (not the shard writer's),
        captions rotating through the templates as in the shards."""
        rng = np.random.default_rng([seed, 0xE7A1])
        scenes = [sample_scene(rng) for _ in range(self.config.eval_samples)]
        captions = [s.caption(i % len(CAPTION_TEMPLATES)) for i, s in enumerate(scenes)]
        images = [render_scene(s, self.config.resolution) for s in scenes]
        return scenes, captions, images

    @torch.no_grad()
    def evaluate(self, seed: int) -> tuple[dict[str, float], dict]:
        scenes, captions, images = self.eval_scenes(seed)
        relevant = relevance(scenes, captions)
        text_emb, image_emb = self.embed(captions), self.embed(images)
        metrics = M.retrieval_metrics(text_emb, image_emb, relevant)
        metrics["logit_scale"] = float(self.scale())
        panel = query_panel(captions[:4], text_emb[:4] @ image_emb.T, images, relevant[:4])
        if self.document_tower is not None:
            metrics |= self.evaluate_documents(seed)
        return metrics, {"queries": panel}

    def eval_documents(self, seed: int) -> list[dict]:
        return doc_tower.eval_pages(seed, self.config.document)

    @torch.no_grad()
    def evaluate_documents(self, seed: int) -> dict[str, float]:
        """Held-out synthetic pages against their summaries: d2t / t2d recall@K, nDCG@10.
        A summary is relevant to the pages that give the very same summary."""
        pages = self.eval_documents(seed)
        texts = [doc_tower.summary(p) for p in pages]
        relevant = torch.tensor([[a == b for b in texts] for a in texts])
        was = self.training
        self.eval()
        doc_emb = self.encode_documents(pages).float().cpu()
        text_emb = self.encode_summaries(texts).float().cpu()
        self.train(was)
        m = M.retrieval_metrics(text_emb, doc_emb, relevant)
        out = {k.replace("t2i_", "t2d_").replace("i2t_", "d2t_"): v for k, v in m.items()
               if k != "chance_recall@1"}
        out["document_chance_recall@1"] = m["chance_recall@1"]
        return out


def modality_of(query: Query) -> str:
    if isinstance(query, str):
        return "text"
    if isinstance(query, Image.Image):
        return "image"
    if isinstance(query, dict) and "words" in query:
        return "document"
    raise TypeError(f"a query is a str, a PIL image or a document dict with 'words'; "
                    f"got {type(query).__name__}")


def relevance(scenes: list, captions: list[str]) -> Tensor:
    """(texts, images) bool: caption t describes image i when scene i, written with
    caption t's template, gives the very same caption, i.e. it agrees on every
    attribute the caption names (several scenes share a caption)."""
    templates = [i % len(CAPTION_TEMPLATES) for i in range(len(captions))]
    return torch.tensor([[s.caption(t) == c for s in scenes]
                         for c, t in zip(captions, templates, strict=True)])


def query_panel(queries: list[str], scores: Tensor, images: list[Image.Image],
                relevant: Tensor, k: int = 5) -> Image.Image:
    """One row per text query: the caption, then its top-k images, framed green when
    relevant and red when not."""
    from PIL import ImageDraw

    side, margin, pad = 64, 260, 3
    panel = Image.new("RGB", (margin + k * (side + 2 * pad), len(queries) * (side + 2 * pad)),
                      "white")
    draw = ImageDraw.Draw(panel)
    for row, (text, s, rel) in enumerate(zip(queries, scores, relevant, strict=True)):
        y = row * (side + 2 * pad)
        lines = textwrap.wrap(text, 40)[:3]  # ~6 px a character at PIL's default font
        for i, line in enumerate(lines):
            draw.text((4, y + side // 2 - 7 * len(lines) + 14 * i), line, fill="black")
        for col, idx in enumerate(s.topk(min(k, len(images))).indices.tolist()):
            x = margin + col * (side + 2 * pad)
            draw.rectangle((x, y, x + side + 2 * pad - 1, y + side + 2 * pad - 1),
                           fill=(40, 170, 70) if rel[idx] else (220, 40, 40))
            panel.paste(images[idx].resize((side, side), Image.NEAREST), (x + pad, y + pad))
    return panel
