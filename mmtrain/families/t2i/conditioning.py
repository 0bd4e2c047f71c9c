"""The UNet's cross-attention context: the prompt, then retrieved passages, then style.

    context = [ prompt states (L) | passage 1 (P) | ... | passage top_k (P) | style (S) ]

- prompt: the text encoder's hidden states of the prompt, L = tokenizer.model_max_length
  (exactly what the stock pipeline computes, so with no retrieval and no styles the
  context is the plain Stable Diffusion one).
- passages (`rag`, rag.py): each retrieved passage is encoded separately by the same
  text encoder (P = rag.max_tokens_per_passage tokens, at most L) and concatenated along
  the sequence axis, rather than pasted into a prompt the encoder would cut at L tokens.
  Missing passages (fewer hits, retrieval off, the unconditional branch) are the encoding
  of "", so every context has the same length and the CFG branches stack.
- style (styles.py): S learned tokens of the selected preset, row 0 for "no style".

The negative (unconditional) branch is the negative prompt (default "") with empty
passages and no style, which is also what caption dropout trains.

Generation goes through a stock StableDiffusionPipeline with `prompt_embeds` and
`negative_prompt_embeds`, so the exported pipeline plus `load_extras(folder)` serves
exactly what the module sampled.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from mmtrain.families.t2i import batch as batch_codec
from mmtrain.families.t2i.rag import Retriever
from mmtrain.families.t2i.styles import StyleTokens
from mmtrain.rag.knowledge_base import Passage

STYLES_DIR, RETRIEVAL_DIR, KB_DIR = "styles", "retrieval", "knowledge_base"


@dataclass
class Embeds:
    prompt: Tensor  # (batch, tokens, hidden): the pipeline's prompt_embeds
    negative: Tensor  # same shape: negative_prompt_embeds
    passages: list[list[Passage]]  # per prompt, what was retrieved (best first)


@dataclass
class Generation:
    images: list[Image.Image]
    passages: list[list[Passage]]  # per prompt: text, source, doc_id, chunk, score
    styles: list[str | None]
    negative_prompt: list[str] | None = None

    def report(self) -> list[dict]:
        """Per prompt: the style and the retrieved passages with their sources."""
        return [{"style": s, "retrieved": [{"text": p.text, "source": p.source,
                                            "doc_id": p.doc_id, "chunk": p.chunk,
                                            "score": round(p.score, 4)} for p in ps]}
                for s, ps in zip(self.styles, self.passages, strict=True)]


class Conditioner:
    """Builds contexts from a tokenizer + text encoder (a module's or a loaded pipeline's)
    and the optional style tokens and retriever."""

    def __init__(self, tokenizer, text_encoder, *, styles: StyleTokens | None = None,
                 retriever: Retriever | None = None, passage_tokens: int | None = None) -> None:
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.styles, self.retriever = styles, retriever
        limit = tokenizer.model_max_length
        self.passage_tokens = passage_tokens or limit
        if not 2 <= self.passage_tokens <= limit:
            raise ValueError(f"rag.max_tokens_per_passage must be in 2..{limit} (the text "
                             f"encoder's max_length), got {self.passage_tokens}")

    @property
    def extended(self) -> bool:
        return self.styles is not None or self.retriever is not None

    @property
    def top_k(self) -> int:
        return self.retriever.top_k if self.retriever is not None else 0

    def context_length(self) -> int:
        return (self.tokenizer.model_max_length + self.top_k * self.passage_tokens
                + (self.styles.tokens if self.styles is not None else 0))

    # ---- pieces ---------------------------------------------------------------------
    def encode_prompts(self, prompts: list[str]) -> Tensor:
        ids = batch_codec.token_ids(self.tokenizer, prompts).to(self.text_encoder.device)
        return self.text_encoder(ids)[0]

    def encode_passages(self, passages: list[list[Passage]]) -> Tensor:
        """(batch, top_k * P, hidden): each passage encoded on its own; "" fills the gaps."""
        k, p = self.top_k, self.passage_tokens
        texts = [""] + [hit.text for hits in passages for hit in hits[:k]]
        ids = self.tokenizer(texts, padding="max_length", truncation=True, max_length=p,
                             return_tensors="pt").input_ids.to(self.text_encoder.device)
        states = self.text_encoder(ids)[0]  # (1 + hits, P, hidden); row 0 is ""
        rows, i = [], 1
        for hits in passages:
            n = min(len(hits), k)
            row = [states[i:i + n], states[:1].expand(k - n, -1, -1)]
            rows.append(torch.cat(row).reshape(k * p, -1))
            i += n
        return torch.stack(rows)

    def style_indices(self, style, n: int) -> Tensor:
        styles = style if isinstance(style, list | tuple) else [style] * n
        if len(styles) != n:
            raise ValueError(f"{len(styles)} styles for {n} prompts; pass one, or one per prompt")
        if self.styles is None:
            if any(s is not None for s in styles):
                raise ValueError("this model has no style presets (styles.names is empty); "
                                 "train with styles.names set, or pass style=None")
            return torch.zeros(n, dtype=torch.long)
        return torch.tensor([self.styles.index(s) for s in styles], dtype=torch.long)

    def extend(self, prompt_states: Tensor, passages: list[list[Passage]] | None,
               style_indices: Tensor | None) -> Tensor:
        """prompt states (+ passage states) (+ style tokens), along the sequence axis."""
        parts = [prompt_states]
        n = prompt_states.shape[0]
        if self.retriever is not None:
            parts.append(self.encode_passages(passages or [[] for _ in range(n)]))
        if self.styles is not None:
            idx = style_indices if style_indices is not None else torch.zeros(n, dtype=torch.long)
            parts.append(self.styles(idx).to(prompt_states))
        return torch.cat(parts, dim=1) if len(parts) > 1 else prompt_states

    # ---- training -------------------------------------------------------------------
    def training_context(self, context: Tensor, captions: list[str], drop: Tensor,
                         generator: torch.Generator, styles: Tensor | None,
                         rag_dropout: float, style_dropout: float) -> Tensor:
        """Extends a training batch's prompt states. A dropped caption (CFG) also drops its
        passages and style; on top, retrieval and style drop out on their own."""
        n = len(captions)
        passages = None
        if self.retriever is not None:
            keep = ~(drop | (torch.rand(n, generator=generator) < rag_dropout))
            passages = [self.retriever(c) if k else [] for c, k in zip(captions, keep.tolist(),
                                                                         strict=True)]
        idx = None
        if self.styles is not None:
            idx = styles.long().cpu() if styles is not None else torch.zeros(n, dtype=torch.long)
            idx = torch.where(drop | (torch.rand(n, generator=generator) < style_dropout), 0, idx)
        return self.extend(context, passages, idx)

    # ---- sampling -------------------------------------------------------------------
    @torch.no_grad()
    def embeds(self, prompts: list[str], *, negative_prompt=None, style=None,
               retrieve: bool = True) -> Embeds:
        n = len(prompts)
        negatives = _per_prompt(negative_prompt, n, "negative_prompt")
        passages = [self.retriever(p) if retrieve else [] for p in prompts] \
            if self.retriever is not None else [[] for _ in prompts]
        positive = self.extend(self.encode_prompts(prompts), passages, self.style_indices(style, n))
        negative = self.extend(self.encode_prompts(negatives), None, None)
        return Embeds(positive, negative, passages)


def _per_prompt(value, n: int, name: str) -> list[str]:
    if value is None:
        return [""] * n
    values = [value] * n if isinstance(value, str) else list(value)
    if len(values) != n:
        raise ValueError(f"{len(values)} {name}s for {n} prompts; pass one, or one per prompt")
    return values


@torch.no_grad()
def generate(pipe, conditioner: Conditioner, prompts: str | list[str], seed: int, *,
             negative_prompt=None, style=None, retrieve: bool = True, **pipe_kwargs) -> Generation:
    """Samples through a stock StableDiffusionPipeline from contexts built here."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    emb = conditioner.embeds(prompts, negative_prompt=negative_prompt, style=style,
                             retrieve=retrieve)
    images = pipe(prompt_embeds=emb.prompt, negative_prompt_embeds=emb.negative,
                  generator=torch.Generator().manual_seed(seed), output_type="pil",
                  **pipe_kwargs).images
    per = max(1, len(images) // len(prompts))  # num_images_per_prompt repeats each prompt
    styles = style if isinstance(style, list | tuple) else [style] * len(prompts)
    rep = lambda xs: [x for x in xs for _ in range(per)]  # noqa: E731
    return Generation(images, rep(emb.passages), rep(list(styles)),
                      None if negative_prompt is None else rep(_per_prompt(negative_prompt,
                                                                           len(prompts), "")))


# ---- export: extra components next to the pipeline's ------------------------------------
def save_extras(conditioner: Conditioner, out: Path) -> dict:
    """Writes styles/ and retrieval/ (not in model_index.json: the stock loader ignores
    them); returns facts for the manifest."""
    facts: dict = {"context_tokens": conditioner.context_length()}
    if conditioner.styles is not None:
        conditioner.styles.save(out / STYLES_DIR)
        facts["styles"] = conditioner.styles.names
    r = conditioner.retriever
    if r is not None:
        folder = out / RETRIEVAL_DIR
        folder.mkdir(parents=True, exist_ok=True)
        if r.path is not None:
            shutil.copytree(r.path, folder / KB_DIR)
        else:
            r.knowledge_base.save(folder / KB_DIR)
        config = {"knowledge_base": KB_DIR, "knowledge_source": r.source, "top_k": r.top_k,
                  "max_tokens_per_passage": conditioner.passage_tokens,
                  "prompt_tokens": conditioner.tokenizer.model_max_length,
                  "encoder_hash": json.loads((folder / KB_DIR / "kb.json").read_text())["encoder_hash"]}
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        facts["retrieval"] = {k: v for k, v in config.items() if k != "knowledge_base"}
    return facts


@dataclass
class Extras:
    """An exported bundle's conditioning parts, for a server next to the stock pipeline:

        pipe = DiffusionPipeline.from_pretrained(folder)
        extras = load_extras(folder)
        out = extras.generate(pipe, ["a tomato"], seed=0, style="illustration",
                              negative_prompt="blurry", num_inference_steps=20)
        out.images, out.report()   # images + retrieved passages with their sources
    """

    styles: StyleTokens | None = None
    retriever: Retriever | None = None
    passage_tokens: int | None = None
    style_names: list[str] = field(default_factory=list)

    def conditioner(self, pipe) -> Conditioner:
        return Conditioner(pipe.tokenizer, pipe.text_encoder, styles=self.styles,
                           retriever=self.retriever, passage_tokens=self.passage_tokens)

    def generate(self, pipe, prompts, seed: int, **kwargs) -> Generation:
        return generate(pipe, self.conditioner(pipe), prompts, seed, **kwargs)


def load_extras(folder: str | Path) -> Extras:
    """The style presets and retrieval set-up of an exported t2i bundle (either may be
    absent: a bundle without them gives plain Stable Diffusion contexts)."""
    folder = Path(folder)
    extras = Extras()
    if (folder / STYLES_DIR).is_dir():
        extras.styles = StyleTokens.load(folder / STYLES_DIR)
        extras.style_names = extras.styles.names
    if (folder / RETRIEVAL_DIR / "config.json").exists():
        config = json.loads((folder / RETRIEVAL_DIR / "config.json").read_text())
        extras.retriever = Retriever(folder / RETRIEVAL_DIR / config["knowledge_base"],
                                     source=config["knowledge_source"], top_k=config["top_k"])
        extras.passage_tokens = config["max_tokens_per_passage"]
    return extras
