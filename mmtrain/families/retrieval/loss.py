"""The contrastive loss, torch only (DDP workers and tests import it without the stack)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenates x from every rank (rank order); gradients flow back to each rank's
    slice. Ranks may hold different row counts (a mixed batch splits its samples between
    scenes and documents), even none: rows are padded to the longest for the gather and
    stripped after. Identity outside a process group."""
    if not distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    count = torch.tensor([len(x)], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    if max(counts) > len(x):
        x = torch.cat([x, x.new_zeros(max(counts) - len(x), *x.shape[1:])])
    return torch.cat([part[:n] for part, n in zip(all_gather(x), counts, strict=True)])


def contrastive_loss(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE over the gathered global batch (unit-norm embeddings, matching
    rows are the positives). Every rank computes the same value (open_clip's non-local
    loss); the all_gather backward sums each slice's gradient over ranks and DDP averages
    over ranks, so a DDP step equals the single-process step on the concatenated batch."""
    images, texts = gather_with_grad(image_emb), gather_with_grad(text_emb)
    if len(images) == 0:  # no pair on any rank: nothing to learn, still in the graph
        return 0 * logit_scale + 0 * image_emb.sum() + 0 * text_emb.sum()
    logits = logit_scale * images @ texts.T
    labels = torch.arange(len(images), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
