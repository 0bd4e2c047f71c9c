"""Typed config of the text-to-image family (conf/model/t2i/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmtrain.config.schema import bounded, choice
from mmtrain.families.shared.adversarial_config import AdversarialConfig


@dataclass
class TextEncoderConfig:
    hidden_size: int = bounded(64, ge=8)
    num_layers: int = bounded(2, ge=1)
    num_heads: int = bounded(4, ge=1)
    intermediate_size: int = bounded(128, ge=8)
    max_length: int = bounded(77, ge=8)
    hidden_act: str = choice("quick_gelu", "quick_gelu", "gelu")


@dataclass
class AutoencoderConfig:
    # kl: AutoencoderKL; vq: a VQ autoencoder (diffusers' VQModel); vq2: the two-level
    # VQ-VAE-2 (autoencoders/models.py). Losses and kinds: docs/t2i.md "Autoencoders".
    kind: str = choice("kl", "kl", "vq", "vq2")
    num_embeddings: int = bounded(256, ge=2)  # vq, vq2: codebook size (per level for vq2)
    # the `autoencoder_perceptual` loss's feature network: a local torchvision vgg19 state
    # dict, else a fixed random-feature network (mmtrain/families/shared/perceptual.py)
    perceptual_weights_path: str | None = None
    # VGG-19 layer -> weight (with weights): LPIPS' taps, the ReLU output of each block
    perceptual_layers: dict[str, float] = field(default_factory=lambda: {
        "relu1_2": 0.2, "relu2_2": 0.2, "relu3_4": 0.2, "relu4_4": 0.2, "relu5_4": 0.2})
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64])
    layers_per_block: int = bounded(1, ge=1)
    latent_channels: int = bounded(4, ge=1)
    norm_num_groups: int = bounded(8, ge=1)
    mid_block_attention: bool = True
    # Latents are multiplied by this before diffusion; None measures it on the first
    # training batch of the diffusion phase (1 / std of the latents), as SD did offline.
    scaling_factor: float | None = None
    kl_weight: float = bounded(1e-6, ge=0)


@dataclass
class UNetConfig:
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = bounded(1, ge=1)
    attention_head_dim: Any = 8  # an int, or one per block (SD 2.x: [5, 10, 20, 20])
    norm_num_groups: int = bounded(8, ge=1)
    use_linear_projection: bool = False
    down_block_types: list[str] = field(
        default_factory=lambda: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    )
    up_block_types: list[str] = field(
        default_factory=lambda: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
    )
    # "text" adds the pooled prompt to the time embedding: global attributes (colour,
    # style) then reach every block, not only the cross-attention ones.
    addition_embed_type: str | None = "text"


@dataclass
class NoiseConfig:
    num_train_timesteps: int = bounded(1000, ge=2)
    beta_schedule: str = choice("squaredcos_cap_v2", "linear", "scaled_linear", "squaredcos_cap_v2")
    prediction_type: str = choice("epsilon", "epsilon", "v_prediction")
    snr_gamma: float | None = 5.0  # min-SNR loss weighting; None: plain MSE


@dataclass
class SamplerConfig:
    name: str = choice("dpm_solver", "ddpm", "ddim", "dpm_solver")
    steps: int = bounded(20, ge=1)
    guidance_scale: float = bounded(3.0, ge=0)


@dataclass
class EMAConfig:
    """An exponential moving average of the UNet and text encoder, updated after every
    optimizer step of a phase that trains `diffusion`; sampling, validation and export
    use it. Warm-up: decay = min(decay, 1 - (1 + step)^-power) (diffusers' EMAModel)."""

    enabled: bool = True
    decay: float = bounded(0.999, ge=0, le=1)
    power: float = bounded(0.6666666, gt=0)


@dataclass
class RAGConfig:
    """Retrieval-augmented conditioning (docs/t2i.md "RAG conditioning"): the prompt's top_k
    passages from a knowledge base, each encoded by the text encoder, join the UNet's
    context after the prompt's tokens."""

    knowledge_base: str | None = None  # a mmtrain.rag KnowledgeBase folder; None: off
    knowledge_source: str | None = None  # only passages of this source; None: all sources
    top_k: int = bounded(2, ge=1)
    max_tokens_per_passage: int | None = None  # None: text_encoder.max_length
    dropout: float = bounded(0.1, ge=0, le=1)  # training: probability of no retrieval


@dataclass
class StyleConfig:
    """Style presets: `tokens` learned context tokens per name, selected at sampling."""

    names: list[str] = field(default_factory=list)  # e.g. [photographic, illustration, 3d-model]
    tokens: int = bounded(4, ge=1)
    # where a training sample's style comes from: its `style` member, else (synthetic
    # world) its scene background through this map, e.g. {white: illustration}
    from_background: dict[str, str] = field(default_factory=dict)
    # training: probability of the no-style tokens, so sampling without a style stays in
    # the training distribution
    dropout: float = bounded(0.1, ge=0, le=1)


@dataclass
class DiscriminatorConfig:
    """A multi-scale PatchGAN (mmtrain/families/shared/gan.py); built only when enabled."""

    enabled: bool = False
    num_scales: int = bounded(3, ge=1)
    channels: int = bounded(64, ge=4)
    num_layers: int = bounded(3, ge=1)


@dataclass
class T2IAdversarialConfig(AdversarialConfig):
    """The family's GAN parts (adversarial.py, docs/t2i.md "GAN parts"): the shared
    discriminator optimizer/schedule fields (both discriminators train with them), then
    the family's own."""

    # judges reconstructions in an autoencoder phase (`autoencoder_adversarial`)
    autoencoder_discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    disc_start: int = bounded(0, ge=0)  # phase updates before that loss and its D start
    adaptive_weight: bool = True  # VQGAN's ||grad rec|| / ||grad gan|| at the decoder's last layer
    # judges decoded x0 predictions in a diffusion phase (`adversarial`); guides sampling
    diffusion_discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    max_timestep: int = bounded(1000, ge=1)  # the `adversarial` loss and guidance: t < this
    guidance_scale: float = bounded(0.0, ge=0)  # discriminator guidance at sampling; 0: off


@dataclass
class MetricsConfig:
    """Validation metrics beyond prompt agreement (docs/t2i-metrics.md); never downloaded."""

    fid_feature_path: str | None = None  # a local transformers CLIP folder (or Inception .pth + torch-fidelity)
    clip_path: str | None = None  # a local transformers CLIP folder (model + processor)
    fid_reference: int = bounded(64, ge=2)  # synthetic scenes rendered as FID's real set


@dataclass
class CascadeStageConfig:
    """One super-resolution stage after the base image (cascade.py, docs/t2i.md
    "Cascaded refinement")."""

    # an exported restore bundle or a transformers Swin2SRForImageSuperResolution folder
    refiner: str = "???"
    scale: int = bounded(2, ge=1)  # must equal the refiner's upscale


@dataclass
class T2IConfig:
    resolution: int = bounded(32, ge=8)
    # A local diffusers pipeline folder (e.g. an SD-2.1 checkout): its components load
    # from there and the sizes below are ignored. Never downloaded.
    pretrained_path: str | None = None
    # A local tokenizer folder; None builds a CLIP BPE tokenizer from the data's captions.
    tokenizer_path: str | None = None
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    rag: RAGConfig = field(default_factory=RAGConfig)
    styles: StyleConfig = field(default_factory=StyleConfig)
    adversarial: T2IAdversarialConfig = field(default_factory=T2IAdversarialConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    caption_dropout: float = bounded(0.1, ge=0, le=1)  # enables classifier-free guidance
    sample_prompts: list[str] = field(
        default_factory=lambda: [f"a {c} shape" for c in
                                 ("red", "green", "blue", "yellow", "purple", "orange")]
    )
    samples_per_prompt: int = bounded(4, ge=1)
    # super-resolution stages after the base image, in order; [] = none. Refined images
    # come from generate(..., refine=True) and the exported bundle's refiners/.
    cascade: list[CascadeStageConfig] = field(default_factory=list)
    # Recompute the UNet's (and the autoencoder's, where diffusers supports it: kl) blocks
    # in backward instead of keeping their activations: less memory for more time
    # (measured in docs/t2i.md "Speed and memory").
    gradient_checkpointing: bool = False
