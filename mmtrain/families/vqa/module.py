"""Visual question answering and captioning, BLIP-2 design (transformers' Blip2).

`self.model` is a stock Blip2ForConditionalGeneration: `model.vision_model` (ViT),
`model.query_tokens` + `model.qformer` (Q-Former), `model.language_projection`,
`model.language_model` (OPT). `self.stage1` holds BLIP-2's stage-1 heads, which share
that very Q-Former, so stage 1 trains what stage 2 reads. Four losses, which phases weight:
  itc      image-text contrastive over Q-Former query / text features (stage 1)
  itm      image-text matching with hard negatives drawn from the ITC similarities (stage 1)
  caption  LM loss on the caption after "a photo of" (stage 2)
  vqa      LM loss on the answer after "Question: ... Answer:" (stage 2)
LM losses count only the caption / answer tokens. Generation goes through the stock
processor + `model.generate`, so what validation shows is what the export serves.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from mmtrain.data.synth import scenes
from mmtrain.families.base import FamilyModule
from mmtrain.families.vqa import batch as batch_codec
from mmtrain.families.vqa import metrics as vqa_metrics
from mmtrain.families.vqa import networks
from mmtrain.families.vqa.config import VQAConfig
from mmtrain.families.vqa.panel import qa_panel


class VisualQA(FamilyModule):
    name = "vqa"
    default_loss_weights = {"caption": 1.0, "vqa": 1.0}

    def __init__(self, config: VQAConfig) -> None:
        super().__init__()
        self.config = config
        self.processor = networks.build_processor(config)
        self.tokenizer = self.processor.tokenizer
        self.model = networks.build_model(config, self.processor)
        self.stage1 = networks.Stage1Heads(self.model.config)
        # Retrieved context (a knowledge base): question -> passages put before it.
        self.context_fn: Callable[[str], list[str]] | None = None

    def sample_decoder(self):
        return batch_codec.decoder(self.processor.image_processor)

    def required_fields(self) -> dict[str, tuple[str, ...]]:
        return batch_codec.FIELDS

    collate = staticmethod(batch_codec.collate)

    # ---- prompts ----------------------------------------------------------------------
    def vqa_prompt(self, question: str) -> str:
        """The question prompt, preceded by retrieved passages when `context_fn` is set:
        as many whole passages as fit the LM's length (queries and an answer budget
        kept free), the last one cut to fit."""
        prompt = self.config.vqa_prompt.format(question=question)
        if self.context_fn is None:
            return prompt
        passages = [p.strip() for p in self.context_fn(question) if p.strip()]
        if not passages:
            return prompt
        budget = (self.model.config.text_config.max_position_embeddings
                  - self.model.config.num_query_tokens - self.config.max_new_tokens
                  - len(self.tokenizer(prompt).input_ids) - 4)
        wrapper = len(self.tokenizer(self.config.context_prompt.format(context=""),
                                     add_special_tokens=False).input_ids)
        ids = self.tokenizer(" ".join(passages), add_special_tokens=False).input_ids
        ids = ids[:max(0, budget - wrapper)]
        if not ids:
            return prompt
        context = self.tokenizer.decode(ids).strip()
        return f"{self.config.context_prompt.format(context=context)} {prompt}"

    def lm_inputs(self, prompts: list[str], targets: list[str]) -> dict[str, Tensor]:
        """[queries][bos prompt target eos][pad...]: labels only on target + eos. The LM's
        positions come from the attention mask, so right padding here and the processor's
        left padding at generation give the same positions."""
        tok = self.tokenizer
        rows, label_rows = [], []
        for prompt, target in zip(prompts, targets, strict=True):
            p = tok(prompt).input_ids
            t = tok(" " + target.strip(), add_special_tokens=False).input_ids + [tok.eos_token_id]
            rows.append(p + t)
            label_rows.append([-100] * len(p) + t)
        n = max(map(len, rows))
        q = self.model.config.num_query_tokens
        image = [self.model.config.image_token_index] * q
        ids = torch.tensor([image + r + [tok.pad_token_id] * (n - len(r)) for r in rows])
        mask = torch.tensor([[1] * (q + len(r)) + [0] * (n - len(r)) for r in rows])
        labels = torch.tensor([[-100] * q + r + [-100] * (n - len(r)) for r in label_rows])
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device),
                "labels": labels.to(self.device)}

    # ---- training ---------------------------------------------------------------------
    def losses(self, batch: dict, active: set[str], generator: torch.Generator) -> dict[str, Tensor]:
        pixels = batch["pixels"].to(self.device, self.model.dtype)
        out: dict[str, Tensor] = {}
        if active & {"itc", "itm"}:
            out |= self._stage1_losses(pixels, batch["captions"], active, generator)
        if "caption" in active:
            n = len(batch["captions"])
            inputs = self.lm_inputs([self.config.caption_prompt] * n, batch["captions"])
            out["caption"] = self.model(pixel_values=pixels, **inputs).loss
        if "vqa" in active:
            picks = [qas[int(torch.randint(len(qas), (1,), generator=generator))]
                     for qas in batch["qas"]]
            inputs = self.lm_inputs([self.vqa_prompt(q) for q, _ in picks], [a for _, a in picks])
            out["vqa"] = self.model(pixel_values=pixels, **inputs).loss
        return out

    def image_queries(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """-> (ViT patch states, Q-Former query outputs)."""
        image = self.model.vision_model(pixel_values=pixels).last_hidden_state
        queries = self.model.query_tokens.expand(image.shape[0], -1, -1)
        image_mask = torch.ones(image.shape[:-1], dtype=torch.long, device=image.device)
        out = self.model.qformer(query_embeds=queries, encoder_hidden_states=image,
                                 encoder_attention_mask=image_mask).last_hidden_state
        return image, out

    def _text_ids(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        enc = self.tokenizer(captions, padding=True, truncation=True, padding_side="right",
                             max_length=self.config.qformer.max_text_length, return_tensors="pt")
        return enc.input_ids.to(self.device), enc.attention_mask.to(self.device)

    def _stage1_losses(self, pixels: Tensor, captions: list[str], active: set[str],
                       generator: torch.Generator) -> dict[str, Tensor]:
        if not getattr(self.model.qformer.config, "use_qformer_text_input", False):
            raise ValueError("vqa itc/itm need a Q-Former with a text path "
                             "(qformer_config.use_qformer_text_input); this model has none")
        heads = self.stage1
        image, queries = self.image_queries(pixels)
        ids, mask = self._text_ids(captions)
        text = self.model.qformer(query_embeds=heads.embeddings(input_ids=ids), query_length=0,
                                  attention_mask=mask).last_hidden_state
        image_feat = F.normalize(heads.vision_projection(queries), dim=-1)  # B, Q, D
        text_feat = F.normalize(heads.text_projection(text[:, 0]), dim=-1)  # B, D
        # BLIP-2: an image-text score is the best of its queries
        sim = torch.einsum("bqd,td->bqt", image_feat, text_feat).amax(1) / heads.log_temp.exp()
        # equal captions are all positives (a small world repeats captions)
        same = torch.tensor([[a == b for b in captions] for a in captions], device=sim.device)
        target = same.float() / same.sum(1, keepdim=True)
        out: dict[str, Tensor] = {}
        if "itc" in active:
            out["itc"] = (torch.sum(-target * F.log_softmax(sim, 1), 1).mean()
                          + torch.sum(-target * F.log_softmax(sim.t(), 1), 1).mean()) / 2
        if "itm" in active:
            out["itm"] = self._itm_loss(image, ids, mask, sim.detach(), same, generator)
        return out

    def _itm_loss(self, image: Tensor, ids: Tensor, mask: Tensor, sim: Tensor, same: Tensor,
                  generator: torch.Generator) -> Tensor:
        """Matched pairs against hard negatives: for each image a text and for each text
        an image drawn by ITC similarity among the non-matching ones."""
        n = ids.shape[0]
        same = same.cpu()
        if same.all():  # every caption alike: nothing to contrast
            return sim.new_zeros(())
        # (tiny floor: a non-matching pair can always be drawn, even at softmax underflow)
        w_text = (sim.float().softmax(1).cpu() + 1e-6).masked_fill(same, 0)
        w_image = (sim.float().t().softmax(1).cpu() + 1e-6).masked_fill(same, 0)
        keep = w_text.sum(1) > 0  # rows whose every caption is the same have no negative
        w_text[~keep], w_image[~keep] = 1.0, 1.0  # drawn but their pairs are not used
        neg_text = torch.multinomial(w_text, 1, generator=generator).squeeze(1).to(ids.device)
        neg_image = torch.multinomial(w_image, 1, generator=generator).squeeze(1).to(ids.device)
        neg_text, neg_image = neg_text[keep.to(ids.device)], neg_image[keep.to(ids.device)]
        pos = torch.arange(n, device=ids.device)
        kept = pos[keep.to(ids.device)]
        image_rows = torch.cat([pos, kept, neg_image])
        text_rows = torch.cat([pos, neg_text, kept])
        images, texts, masks = image[image_rows], ids[text_rows], mask[text_rows]
        m = len(image_rows)
        queries = self.model.query_tokens.expand(m, -1, -1)
        q = queries.shape[1]
        embeds = self.stage1.embeddings(input_ids=texts, query_embeds=queries)
        full_mask = torch.cat([torch.ones(m, q, dtype=masks.dtype, device=masks.device), masks], 1)
        out = self.model.qformer(
            query_embeds=embeds, query_length=q, attention_mask=full_mask,
            encoder_hidden_states=images,
            encoder_attention_mask=torch.ones(images.shape[:-1], dtype=torch.long,
                                              device=images.device)).last_hidden_state
        logits = self.stage1.itm_head(out[:, :q]).mean(1)
        labels = torch.cat([torch.ones(n), torch.zeros(m - n)]).long().to(logits.device)
        return F.cross_entropy(logits, labels)

    # ---- generation and evaluation ----------------------------------------------------
    @torch.no_grad()
    def generate(self, images: list[Image.Image], prompts: list[str]) -> list[str]:
        """Greedy continuations, through the stock processor and generate()."""
        was_training = self.training
        self.eval()
        inputs = self.processor(images=images, text=prompts, padding=True,
                                return_tensors="pt").to(self.device)
        ids = self.model.generate(**inputs, max_new_tokens=self.config.max_new_tokens,
                                  do_sample=False, num_beams=1)
        self.train(was_training)
        # the output starts with the (padded) prompt: keep only the new tokens
        texts = self.processor.batch_decode(ids[:, inputs["input_ids"].shape[1]:],
                                            skip_special_tokens=True)
        return [t.strip() for t in texts]

    def answer(self, images: list[Image.Image], questions: list[str]) -> list[str]:
        return self.generate(images, [self.vqa_prompt(q) for q in questions])

    def caption(self, images: list[Image.Image]) -> list[str]:
        return self.generate(images, [self.config.caption_prompt] * len(images))

    @torch.no_grad()
    def evaluate(self, seed: int) -> tuple[dict[str, float], dict]:
        """Held-out scenes rendered from `seed` (not the shards' stream): every question
        answered, every image captioned against all six caption templates."""
        rng = np.random.default_rng([seed, 7331])
        world = [scenes.sample_scene(rng) for _ in range(self.config.eval_scenes)]
        size = self.config.vision.image_size if not self.config.pretrained_path else 64
        images = [scenes.render_scene(s, max(size, 16)) for s in world]
        qas = [(i, qa["question"], qa["answer"]) for i, s in enumerate(world)
               for qa in s.questions()]
        answers = self.answer([images[i] for i, _, _ in qas], [q for _, q, _ in qas])
        metrics: dict[str, float] = {}
        per_kind: dict[str, list[float]] = {}
        for (_, q, gold), pred in zip(qas, answers, strict=True):
            per_kind.setdefault(q, []).append(vqa_metrics.vqa_accuracy(pred, [gold]))
        metrics["vqa_accuracy"] = float(np.mean([v for vs in per_kind.values() for v in vs]))
        metrics["vqa_accuracy_colour"] = float(np.mean(per_kind["what colour is the shape?"]))
        captions = self.caption(images)
        refs = [[s.caption(t) for t in range(len(scenes.CAPTION_TEMPLATES))] for s in world]
        metrics |= vqa_metrics.caption_scores(captions, refs)
        # one row per scene (up to 10), the question kind rotating with the scene
        per_scene = len(qas) // len(world)
        rows = [i * per_scene + i % per_scene for i in range(min(10, len(world)))]
        shown = [(images[qas[r][0]], qas[r][1], answers[r], qas[r][2]) for r in rows]
        return metrics, {"answers": qa_panel(shown)}
