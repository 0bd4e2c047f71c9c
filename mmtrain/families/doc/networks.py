"""Builds the document networks from config: stock transformers classes at the configured
sizes with random init, or loaded from local folders (`pretrained_path`,
`reader_pretrained_path`), never downloaded.

Both models read text through one byte-level BPE trained on the synthetic world's words
(in about 0.1 s): LayoutLMv3 needs a RoBERTa-style BPE (merges as tuples), and the
reader's decoder writes JSON, whose punctuation pieces (`{"`, `":`, `"}`) become tokens
too. Any other text still tokenizes through the 256 byte symbols, never to an unknown.
"""

from __future__ import annotations

import json

from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    DonutImageProcessorPil,
    DonutSwinConfig,
    DonutSwinModel,
    LayoutLMv3Config,
    LayoutLMv3ForTokenClassification,
    LayoutLMv3ImageProcessorPil,
    LayoutLMv3Tokenizer,
    MBartConfig,
    MBartForCausalLM,
    RobertaTokenizer,
    VisionEncoderDecoderModel,
)

from mmtrain.data.synth import documents
from mmtrain.families.doc.config import DocConfig

# FUNSD's token-classification scheme: `other` words are O, entities are B-/I- tagged.
ENTITY_TYPES = ("HEADER", "QUESTION", "ANSWER")
BIO_LABELS = ("O", *(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I")))
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
COMMON_WORDS = ("form page date name address total amount signature phone email number no "
                "of the and for to by from yes other notes comments description item").split()


def world_texts() -> list[str]:
    """Every string the synthetic forms draw, and the fields JSON the reader writes."""
    texts: list[str] = list(COMMON_WORDS)
    for form in documents.FORMS.values():
        texts += [*form["headers"], *form["other"], *(f"{q}:" for q in form["questions"])]
        texts.append(json.dumps({q: "x" for q in form["questions"]}))
    for names in (documents._FIRST, documents._LAST, documents._CITIES, documents._COUNTRIES):
        texts += list(names)
    return texts


def _bpe(texts: list[str], vocab_size: int = 2000) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE trained on the world's texts (each also with a leading space, as
    LayoutLMv3 sees words): the vocabulary is large enough for every known word to end as
    one token. Hand-made merge chains would collide (BPE applies merges by rank)."""
    from tokenizers import Tokenizer, models, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, show_progress=False,
                                  special_tokens=list(SPECIALS),
                                  initial_alphabet=ByteLevel.alphabet())
    tok.train_from_iterator([v for t in texts for v in (t, " " + t)], trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def build_tokenizers(cfg: DocConfig) -> tuple[LayoutLMv3Tokenizer, RobertaTokenizer]:
    """-> (layout tokenizer: words + boxes, reader tokenizer: plain text)."""
    layout = reader = None
    if cfg.pretrained_path:
        layout = LayoutLMv3Tokenizer.from_pretrained(cfg.pretrained_path, local_files_only=True)
    if cfg.reader_pretrained_path:
        from transformers import AutoTokenizer

        reader = AutoTokenizer.from_pretrained(cfg.reader_pretrained_path, local_files_only=True)
    if layout is None or reader is None:
        vocab, merges = _bpe(world_texts())
        special = dict(bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                       cls_token="<s>", sep_token="</s>", mask_token="<mask>")
        layout = layout or LayoutLMv3Tokenizer(
            vocab=dict(vocab), merges=list(merges), model_max_length=cfg.layout.max_length,
            **special)
        reader = reader or RobertaTokenizer(
            vocab=dict(vocab), merges=list(merges), model_max_length=cfg.reader.max_length,
            **special)
    return layout, reader


def build_layout(cfg: DocConfig, tokenizer: LayoutLMv3Tokenizer) -> LayoutLMv3ForTokenClassification:
    labels = {"id2label": dict(enumerate(BIO_LABELS)),
              "label2id": {k: i for i, k in enumerate(BIO_LABELS)}}
    if cfg.pretrained_path:
        # a base checkpoint has no (or another) classifier head: a fresh 7-way one
        return LayoutLMv3ForTokenClassification.from_pretrained(
            cfg.pretrained_path, num_labels=len(BIO_LABELS), ignore_mismatched_sizes=True,
            local_files_only=True, **labels)
    c = cfg.layout
    if 4 * c.coordinate_size + 2 * c.shape_size != c.hidden_size:
        raise ValueError(f"doc.layout: 4*coordinate_size + 2*shape_size must equal hidden_size "
                         f"({4 * c.coordinate_size + 2 * c.shape_size} != {c.hidden_size})")
    return LayoutLMv3ForTokenClassification(LayoutLMv3Config(
        vocab_size=len(tokenizer), hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads, intermediate_size=c.intermediate_size,
        input_size=c.input_size, patch_size=c.patch_size, coordinate_size=c.coordinate_size,
        shape_size=c.shape_size, max_position_embeddings=c.max_length + 2,
        max_2d_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        num_labels=len(BIO_LABELS), **labels,
    ))


def build_layout_image_processor(cfg: DocConfig, input_size: int) -> LayoutLMv3ImageProcessorPil:
    if cfg.pretrained_path:
        return LayoutLMv3ImageProcessorPil.from_pretrained(
            cfg.pretrained_path, apply_ocr=False, local_files_only=True)
    return LayoutLMv3ImageProcessorPil(apply_ocr=False,
                                       size={"height": input_size, "width": input_size})


def build_reader(cfg: DocConfig, tokenizer) -> VisionEncoderDecoderModel:
    if cfg.reader_pretrained_path:
        model = VisionEncoderDecoderModel.from_pretrained(cfg.reader_pretrained_path,
                                                          local_files_only=True)
    else:
        r = cfg.reader
        encoder = DonutSwinModel(DonutSwinConfig(
            image_size=list(r.image_size), patch_size=r.patch_size, embed_dim=r.embed_dim,
            depths=list(r.depths), num_heads=list(r.num_heads), window_size=r.window_size))
        decoder = MBartForCausalLM(MBartConfig(
            vocab_size=len(tokenizer), d_model=r.d_model, decoder_layers=r.decoder_layers,
            encoder_layers=r.decoder_layers,  # must match: the cache indexes by encoder_layers
            decoder_attention_heads=r.decoder_heads, encoder_attention_heads=r.decoder_heads,
            decoder_ffn_dim=r.decoder_ffn_dim, encoder_ffn_dim=r.decoder_ffn_dim,
            max_position_embeddings=r.max_length + 2, is_decoder=True, add_cross_attention=True,
            scale_embedding=True, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.bos_token_id))
        model = VisionEncoderDecoderModel(encoder=encoder, decoder=decoder)
    # generation and the label shift need both (platform-facts)
    model.config.decoder_start_token_id = tokenizer.bos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.decoder_start_token_id = tokenizer.bos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def build_reader_image_processor(cfg: DocConfig) -> DonutImageProcessorPil:
    if cfg.reader_pretrained_path:
        return DonutImageProcessorPil.from_pretrained(cfg.reader_pretrained_path,
                                                      local_files_only=True)
    height, width = cfg.reader.image_size
    # a plain resize: synthetic and FUNSD pages are upright, no thumbnail/pad games
    return DonutImageProcessorPil(size={"height": height, "width": width},
                                  do_align_long_axis=False, do_thumbnail=False, do_pad=False)
