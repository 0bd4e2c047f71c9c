"""The VQA family's servable artifact: a transformers folder (Blip2ForConditionalGeneration
+ Blip2Processor) that `from_pretrained` loads offline with no mmtrain code."""

from __future__ import annotations

from pathlib import Path

from mmtrain.families.vqa.module import VisualQA


def export(module: VisualQA, out: Path) -> dict:
    tok = module.tokenizer
    # padding/truncation used in training stick to the fast backend and would be written
    # into tokenizer.json: reset them so the bundle depends on the weights alone
    tok.backend_tokenizer.no_padding()
    tok.backend_tokenizer.no_truncation()
    module.model.save_pretrained(out, safe_serialization=True)
    module.processor.save_pretrained(out)
    cfg = module.model.config
    return {
        "format": "transformers",
        "model_class": "Blip2ForConditionalGeneration",
        "processor_class": "Blip2Processor",
        "language_model": cfg.text_config.model_type,
        "num_query_tokens": cfg.num_query_tokens,
        "image_size": cfg.vision_config.image_size,
        "vqa_prompt": module.config.vqa_prompt,
        "caption_prompt": module.config.caption_prompt,
        "max_new_tokens": module.config.max_new_tokens,
    }
