"""The document family's servable artifacts: two transformers folders.

    <out>/layout/  LayoutLMv3ForTokenClassification + LayoutLMv3Processor (tokenizer and
                   PIL image processor, apply_ocr off: words and boxes come with the page)
    <out>/reader/  VisionEncoderDecoderModel + DonutProcessor (image processor, tokenizer)

Both load offline with `from_pretrained` and no mmtrain code; they are also what
`pretrained_path` / `reader_pretrained_path` accept.
"""

from __future__ import annotations

from pathlib import Path

from transformers import DonutProcessor, LayoutLMv3Processor

from mmtrain.families.doc.module import Document


def export(module: Document, out: Path) -> dict:
    out = Path(out)
    for tok in (module.tokenizer, module.reader_tokenizer):
        # padding/truncation used in training lives on the backend and would be saved
        # into tokenizer.json: reset so the bytes depend on the vocabulary alone
        tok.backend_tokenizer.no_padding()
        tok.backend_tokenizer.no_truncation()
    module.layout.save_pretrained(out / "layout", safe_serialization=True)
    LayoutLMv3Processor(image_processor=module.layout_image_processor,
                        tokenizer=module.tokenizer).save_pretrained(out / "layout")
    module.reader.save_pretrained(out / "reader", safe_serialization=True)
    DonutProcessor(image_processor=module.reader_image_processor,
                   tokenizer=module.reader_tokenizer).save_pretrained(out / "reader")
    return {
        "format": "transformers",
        "layout": {"folder": "layout", "model_class": "LayoutLMv3ForTokenClassification",
                   "processor_class": "LayoutLMv3Processor",
                   "labels": list(module.layout.config.id2label.values()),
                   "input_size": module.layout.config.input_size, "box_scale": 1000},
        "reader": {"folder": "reader", "model_class": "VisionEncoderDecoderModel",
                   "processor_class": "DonutProcessor", "output": "fields as a JSON string",
                   "max_length": module.config.reader.max_length},
    }
