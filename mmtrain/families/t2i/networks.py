"""Builds the text-to-image networks from config: stock diffusers/transformers classes,
random init at the configured sizes, or loaded from a local diffusers pipeline folder."""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from mmtrain.data.synth import scenes
from mmtrain.families.shared.tokenizers import clip_tokenizer, words_of
from mmtrain.families.t2i.config import T2IConfig

SAMPLERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm_solver": DPMSolverMultistepScheduler}
# Everyday words next to the synthetic world's, so user prompts rarely fall back to
# byte-level pieces.
COMMON_WORDS = (
    "a an the of in on at with and or to from by for is are this that photo picture image "
    "drawing painting render small large big tiny huge left right top bottom center middle "
    "shape object dark light bright pale white black gray grey red green blue yellow purple "
    "orange pink brown cyan circle square triangle diamond star cube sphere cylinder torus "
    "background foreground style photographic illustration 3d model"
).split()


@dataclass
class Networks:
    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    vae: AutoencoderKL  # or a VQ autoencoder (autoencoders/)
    unet: UNet2DConditionModel
    noise_scheduler: DDPMScheduler
    latent_shape: tuple[int, int, int]  # (channels, size, size) of one latent


def build_networks(cfg: T2IConfig) -> Networks:
    """Every network of the family, in one fixed order (the same weights for the same seed),
    sized to fit each other: the UNet reads the autoencoder's latents and attends to the
    text encoder's states."""
    tokenizer = build_tokenizer(cfg)
    text_encoder = build_text_encoder(cfg, len(tokenizer))
    vae = build_vae(cfg)
    latent_size = cfg.resolution // 2 ** (len(vae.config.block_out_channels) - 1)
    unet = build_unet(cfg, text_encoder.config.hidden_size, vae.config.latent_channels,
                      latent_size)
    return Networks(tokenizer, text_encoder, vae, unet, build_noise_scheduler(cfg),
                    (vae.config.latent_channels, latent_size, latent_size))


def build_tokenizer(cfg: T2IConfig) -> CLIPTokenizer:
    if cfg.tokenizer_path or cfg.pretrained_path:
        path = cfg.tokenizer_path or f"{cfg.pretrained_path}/tokenizer"
        return CLIPTokenizer.from_pretrained(path, local_files_only=True)
    texts = [scenes.Scene(c, s, z, p, b).caption(t) for c in scenes.COLOURS for s in scenes.SHAPES
             for z in scenes.SIZES for p in scenes.POSITIONS for b in scenes.BACKGROUNDS
             for t in range(len(scenes.CAPTION_TEMPLATES))]
    return clip_tokenizer(words_of(texts) | set(COMMON_WORDS), cfg.text_encoder.max_length)


def build_text_encoder(cfg: T2IConfig, vocab_size: int) -> CLIPTextModel:
    if cfg.pretrained_path:
        return CLIPTextModel.from_pretrained(cfg.pretrained_path, subfolder="text_encoder",
                                             local_files_only=True)
    te = cfg.text_encoder
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=te.hidden_size, num_hidden_layers=te.num_layers,
        num_attention_heads=te.num_heads, intermediate_size=te.intermediate_size,
        max_position_embeddings=te.max_length, hidden_act=te.hidden_act,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    ))


def build_vae(cfg: T2IConfig) -> AutoencoderKL:
    """AutoencoderKL, or a VQ autoencoder for autoencoder.kind vq/vq2 (autoencoders/)."""
    from mmtrain.families.t2i import autoencoders

    if cfg.pretrained_path:  # any kind, by the folder's config
        return autoencoders.load(f"{cfg.pretrained_path}/vae")
    if cfg.autoencoder.kind != "kl":
        return autoencoders.build(cfg)
    ae = cfg.autoencoder
    n = len(ae.block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=ae.latent_channels,
        down_block_types=["DownEncoderBlock2D"] * n, up_block_types=["UpDecoderBlock2D"] * n,
        block_out_channels=list(ae.block_out_channels), layers_per_block=ae.layers_per_block,
        norm_num_groups=ae.norm_num_groups, sample_size=cfg.resolution,
        mid_block_add_attention=ae.mid_block_attention,
        scaling_factor=ae.scaling_factor or 1.0,
    )


def build_unet(cfg: T2IConfig, cross_attention_dim: int, latent_channels: int,
               latent_size: int) -> UNet2DConditionModel:
    if cfg.pretrained_path:
        return UNet2DConditionModel.from_pretrained(cfg.pretrained_path, subfolder="unet",
                                                    local_files_only=True)
    u = cfg.unet
    return UNet2DConditionModel(
        sample_size=latent_size, in_channels=latent_channels, out_channels=latent_channels,
        block_out_channels=list(u.block_out_channels), layers_per_block=u.layers_per_block,
        down_block_types=list(u.down_block_types), up_block_types=list(u.up_block_types),
        cross_attention_dim=cross_attention_dim, attention_head_dim=u.attention_head_dim,
        norm_num_groups=u.norm_num_groups, use_linear_projection=u.use_linear_projection,
        addition_embed_type=u.addition_embed_type,
        # the pooled-text embedding attends with heads of the UNet's head size
        addition_embed_type_num_heads=max(1, cross_attention_dim // _head_dim(u.attention_head_dim)),
    )


def _head_dim(attention_head_dim) -> int:
    return attention_head_dim if isinstance(attention_head_dim, int) else attention_head_dim[0]


def build_noise_scheduler(cfg: T2IConfig) -> DDPMScheduler:
    if cfg.pretrained_path:
        return DDPMScheduler.from_pretrained(cfg.pretrained_path, subfolder="scheduler",
                                             local_files_only=True)
    n = cfg.noise
    return DDPMScheduler(num_train_timesteps=n.num_train_timesteps, steps_offset=1,
                         beta_schedule=n.beta_schedule, prediction_type=n.prediction_type)


def build_sampler(cfg: T2IConfig, noise_scheduler: DDPMScheduler, name: str | None = None):
    """The inference scheduler (`name`, default cfg.sampler.name), sharing the training
    noise schedule."""
    name = name or cfg.sampler.name
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    return SAMPLERS[name].from_config(noise_scheduler.config)
