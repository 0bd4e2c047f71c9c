"""Checks a composed config against the typed schemas and builds the typed RunConfig.

Every problem is reported at once, each naming the key, the bad value and what would be
valid, before any model or data is touched.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mmtrain.config.schema import PhaseConfig, RunConfig
from mmtrain.families.registry import FAMILIES

MISSING = "???"


class ConfigError(ValueError):
    """A config that cannot run; the message lists every problem found."""


def validate(cfg: DictConfig | dict) -> RunConfig:
    raw = _resolve(cfg) if isinstance(cfg, DictConfig) else cfg
    errors: list[str] = []
    _check(raw, RunConfig, "", errors)
    for family, sub in (raw.get("model") or {}).items():
        if family not in FAMILIES:
            errors.append(_unknown("model", family, list(FAMILIES)))
        else:
            _check(sub, FAMILIES[family].config_cls, f"model.{family}", errors)
    if not errors:
        _check_cross_references(raw, errors)
    if errors:
        raise ConfigError(
            "invalid config:\n  - " + "\n  - ".join(errors)
            + "\n(print the composed config with `python -m mmtrain ... --cfg job`)"
        )
    run = _build(raw, RunConfig)
    run.model = {f: _build(sub, FAMILIES[f].config_cls) for f, sub in raw["model"].items()}
    return run


def _resolve(cfg: DictConfig) -> dict:
    missing = sorted(_missing_keys(cfg))
    if missing:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(
            f"{key}: required value is missing (set it with `{key}=...`)" for key in missing))
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"invalid config: {err}") from None


def _missing_keys(node, prefix: str = "") -> list[str]:
    """Keys set to ??? (without resolving interpolations, which would fail on them)."""
    found = []
    items = enumerate(node) if OmegaConf.is_list(node) else node.items_ex(resolve=False)
    for key, _ in items:
        path = f"{prefix}[{key}]" if OmegaConf.is_list(node) else f"{prefix}{'.' if prefix else ''}{key}"
        if OmegaConf.is_missing(node, key):
            found.append(path)
            continue
        child = node._get_node(key)
        if OmegaConf.is_config(child) and not child._is_interpolation() and not child._is_none():
            found += _missing_keys(child, path)
    return found


def _check_cross_references(raw: dict, errors: list[str]) -> None:
    families = list(raw.get("model") or {})
    sources = raw["data"].get("sources") or {}
    if not families:
        errors.append("model: no family selected; add one, e.g. `+model/t2i=tiny`")
    if not raw.get("phases"):
        errors.append("phases: empty; pick a recipe, e.g. `+recipe=joint_finetune`")
    for family in families:
        feeds = (raw["data"].get("family_sources") or {}).get(family)
        if not feeds:
            errors.append(
                f"data.family_sources.{family}: no data source feeds family '{family}'; "
                f"valid sources: {', '.join(sources) or '(none defined)'}"
            )
        for name in feeds or []:
            if name not in sources:
                errors.append(_unknown(f"data.family_sources.{family}", name, list(sources)))
    for i, phase in enumerate(raw.get("phases") or []):
        where = f"phases[{i}] ({phase.get('name')})"
        for family in list(phase.get("families") or []) + list(phase.get("mix") or {}):
            if family not in families:
                errors.append(_unknown(f"{where}.families", family, families))
        if not phase.get("families"):
            errors.append(f"{where}.families: empty; valid: {', '.join(families)}")
        for family, weights in (phase.get("loss_weights") or {}).items():
            if family not in families:
                errors.append(_unknown(f"{where}.loss_weights", family, families))
                continue
            for loss in weights:
                if loss not in FAMILIES[family].losses:
                    errors.append(_unknown(f"{where}.loss_weights.{family}", loss,
                                           list(FAMILIES[family].losses)))
    names = [p.get("name") for p in raw.get("phases") or []]
    if len(set(names)) != len(names):
        errors.append(f"phases: names must be unique, got {names}")


def _unknown(where: str, key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{where}: unknown '{key}'{hint}; valid: {', '.join(map(str, valid)) or '(none)'}"


def _check(value: Any, tp: Any, path: str, errors: list[str]) -> None:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if value == MISSING:
        errors.append(f"{path}: required value is missing (set it with `{path}=...`)")
    elif tp is Any:
        return
    elif origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        _check(value, next(a for a in args if a is not type(None)), path, errors)
    elif dataclasses.is_dataclass(tp):
        _check_dataclass(value, tp, path, errors)
    elif origin is list:
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {value!r}")
        else:
            for i, item in enumerate(value):
                _check(item, args[0], f"{path}[{i}]", errors)
    elif origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {value!r}")
        else:
            for key, item in value.items():
                _check(item, args[1], f"{path}.{key}", errors)
    elif not _scalar_ok(value, tp):
        errors.append(f"{path}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")


def _scalar_ok(value: Any, tp: type) -> bool:
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _check_dataclass(value: Any, cls: type, path: str, errors: list[str]) -> None:
    where = path or "<root>"
    if not isinstance(value, dict):
        errors.append(f"{where}: expected a mapping of {cls.__name__} fields, got {value!r}")
        return
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in value:
        if key not in fields:
            errors.append(_unknown(where, key, list(fields)))
    for name, f in fields.items():
        key = f"{path}.{name}" if path else name
        if name not in value:
            if f.default is MISSING:
                errors.append(f"{key}: required value is missing (set it with `{key}=...`)")
            continue
        before = len(errors)
        _check(value[name], hints[name], key, errors)
        if len(errors) == before and value[name] is not None:
            _check_metadata(value[name], f.metadata, key, errors)


def _check_metadata(value: Any, meta: typing.Mapping, key: str, errors: list[str]) -> None:
    if "choices" in meta and value not in meta["choices"]:
        errors.append(_unknown(key, value, list(dict.fromkeys(meta["choices"]))))
    bounds = {"ge": (lambda v, b: v >= b, ">="), "gt": (lambda v, b: v > b, ">"),
              "le": (lambda v, b: v <= b, "<=")}
    for name, (ok, sign) in bounds.items():
        if name in meta and not ok(value, meta[name]):
            errors.append(f"{key}: {value!r} is out of range; must be {sign} {meta[name]}")


def _build(value: Any, tp: Any) -> Any:
    """Turns checked plain data into dataclass instances, field by field."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if value is None or tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _build(value, next(a for a in args if a is not type(None)))
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{k: _build(v, hints[k]) for k, v in value.items()})
    if origin is list:
        return [_build(v, args[0]) for v in value]
    if origin is dict:
        return {k: _build(v, args[1]) for k, v in value.items()}
    return float(value) if tp is float else value


def phase_fingerprint(phases: list[PhaseConfig]) -> list[dict]:
    """The parts of a schedule that a resumed run must share with the run it continues."""
    return [dataclasses.asdict(p) for p in phases]
