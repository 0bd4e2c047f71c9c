"""Every recipe runs end to end for a few steps per phase (lightning-hydra-template's
habit of running every experiment with a tiny budget), in-process."""

from __future__ import annotations

import pytest
import torch

from mmtrain.launch import launch
from tests.config.test_compose import RECIPES
from tests.conftest import REPO, SMALL_WORLD, compose

FAST = [*SMALL_WORLD, "data.batch_size=4", "callbacks.progress_bar=false"]
FAST_BY_FAMILY = {"t2i": ["model.t2i.sampler.steps=2", "model.t2i.samples_per_prompt=1"],
                  "restore": ["model.restore.eval_photo_crop=96"]}


def phase_count(recipe: str) -> int:
    from omegaconf import OmegaConf
    return len(OmegaConf.load(REPO / "recipes" / f"{recipe}.yaml").phases)


# every recipe as written; the logger/accumulation/clipping variant on the cheapest one
# (the trainer settings do not depend on the recipe, and each run costs 20-40 s here)
VARIANT = ["logger=tensorboard", "trainer.accumulate_grad_batches=2",
           "trainer.gradient_clip_val=0.5"]


@pytest.mark.parametrize(("recipe", "variant"),
                         [(r, []) for r in RECIPES] + [("t2i_pretrain", VARIANT)])
def test_recipe_runs_a_few_steps(recipe, variant, small_world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    steps = [f"phases.{i}.steps=2" for i in range(phase_count(recipe))]
    families = list(compose(f"+recipe={recipe}").model)  # a recipe may drop t2i
    fast = [o for f in families for o in FAST_BY_FAMILY.get(f, [])]
    launch(compose(f"+recipe={recipe}", "name=r", *FAST, *fast, *steps, *variant))
    run = tmp_path / "runs" / "r"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["mmtrain"]["completed"]
    assert ckpt["mmtrain"]["phase_index"] == phase_count(recipe) - 1
    assert all((run / "export" / f / "manifest.json").exists() for f in families)
    if "logger=tensorboard" in variant:
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    else:
        assert (run / "metrics" / "metrics.csv").read_text().count("\n") > 1
