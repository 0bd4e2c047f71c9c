"""Builds the BLIP-2 networks from config: a stock Blip2ForConditionalGeneration (ViT ->
Q-Former with learnable queries -> OPT decoder) with random init at the configured sizes,
or loaded from a local transformers folder; plus the stage-1 heads (Q-Former text
embeddings, contrastive projections, matching head) that share its Q-Former."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from torch import nn
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipImageProcessorPil,
    OPTConfig,
    PreTrainedTokenizerFast,
)
from transformers.models.blip_2.modeling_blip_2 import Blip2TextEmbeddings

from mmtrain.data.synth import scenes
from mmtrain.families.shared.tokenizers import words_of
from mmtrain.families.vqa.config import VQAConfig

BOS, PAD, UNK, IMAGE = "</s>", "<pad>", "<unk>", "<image>"  # OPT's conventions + BLIP-2's
COMMON_WORDS = (
    "a an the of in on at with and or to from by for is are what where which how many "
    "colour color shape it this that photo picture image question answer context yes no "
    "large small big left right top bottom center middle background foreground"
).split()


def world_texts() -> list[str]:
    """Every caption, question and answer of the synthetic scenes world."""
    texts = []
    for c in scenes.COLOURS:
        for s in scenes.SHAPES:
            for z in scenes.SIZES:
                for p in scenes.POSITIONS:
                    for b in scenes.BACKGROUNDS:
                        scene = scenes.Scene(c, s, z, p, b)
                        texts += [scene.caption(t) for t in range(len(scenes.CAPTION_TEMPLATES))]
    texts += [q for qa in scenes.Scene("red", "circle", "small", "left", "gray").questions()
              for q in qa.values()]
    return texts


def build_tokenizer(max_length: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2/OPT format) where every known word, with and
    without its leading space, is one token; other text falls back to byte pieces (never
    unknown). Built deterministically from the word list, no training, no download."""
    base = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate([PAD, BOS, UNK] + base)}
    merges: list[tuple[str, str]] = []
    words = words_of(world_texts()) | set(COMMON_WORDS)
    for word in sorted(words | {w.capitalize() for w in words}):
        for form in (word, "Ġ" + word):
            current = form[0]
            for ch in form[1:]:
                if current + ch not in vocab:
                    merges.append((current, ch))
                    vocab[current + ch] = len(vocab)
                current += ch
    # ignore_merges: a pre-token found whole in the vocabulary is one token, whatever the
    # merge ranks of its pieces (the chains of different words would otherwise interfere)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=UNK, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=PAD, unk_token=UNK,
        model_max_length=max_length, padding_side="left")


def build_processor(cfg: VQAConfig) -> Blip2Processor:
    if cfg.pretrained_path:
        return Blip2Processor.from_pretrained(cfg.pretrained_path, local_files_only=True)
    size = cfg.vision.image_size
    images = BlipImageProcessorPil(size={"height": size, "width": size}, do_convert_rgb=True)
    tokenizer = build_tokenizer(cfg.language.max_length)
    # adds <image> to the tokenizer: the LM reads the queries in its place
    return Blip2Processor(images, tokenizer, num_query_tokens=cfg.qformer.num_query_tokens)


def build_model(cfg: VQAConfig, processor: Blip2Processor) -> Blip2ForConditionalGeneration:
    if cfg.pretrained_path:
        return Blip2ForConditionalGeneration.from_pretrained(cfg.pretrained_path,
                                                             local_files_only=True)
    tok = processor.tokenizer
    v, q, lm = cfg.vision, cfg.qformer, cfg.language
    text = OPTConfig(
        vocab_size=len(tok), hidden_size=lm.hidden_size, num_hidden_layers=lm.num_layers,
        num_attention_heads=lm.num_heads, ffn_dim=lm.ffn_dim, word_embed_proj_dim=lm.hidden_size,
        max_position_embeddings=lm.max_length, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, dropout=0.0,
    )
    config = Blip2Config(
        vision_config=dict(image_size=v.image_size, patch_size=v.patch_size,
                           hidden_size=v.hidden_size, num_hidden_layers=v.num_layers,
                           num_attention_heads=v.num_heads, intermediate_size=v.intermediate_size),
        qformer_config=dict(vocab_size=len(tok), hidden_size=q.hidden_size,
                            num_hidden_layers=q.num_layers, num_attention_heads=q.num_heads,
                            intermediate_size=q.intermediate_size,
                            cross_attention_frequency=q.cross_attention_frequency,
                            encoder_hidden_size=v.hidden_size, pad_token_id=tok.pad_token_id,
                            max_position_embeddings=q.max_text_length,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                            use_qformer_text_input=True),  # stage 1's text path
        text_config=text.to_dict(), num_query_tokens=q.num_query_tokens,
        image_token_index=tok.convert_tokens_to_ids(IMAGE), image_text_hidden_size=q.embed_dim,
    )
    model = Blip2ForConditionalGeneration(config)
    # transformers leaves the learnable queries at zero: identical queries get identical
    # gradients and never differ; BLIP-2 draws them from N(0, 0.02)
    with torch.no_grad():
        model.query_tokens.normal_(0.0, config.qformer_config.initializer_range)
    gen = model.generation_config
    gen.max_new_tokens, gen.do_sample, gen.num_beams = cfg.max_new_tokens, False, 1
    gen.eos_token_id, gen.pad_token_id, gen.bos_token_id = (
        tok.eos_token_id, tok.pad_token_id, tok.bos_token_id)
    return model


class Stage1Heads(nn.Module):
    """What BLIP-2's stage 1 adds around the shared Q-Former (the names and shapes of
    Blip2ForImageTextRetrieval's, so the two assemble into one): text embeddings for
    the Q-Former's text path, image/text projections for the contrastive loss, the
    image-text matching head, and the learnable temperature."""

    def __init__(self, config: Blip2Config) -> None:
        super().__init__()
        qcfg = config.qformer_config
        self.embeddings = Blip2TextEmbeddings(qcfg)
        nn.init.normal_(self.embeddings.word_embeddings.weight, std=0.02)
        nn.init.normal_(self.embeddings.position_embeddings.weight, std=0.02)
        self.vision_projection = nn.Linear(qcfg.hidden_size, config.image_text_hidden_size)
        self.text_projection = nn.Linear(qcfg.hidden_size, config.image_text_hidden_size)
        self.itm_head = nn.Linear(qcfg.hidden_size, 2)
        self.log_temp = nn.Parameter(torch.tensor(0.07).log())  # BLIP-2's initial 0.07
