"""Typed configuration: pydantic models, YAML files, presets and ``key.sub=value`` overrides.

Every command's options live in one pydantic model (defaults in one place, a one-line
``description`` per field, range checks in the field constraints). A config is resolved from,
in rising priority:

1. the model's defaults,
2. a named preset shipped in ``synthbench/presets/<group>/<name>.yaml``,
3. a user YAML file (``--config FILE``),
4. the command's own flags,
5. ``key.sub=value`` overrides from the command line.

Any error (unknown key, wrong type, value out of range) becomes a :class:`ConfigError` that names
the key and where the offending value came from (the file, or the command line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from synthbench.errors import ConfigError

__all__ = [
    "StrictModel",
    "ConfigError",
    "resolve_config",
    "parse_overrides",
    "preset_names",
    "preset_path",
    "read_yaml",
    "dump_config",
]

M = TypeVar("M", bound=BaseModel)
_COMMAND_LINE = "the command line"


class StrictModel(BaseModel):
    """Base of every config: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


@dataclass
class _Layered:
    """A nested dict merged from several origins, remembering where each leaf came from."""

    values: dict[str, Any] = field(default_factory=dict)
    origin: dict[tuple[str, ...], str] = field(default_factory=dict)

    def merge(self, data: dict[str, Any], origin: str, prefix: tuple[str, ...] = ()) -> None:
        target = self.values
        for key in prefix:
            target = target.setdefault(key, {})
        for key, value in data.items():
            path = prefix + (str(key),)
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                self.merge(value, origin, path)
                continue
            target[key] = value
            # Drop stale origins below a replaced subtree, then record this one.
            for known in [p for p in self.origin if p[: len(path)] == path]:
                del self.origin[known]
            self.origin[path] = origin
            if isinstance(value, dict):
                for sub in _leaf_paths(value, path):
                    self.origin[sub] = origin

    def origin_of(self, path: tuple[str, ...]) -> str | None:
        for cut in range(len(path), 0, -1):
            found = self.origin.get(path[:cut])
            if found is not None:
                return found
        return None


def _leaf_paths(data: dict[str, Any], prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    paths = []
    for key, value in data.items():
        path = prefix + (str(key),)
        paths.append(path)
        if isinstance(value, dict):
            paths.extend(_leaf_paths(value, path))
    return paths


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, bad YAML or a non-mapping is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ``["a.b=3", "c=[1, 2]"]`` into ``{"a": {"b": 3}, "c": [1, 2]}``.

    Values are parsed as YAML scalars/flow collections, so ``3`` is an int, ``0.5`` a float,
    ``true`` a bool, ``null`` None and ``[0.5, 0.9]`` a list; anything else stays a string.
    """
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} on {_COMMAND_LINE} is not of the form key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        target = result
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = target.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of {part!r}")
            target = nxt
        target[parts[-1]] = value
    return result


def preset_names(group: str) -> list[str]:
    """Names of the presets shipped for a config group (e.g. ``data``)."""
    folder = resources.files("synthbench") / "presets" / group
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_path(group: str, name: str) -> Path:
    """Path of a shipped preset; an unknown name is a ConfigError listing the known ones."""
    folder = resources.files("synthbench") / "presets" / group
    candidate = folder / f"{name}.yaml"
    if not candidate.is_file():
        known = ", ".join(preset_names(group)) or "none"
        raise ConfigError(f"unknown {group} preset {name!r}; known presets: {known}")
    return Path(str(candidate))


def resolve_config(
    model: type[M],
    *,
    preset: tuple[str, str] | None = None,
    base: tuple[dict[str, Any], str] | None = None,
    config_file: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> M:
    """Build a validated ``model`` from defaults < preset < base < file < flags < overrides.

    ``preset`` is ``(group, name)``; ``base`` is ``(values, where they came from)``, e.g. the
    config saved in a run folder that is being resumed. ``flags`` are the command's own options (``None`` values
    mean "not given" and are left out so they do not hide a preset's value).
    """
    layers = _Layered()
    if preset is not None:
        path = preset_path(*preset)
        layers.merge(read_yaml(path), f"preset {preset[1]!r} ({path})")
    if base is not None:
        layers.merge(base[0], base[1])
    if config_file is not None:
        layers.merge(read_yaml(config_file), f"config file {config_file}")
    if flags:
        given = {k: v for k, v in flags.items() if v is not None}
        layers.merge(given, _COMMAND_LINE)
    if overrides:
        layers.merge(parse_overrides(overrides), _COMMAND_LINE)
    return validate(model, layers.values, layers.origin_of)


def validate(model: type[M], data: dict[str, Any], origin_of=lambda path: None) -> M:
    """Validate ``data`` against ``model``, turning pydantic's errors into one ConfigError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            key = ".".join(loc) or "(top level)"
            where = origin_of(loc)
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                parent = _submodel(model, loc[:-1])
                known = ", ".join(parent.model_fields) if parent is not None else ""
                msg = f"unknown key (known keys: {known})" if known else "unknown key"
            elif "input" in err and err["type"] != "missing" and loc:
                msg = f"{msg} (got {err['input']!r})"
            msg = msg.removeprefix("Value error, ")
            if not loc:  # a check across several keys
                problems.append(msg + (f" (in {where})" if where else ""))
            else:
                problems.append(f"key {key!r}" + (f" in {where}" if where else "") + f": {msg}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def _submodel(model: type[BaseModel], loc: tuple[str, ...]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return None
        current = info.annotation
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def dump_config(config: BaseModel) -> dict[str, Any]:
    """A JSON/YAML-ready dict of a resolved config."""
    return config.model_dump(mode="json")
