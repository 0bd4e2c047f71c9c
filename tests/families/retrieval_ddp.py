"""Worker of the 2-rank gloo test in test_retrieval.py: a module of its own so that the
spawned processes import torch and the loss only (not transformers/lightning)."""

from __future__ import annotations

import math

import torch

from mmtrain.families.retrieval.loss import contrastive_loss


class Tower(torch.nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(n_in, 8), torch.nn.Tanh(),
                                       torch.nn.Linear(8, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.net(x), dim=-1)


def toy_setup():
    """Two small towers with unit-norm outputs, a logit scale and a batch of 8; the same
    in every process."""
    torch.manual_seed(0)
    image, text = Tower(12, 6), Tower(10, 6)
    scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    return image, text, scale, torch.randn(8, 12), torch.randn(8, 10)


def params(image, text, scale) -> list[torch.nn.Parameter]:
    return [*image.parameters(), *text.parameters(), scale]


def run_rank(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}",
                                         rank=rank, world_size=world)
    try:
        image, text, scale, x, y = toy_setup()
        part = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        loss = contrastive_loss(image(x[part]), text(y[part]), scale.exp())
        loss.backward()
        grads = [p.grad for p in params(image, text, scale)]
        for g in grads:  # what DDP does with them: the mean over ranks
            torch.distributed.all_reduce(g)
            g /= world
        torch.save({"loss": loss.detach(), "grads": grads}, f"{out}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def run_rank_uneven(rank: int, world: int, init_file: str, out: str,
                    splits: list[list[int]]) -> None:
    """Each split gives the row cuts per rank (rank r takes rows cuts[r]:cuts[r+1]): a
    mixed batch hands the ranks different numbers of documents, even none."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}",
                                         rank=rank, world_size=world)
    try:
        for k, cuts in enumerate(splits):
            image, text, scale, x, y = toy_setup()
            part = slice(cuts[rank], cuts[rank + 1])
            loss = contrastive_loss(image(x[part]), text(y[part]), scale.exp())
            loss.backward()
            grads = [p.grad if p.grad is not None else torch.zeros_like(p)
                     for p in params(image, text, scale)]
            for g in grads:
                torch.distributed.all_reduce(g)
                g /= world
            torch.save({"loss": loss.detach(), "grads": grads}, f"{out}/split{k}-rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()
