"""Where each setting came from, and which valid key a mistyped one meant.

Used by :func:`nightloop.config.load_settings` for its error messages and by ``nightloop config check``.
Keys are dotted paths (``gate.alpha``, ``llm.prices."gpt-4o"``); sources are, highest first, a command-line
option, a ``NIGHTLOOP_*`` environment variable, the config file, or the default.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

__all__ = ["SettingLine", "closest_key", "effective_settings", "env_keys", "file_keys", "key_source", "valid_keys"]

ENV_PREFIX = "NIGHTLOOP_"
#: Variables that configure how settings are found, not settings themselves.
NOT_SETTINGS = {"NIGHTLOOP_CONFIG"}
DEFAULT = "default"


class SettingLine(BaseModel):
    """One effective setting, as ``nightloop config check`` prints it."""

    key: str
    value: Any
    source: str


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X``, ``X | None`` or ``dict[str, X]`` (None for plain values)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        models = [m for m in map(_model_of, typing.get_args(annotation)) if m is not None]
        return models[0] if models else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _dict_value_model(annotation: Any) -> type[BaseModel] | None:
    if typing.get_origin(annotation) is dict:
        return _model_of(typing.get_args(annotation)[1])
    return None


def valid_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every settable dotted key of ``model`` (a dict of models, like ``llm.prices``, counts as one key)."""
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        if sub is not None:
            yield from valid_keys(sub, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def _parent_model(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model that owns the last part of ``loc`` (walking through dicts of models such as prices)."""
    model: type[BaseModel] | None = root
    skip_dict_key = False
    for part in loc[:-1]:
        if skip_dict_key:
            skip_dict_key = False
            continue
        if model is None or str(part) not in model.model_fields:
            return None
        annotation = model.model_fields[str(part)].annotation
        value_model = _dict_value_model(annotation)
        if value_model is not None:
            model, skip_dict_key = value_model, True
        else:
            model = _model_of(annotation)
    return model


def closest_key(root: type[BaseModel], loc: tuple[str | int, ...]) -> str | None:
    """The valid key that an unknown one most likely meant: in its own section, or a same-named key elsewhere."""
    wrong = str(loc[-1]).lower()
    section = [str(part) for part in loc[:-1]]
    parent = _parent_model(root, loc)
    candidates = {".".join([*section, name]): name for name in (parent.model_fields if parent else ())}
    for key in valid_keys(root):
        candidates.setdefault(key, key.rsplit(".", 1)[-1])

    def score(key: str) -> tuple[float, bool]:
        return difflib.SequenceMatcher(None, wrong, candidates[key]).ratio(), key.startswith(".".join(section))

    best = max(candidates, key=score, default=None)
    return best if best is not None and score(best)[0] >= 0.6 else None


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def file_keys(path: Path) -> dict[str, Any]:
    """The dotted keys set in a TOML file (empty when it is missing or unreadable: load_settings says why)."""
    try:
        return dict(_flatten(tomllib.loads(path.read_text(encoding="utf-8"))))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def env_keys(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Dotted key -> the ``NIGHTLOOP_*`` variable that sets it (nested with ``__``)."""
    environ = os.environ if environ is None else environ
    found = {}
    for name in environ:
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in NOT_SETTINGS:
            found[".".join(name[len(ENV_PREFIX):].lower().split("__"))] = name
    return found


def key_source(key: str, *, path: Path, overrides: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str:
    """Where ``key`` (or the section holding it) was set: the highest-precedence source wins."""
    parts = key.split(".")
    prefixes = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
    flat_overrides = dict(_flatten(overrides))
    env = env_keys(environ)
    in_file = file_keys(path)
    for prefix in prefixes:
        if prefix in flat_overrides or any(k.startswith(prefix + ".") for k in flat_overrides):
            return "command line"
    for prefix in prefixes:
        if prefix in env:
            return f"env {env[prefix]}"
    for prefix in prefixes:
        if prefix in in_file or any(k.startswith(prefix + ".") for k in in_file):
            return str(path)
    return DEFAULT


def effective_settings(settings: BaseModel, *, path: Path, overrides: Mapping[str, Any]) -> list[SettingLine]:
    """Every setting's value and where it came from; each model price is one line."""
    lines = []
    dumped = settings.model_dump(mode="json")
    prices = dumped.get("llm", {}).pop("prices", {})
    for key, value in _flatten(dumped):
        lines.append(SettingLine(key=key, value=value, source=key_source(key, path=path, overrides=overrides)))
    for model, price in sorted(prices.items()):
        key = f"llm.prices.{model}"
        lines.append(
            SettingLine(key=f'llm.prices."{model}"', value=price, source=key_source(key, path=path, overrides=overrides))
        )
    return lines
