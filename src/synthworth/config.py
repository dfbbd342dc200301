"""Typed configuration: pydantic models, YAML files, presets and ``key.sub=value`` overrides.

Every command's options live in one pydantic model (defaults in one place, a one-line
``description`` per field, range checks in the field constraints). A config is resolved from,
in rising priority:

1. the model's defaults,
2. a named preset shipped in ``synthworth/presets/<group>/<name>.yaml``,
3. a user YAML file (``--config FILE``),
4. the command's own flags,
5. ``key.sub=value`` overrides from the command line.

Any error (unknown key, wrong type, value out of range) becomes a :class:`ConfigError` that names
the key and where the offending value came from (the file, or the command line).
"""

from __future__ import annotations

import difflib
import enum
import importlib
import types
import typing
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from synthworth.errors import ConfigError

__all__ = [
    "StrictModel",
    "ConfigError",
    "resolve_config",
    "parse_overrides",
    "preset_names",
    "preset_path",
    "read_yaml",
    "dump_config",
    "did_you_mean",
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


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a YAML mapping; a missing file, bad YAML or a non-mapping is a ConfigError."""
    path = Path(path)
    if path.is_dir():
        hint = (f"; it is a study's results folder: to see them: synthworth report {path}"
                if (path / "results.csv").is_file() else "")
        raise ConfigError(f"config file {path} is a folder, not a YAML file{hint}")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not a text file (not UTF-8); give a YAML file") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def _read_yaml_text(path: str | Path) -> Any:
    """The same file with every scalar kept as the text the user wrote (see :func:`typed_like`)."""
    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=yaml.BaseLoader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def parse_overrides(items: list[str] | tuple[str, ...], model: type[BaseModel] | None = None) -> dict[str, Any]:
    """Turn ``["a.b=3", "c=[1, 2]"]`` into ``{"a": {"b": 3}, "c": [1, 2]}``.

    Values are parsed as YAML scalars/flow collections, so ``3`` is an int, ``0.5`` a float,
    ``true`` a bool, ``null`` None and ``[0.5, 0.9]`` a list; anything else stays a string.
    Given the ``model`` the overrides are for, a value whose field is a string (or a choice of
    strings) is the text as typed: ``train.mixed_precision=no`` is ``"no"``, not ``False``.
    """
    typed, text = _parse_overrides(items)
    return typed_like(model, typed, text) if model is not None else typed


def _parse_overrides(items) -> tuple[dict[str, Any], dict[str, Any]]:
    """The overrides twice: YAML-typed, and with every scalar as the text typed."""
    result: dict[str, Any] = {}
    texts: dict[str, Any] = {}
    given: dict[str, str] = {}  # key -> the item that set it
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} on {_COMMAND_LINE} is not of the form key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
            text = yaml.load(raw, Loader=yaml.BaseLoader) if raw.strip() else ""  # noqa: S506
        except yaml.YAMLError:
            value = text = raw
        parts = key.split(".")
        for tree, leaf in ((result, value), (texts, text)):
            target = tree
            for part in parts[:-1]:
                nxt = target.setdefault(part, {})
                if not isinstance(nxt, dict):
                    raise ConfigError(f"override {item!r} conflicts with an earlier override of {part!r}")
                target = nxt
            target[parts[-1]] = leaf
        _check_once(key, item, given)  # after the conflicts that cannot apply at all were refused
    return result, texts


def last_wins(items: list[str] | tuple[str, ...]) -> list[str]:
    """``KEY=VALUE`` items with each key once, the later value kept (for code that adds its own
    overrides after a plan's, without the warning a repeated key of a command line gets)."""
    return list({item.partition("=")[0].strip(): item for item in items}.values())


class OverrideWarning(UserWarning):
    """A ``KEY=VALUE`` override that replaces an earlier one of the same command line."""


def _check_once(key: str, item: str, given: dict[str, str]) -> None:
    """Name a key given twice, or a key and one of its sub-keys (``a.b=1 a={...}``): the later
    one wins, as in a shell habit of appending a changed value to the original command (``...
    --resume optim.lr=1e-4``), but a typed-over value must not pass unsaid."""
    for earlier, earlier_item in given.items():
        if earlier == key or earlier.startswith(key + ".") or key.startswith(earlier + "."):
            what = f"key {key!r} is given twice" if earlier == key else f"{earlier_item!r} and {item!r} overlap"
            warnings.warn(f"{what} on {_COMMAND_LINE} ({earlier_item!r}, then {item!r}); the later one is used",
                          OverrideWarning, stacklevel=5)
    given[key] = item


# ------------------------------------------------------------------------------------ typing by field
def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_text(annotation: Any) -> bool:
    """A field that holds text: str, Path, a string enum, or a Literal of strings only."""
    annotation = _strip(annotation)
    if typing.get_origin(annotation) is Literal:
        return all(isinstance(v, str) for v in typing.get_args(annotation))
    return isinstance(annotation, type) and (issubclass(annotation, (str, Path))
                                             or (issubclass(annotation, enum.Enum)
                                                 and all(isinstance(m.value, str) for m in annotation)))


def _field_model(info) -> type[BaseModel] | None:
    """A ``dict[str, Any]`` field whose keys belong to another config (``config_model`` in the
    field's json_schema_extra, "module:Class"), e.g. a study spec's ``classifier`` section."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    name = extra.get("config_model")
    if not isinstance(name, str):
        return None
    module, _, cls = name.partition(":")
    return getattr(importlib.import_module(module), cls)


def typed_like(annotation: Any, typed: Any, text: Any) -> Any:
    """``typed`` (YAML's reading) with each scalar whose field holds text replaced by ``text``
    (the same value as the user wrote it), found by the pydantic field annotations.

    YAML reads ``no`` as False, ``1.0e-3`` as 0.001 and ``2024-01-01`` as a date; where the field
    is a string (``train.mixed_precision: no|fp16|bf16``, a name, a path) the user meant the
    text, so the text is kept. Numeric and boolean fields keep YAML's typing; anything the
    annotations do not describe is left as YAML read it.
    """
    annotation = _strip(annotation)
    if annotation is None or annotation is Any:
        return typed
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(typed, dict):
            return typed
        texts = text if isinstance(text, dict) else {}
        out = {}
        for key, value in typed.items():
            info = annotation.model_fields.get(key)
            if info is None:
                out[key] = value
                continue
            sub = _field_model(info)
            out[key] = typed_like(sub or info.annotation, value, texts.get(key))
        return out
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if typed is None:
            return None
        rest = [a for a in args if a is not type(None)]
        if all(_is_text(a) for a in rest):
            return typed_like(rest[0], typed, text)
        return typed_like(rest[0], typed, text) if len(rest) == 1 else typed
    if origin in (list, set, frozenset, tuple) and isinstance(typed, list):
        texts = text if isinstance(text, list) and len(text) == len(typed) else [None] * len(typed)
        if origin is tuple and args and args[-1] is not Ellipsis:
            items = list(args) + [Any] * (len(typed) - len(args))
        else:
            items = [args[0] if args else Any] * len(typed)
        return [typed_like(a, v, t) for a, v, t in zip(items, typed, texts)]
    if origin is dict and isinstance(typed, dict) and len(args) == 2:
        texts = text if isinstance(text, dict) else {}
        return {k: typed_like(args[1], v, texts.get(k)) for k, v in typed.items()}
    if _is_text(annotation) and not isinstance(typed, (str, list, dict)) and isinstance(text, str) and text:
        return text
    return typed


def preset_names(group: str) -> list[str]:
    """Names of the presets shipped for a config group (e.g. ``data``)."""
    folder = resources.files("synthworth") / "presets" / group
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def did_you_mean(word: Any, choices, *, prefix: str = "") -> str:
    """``"; did you mean 'digits'?"`` for the closest of ``choices`` to a mistyped ``word``
    (difflib, as click does for sub-commands), or "" when none is close. ``prefix`` is put
    before the suggestion (e.g. the parent keys of a nested key) so it can be typed as shown."""
    if not isinstance(word, str):
        return ""
    choices = [str(c) for c in choices]
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:  # "DIGITS", "Mixed": the same name in another case
        close = [c for c in choices if c.casefold() == word.casefold()][:1]
    return f"; did you mean {prefix + close[0]!r}?" if close else ""


def preset_path(group: str, name: str) -> Path:
    """Path of a shipped preset; an unknown name is a ConfigError listing the known ones."""
    folder = resources.files("synthworth") / "presets" / group
    candidate = folder / f"{name}.yaml"
    if "/" in name or "\\" in name or not candidate.is_file():
        known = preset_names(group)
        hint = did_you_mean(name, known)
        raise ConfigError(f"unknown {group} preset {name!r}{hint}{' K' if hint else '; k'}nown presets: "
                          f"{', '.join(known) or 'none'}")
    return Path(str(candidate))


def resolve_config(
    model: type[M],
    *,
    preset: tuple[str, str] | None = None,
    base: tuple[dict[str, Any], str] | None = None,
    config_file: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    key_prefix: str = "",
) -> M:
    """Build a validated ``model`` from defaults < preset < base < file < flags < overrides.

    ``preset`` is ``(group, name)``; ``base`` is ``(values, where they came from)``, e.g. the
    config saved in a run folder that is being resumed. ``flags`` are the command's own options (``None`` values
    mean "not given" and are left out so they do not hide a preset's value). Values of files and
    overrides are typed by the model's fields (:func:`typed_like`). ``key_prefix`` is put before
    every key an error names, for a config that is a section of another (``classifier.``).
    """
    layers = _Layered()
    if preset is not None:
        path = preset_path(*preset)
        layers.merge(typed_like(model, read_yaml(path), _read_yaml_text(path)), f"preset {preset[1]!r} ({path})")
    if base is not None:
        layers.merge(base[0], base[1])
    if config_file is not None:
        layers.merge(typed_like(model, read_yaml(config_file), _read_yaml_text(config_file)),
                     f"config file {config_file}")
    if flags:
        given = {k: v for k, v in flags.items() if v is not None}
        layers.merge(given, _COMMAND_LINE)
    if overrides:
        layers.merge(parse_overrides(overrides, model), _COMMAND_LINE)
    return validate(model, layers.values, layers.origin_of, key_prefix=key_prefix)


def validate(model: type[M], data: dict[str, Any], origin_of=lambda path: None, *, key_prefix: str = "") -> M:
    """Validate ``data`` against ``model``, turning pydantic's errors into one ConfigError (an
    unknown key or choice with the closest known one, as a "did you mean")."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            key = key_prefix + ".".join(loc) if loc else "(top level)"
            where = origin_of(loc)
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                parent = _submodel(model, loc[:-1])
                known = list(parent.model_fields) if parent is not None else []
                prefix = key_prefix + "".join(p + "." for p in loc[:-1])
                # `seed` where only `train.seed` exists: that key, not a look-alike (`grid_seed`).
                nested = [f"{name}.{loc[-1]}" for name in known
                          if loc[-1] in getattr(_optional_of(parent.model_fields[name].annotation), "model_fields", {})]
                near = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.8)  # `seed` -> `seeds` first
                hint = (f"; did you mean {prefix + nested[0]!r}?" if nested and not near
                        else did_you_mean(loc[-1], known, prefix=prefix))
                msg = f"unknown key{hint} (known keys: {', '.join(known)})" if known else "unknown key"
            elif "input" in err and err["type"] != "missing" and loc:
                msg = f"{msg} (got {err['input']!r})"
                if err["type"] == "literal_error":
                    msg += did_you_mean(err["input"], _literal_values(model, err["loc"]))
            msg = msg.removeprefix("Value error, ")
            if not loc:  # a check across several keys
                problems.append(msg + (f" (in {where})" if where else ""))
            else:
                problems.append(f"key {key!r}" + (f" in {where}" if where else "") + f": {msg}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def _optional_of(annotation: Any) -> Any:
    """``X`` for ``X | None`` (and Annotated[...]); anything else unchanged."""
    annotation = _strip(annotation)
    rest = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(rest) == 1:
        return _strip(rest[0])
    return annotation


def _literal_values(model: type[BaseModel], loc: tuple) -> list:
    """The choices of the Literal field at pydantic's error location ``loc`` (through lists,
    tuples, dicts and optional values); [] where the annotations do not lead to one."""
    current: Any = model
    for part in loc:
        current = _optional_of(current)
        origin, args = typing.get_origin(current), typing.get_args(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return []
            current = info.annotation
        elif origin in (list, set, frozenset) and args:
            current = args[0]
        elif origin is tuple and args and isinstance(part, int):
            current = args[0] if args[-1] is Ellipsis else args[min(part, len(args) - 1)]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            return []
    current = _optional_of(current)
    return list(typing.get_args(current)) if typing.get_origin(current) is Literal else []


def _submodel(model: type[BaseModel], loc: tuple[str, ...]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        current = _optional_of(current)
        if typing.get_origin(current) is dict:  # a map of named entries (the spec's generators): the part is a name
            current = typing.get_args(current)[1]
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return None
        current = info.annotation
    current = _optional_of(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def dump_config(config: BaseModel) -> dict[str, Any]:
    """A JSON/YAML-ready dict of a resolved config."""
    return config.model_dump(mode="json")
