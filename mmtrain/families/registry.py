"""The family registry: name -> config schema, LightningModule, data fields, losses.

Modules are imported lazily by dotted path so that listing families or validating a
config does not pay for importing diffusers/transformers.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from mmtrain.families.doc.config import DocConfig
from mmtrain.families.restore.config import RestoreConfig
from mmtrain.families.retrieval.config import RetrievalConfig
from mmtrain.families.t2i.config import T2IConfig
from mmtrain.families.vqa.config import VQAConfig


@dataclass(frozen=True)
class FamilySpec:
    name: str
    config_cls: type
    module_path: str  # "package.module:ClassName" of the LightningModule
    fields: tuple[str, ...]  # sample fields the family's batch decoder needs
    losses: tuple[str, ...]  # loss names a phase can weight as "<family>.<loss>"
    description: str

    def module_cls(self) -> type:
        module, name = self.module_path.split(":")
        return getattr(importlib.import_module(module), name)


FAMILIES: dict[str, FamilySpec] = {
    "t2i": FamilySpec(
        name="t2i",
        config_cls=T2IConfig,
        module_path="mmtrain.families.t2i.module:TextToImage",
        fields=("image", "caption"),
        losses=("autoencoder", "diffusion", "autoencoder_perceptual", "autoencoder_adversarial",
                "adversarial"),
        description="text-to-image latent diffusion (CLIP text encoder, UNet, autoencoder)",
    ),
    "retrieval": FamilySpec(
        name="retrieval",
        config_cls=RetrievalConfig,
        module_path="mmtrain.families.retrieval.module:Retrieval",
        fields=("image", "caption"),
        losses=("contrastive", "document_contrastive"),
        description="cross-modal retrieval: CLIP-style dual encoder (MiniLM text tower, "
                    "image tower), one ranked list across text, images and documents",
    ),
    "doc": FamilySpec(
        name="doc",
        config_cls=DocConfig,
        module_path="mmtrain.families.doc.module:Document",
        fields=("image", "annotation"),
        losses=("entities", "reader"),
        description="document intelligence: LayoutLMv3 FUNSD entity tagging, OCR-free "
                    "Donut-like reader, key-value/section parser (json, xml, csv), PDF input",
    ),
    "vqa": FamilySpec(
        name="vqa",
        config_cls=VQAConfig,
        module_path="mmtrain.families.vqa.module:VisualQA",
        fields=("image", "caption", "questions"),
        losses=("itc", "itm", "caption", "vqa"),
        description="visual question answering and captioning, BLIP-2 design (ViT, "
                    "Q-Former with learnable queries, OPT decoder)",
    ),
    "restore": FamilySpec(
        name="restore",
        config_cls=RestoreConfig,
        module_path="mmtrain.families.restore.module:Restore",
        fields=("image",),
        losses=("pixel", "perceptual", "adversarial"),
        description="image restoration: denoising, super-resolution x2/x4, inpainting "
                    "(transformers Swin2SR, PatchGAN; degradations made on the fly)",
    ),
}
