"""The real config tree composes and validates; bad input gets a message that helps."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from mmtrain.config.validate import ConfigError, validate
from tests.conftest import REPO, compose, run_mmtrain

RECIPES = sorted(p.stem for p in (REPO / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes_and_validates(recipe):
    run = validate(compose(f"+recipe={recipe}"))
    assert run.phases and run.model
    assert all(set(p.families) <= set(run.model) for p in run.phases)


@pytest.mark.parametrize("option", ["logger=wandb", "logger=tensorboard", "logger=none",
                                    "strategy=ddp", "trainer=gpu", "data=shards data.root=/x",
                                    "data=latents data.root=/x", "model/t2i=sd21",
                                    "model/t2i=base"])
def test_group_options_validate(option):
    validate(compose("+recipe=t2i_pretrain", *option.split()))


def errors_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as err:
        validate(compose(*overrides))
    return str(err.value)


def test_unknown_key_lists_valid_keys_and_suggests():
    msg = errors_of("+recipe=joint_finetune", "+trainer.precison=bf16-mixed")
    assert "trainer: unknown 'precison' (did you mean 'precision'?)" in msg
    assert "accumulate_grad_batches" in msg  # the valid keys are listed


def test_wrong_type_and_range_and_choice_all_reported_at_once():
    msg = errors_of("+recipe=joint_finetune", "trainer.accumulate_grad_batches=two",
                    "data.batch_size=0", "model.t2i.noise.prediction_type=x0")
    assert "trainer.accumulate_grad_batches: expected int, got 'two'" in msg
    assert "data.batch_size: 0 is out of range; must be >= 1" in msg
    assert "model.t2i.noise.prediction_type: unknown 'x0'; valid: epsilon, v_prediction" in msg


def test_missing_required_value_names_the_key():
    msg = errors_of("+recipe=joint_finetune", "data=shards")
    assert "data.root: required value is missing" in msg


def test_cross_references_are_checked():
    msg = errors_of("+recipe=joint_finetune", "+phases.0.loss_weights.t2i.gan=1.0")
    assert "phases[0] (t2i_autoencoder).loss_weights.t2i: unknown 'gan'" in msg
    assert "valid: autoencoder, diffusion" in msg
    assert "pick a recipe" in errors_of()  # no recipe: no phases


def test_unknown_recipe_and_group_option_list_the_choices():
    with pytest.raises(MissingConfigException) as err:
        compose("+recipe=no_such_recipe")
    assert "joint_finetune" in str(err.value)
    with pytest.raises((MissingConfigException, ConfigCompositionException)) as err:
        compose("+recipe=joint_finetune", "strategy=ddq")
    assert "ddp" in str(err.value)


def test_cli_validate_cfg_and_families(tmp_path: Path):
    """One subprocess per entry point a user types (each pays ~6 s of imports)."""
    out = run_mmtrain("+recipe=joint_finetune", "validate=true", cwd=tmp_path).stdout
    assert "config is valid" in out and "unet" in out and "phase 1 t2i_pretrain" in out
    out = run_mmtrain("+recipe=joint_finetune", "--cfg", "job", cwd=tmp_path).stdout
    assert "phases:" in out and "t2i_autoencoder" in out
    out = run_mmtrain("families", cwd=tmp_path).stdout
    assert "t2i" in out and "image,caption" in out
    bad = run_mmtrain("+recipe=joint_finetune", "trainer.devices=1", "+trainer.foo=1",
                      cwd=tmp_path, check=False)
    assert bad.returncode != 0 and "trainer: unknown 'foo'" in bad.stderr
    assert not (tmp_path / "runs").exists()  # validation failed before anything was written
