"""Retrieval metrics over a similarity matrix and a binary relevance matrix.

Relevance is a matrix rather than the diagonal because several scenes share a caption:
a caption is relevant to every image it describes (evaluate() builds it from the scenes'
attributes), and a query counts as found at K when any relevant item is in its top K.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def recall_at_k(scores: Tensor, relevant: Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[int, float]:
    """scores, relevant: (queries, gallery). Fraction of queries with a relevant item in
    their top k."""
    order = scores.argsort(dim=1, descending=True)
    hits = relevant.gather(1, order).bool()
    return {k: hits[:, :k].any(1).float().mean().item() for k in ks}


def ndcg_at_k(scores: Tensor, relevant: Tensor, k: int = 10) -> float:
    """Binary-relevance nDCG@k averaged over queries that have any relevant item."""
    order = scores.argsort(dim=1, descending=True)[:, :k]
    gains = relevant.gather(1, order).float()
    discounts = 1.0 / torch.log2(torch.arange(2, gains.shape[1] + 2, dtype=torch.float32))
    dcg = (gains * discounts).sum(1)
    n_rel = relevant.float().sum(1).clamp(max=k).long()
    ideal = torch.stack([discounts[:n].sum() for n in n_rel.tolist()])
    keep = n_rel > 0
    return (dcg[keep] / ideal[keep]).mean().item() if keep.any() else math.nan


def chance_recall_at_1(relevant: Tensor) -> float:
    """Expected recall@1 of a random ranking: mean fraction of the gallery that is relevant."""
    return relevant.float().mean(1).mean().item()


def retrieval_metrics(text_emb: Tensor, image_emb: Tensor, relevant: Tensor) -> dict[str, float]:
    """relevant: (texts, images). -> recall@1/5/10 both ways, nDCG@10 both ways."""
    sim = text_emb @ image_emb.T
    out: dict[str, float] = {}
    for name, s, r in (("t2i", sim, relevant), ("i2t", sim.T, relevant.T)):
        for k, v in recall_at_k(s, r).items():
            out[f"{name}_recall@{k}"] = v
        out[f"{name}_ndcg@10"] = ndcg_at_k(s, r)
    out["chance_recall@1"] = chance_recall_at_1(relevant)
    return out
