"""The contrastive loss, torch only (DDP workers and tests import it without the stack)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenates x from every rank (rank order); gradients flow back to each rank's
    slice. Identity outside a process group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x))


def contrastive_loss(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE over the gathered global batch (unit-norm embeddings, matching
    rows are the positives). Every rank computes the same value (open_clip's non-local
    loss); the all_gather backward sums each slice's gradient over ranks and DDP averages
    over ranks, so a DDP step equals the single-process step on the concatenated batch."""
    images, texts = gather_with_grad(image_emb), gather_with_grad(text_emb)
    logits = logit_scale * images @ texts.T
    labels = torch.arange(len(images), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
