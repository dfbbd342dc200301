"""Typed configuration: YAML files, presets, key=value overrides and the errors they give."""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from synthworth.config import (
    dump_config,
    parse_overrides,
    preset_names,
    preset_path,
    read_yaml,
    resolve_config,
)
from synthworth.data.prepare import PrepareConfig
from synthworth.errors import ConfigError, SynthworthError

# Every preset group shipped under synthworth/presets/ and the model its files must load into
# ("module:Class", imported only by the tests that need it), with the keys a user has to add on
# the command line (e.g. the path of a download) for a preset to be complete. New groups add
# their entry here; a group without an entry fails test_every_shipped_yaml_loads_against_its_model.
PRESET_MODELS: dict[str, tuple[str, dict]] = {
    "data": ("synthworth.data.prepare:PrepareConfig", {"path": "downloads/somewhere"}),
    "dcgan": ("synthworth.generators.dcgan:DCGANConfig", {}),
    "classifier": ("synthworth.classifiers.task:ClassifierConfig", {}),
    "ddpm": ("synthworth.generators.diffusion:DiffusionConfig", {}),
    "ldm": ("synthworth.generators.diffusion:LDMConfig", {}),
    "vae": ("synthworth.generators.diffusion:VAEConfig", {}),
    "themes": ("synthworth.themes:Theme", {}),
}


def _model(group: str) -> type[BaseModel]:
    module, _, name = PRESET_MODELS[group][0].partition(":")
    return getattr(importlib.import_module(module), name)


def _assert_contains(loaded, given, where: str) -> None:
    """Every value a preset file sets is what the resolved config holds (nested dicts too)."""
    if isinstance(given, dict):
        assert isinstance(loaded, dict), f"{where}: expected a mapping, config has {loaded!r}"
        for key, value in given.items():
            _assert_contains(loaded[key], value, f"{where}.{key}" if where else key)
    else:
        assert loaded == given, f"{where} loads as {loaded!r}, the file says {given!r}"


def _yaml(tmp_path: Path, text: str, name: str = "options.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ file errors
@pytest.mark.parametrize("text,key,reason", [
    ("source: digits\nsizee: 32\n", "sizee", "unknown key; did you mean 'size'? (known keys: source, path, size,"),
    ("source: digits\nsize: big\n", "size", "valid integer"),
    ("source: digits\nsize: 2\n", "size", "greater than or equal to 4"),
    ("source: digits\nsize: 99999\n", "size", "less than or equal to 4096"),
    ("source: digits\ntest_fraction: 1.0\n", "test_fraction", "less than 1"),
    ("source: digits\nfit: zoom\n", "fit", "'crop', 'pad' or 'stretch'"),
    ("source: digits\nworkers: -1\n", "workers", "greater than or equal to 0"),
    ("source: digits\nclasses: [cat, [dog]]\n", "classes.1", "valid string"),
    ("source: webcam\n", "source", "'folder', 'animals10'"),
])
def test_yaml_errors_name_the_key_and_the_file(tmp_path, text, key, reason):
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        resolve_config(PrepareConfig, config_file=path)
    message = str(info.value)
    assert f"key {key!r} in config file {path}" in message
    assert reason in message
    assert "\n" not in message


def test_all_problems_of_a_file_are_reported_together(tmp_path):
    path = _yaml(tmp_path, "source: digits\nsize: 1\nseedd: 3\n")
    with pytest.raises(ConfigError) as info:
        resolve_config(PrepareConfig, config_file=path)
    message = str(info.value)
    assert f"key 'size' in config file {path}" in message
    assert f"key 'seedd' in config file {path}" in message


def test_cross_field_rule_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="source 'folder' needs a path"):
        resolve_config(PrepareConfig, config_file=_yaml(tmp_path, "size: 32\n"))
    with pytest.raises(ConfigError, match="label_attr only applies to the celeba source"):
        resolve_config(PrepareConfig, overrides=["source=digits", "label_attr=Smiling"])
    with pytest.raises(ConfigError, match="within 0..255"):
        resolve_config(PrepareConfig, overrides=["source=digits", "background=[0, 300, 0]"])


@pytest.mark.parametrize("text,reason", [
    ("size: [unclosed\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping of keys to values, got list"),
])
def test_unreadable_yaml_names_the_file(tmp_path, text, reason):
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert str(path) in str(info.value) and reason in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_empty_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file .*nope.yaml does not exist"):
        resolve_config(PrepareConfig, config_file=tmp_path / "nope.yaml")
    assert read_yaml(_yaml(tmp_path, "# only a comment\n")) == {}


# ------------------------------------------------------------------------------------ overrides
@pytest.mark.parametrize("items,key,reason", [
    (["source=digits", "sizee=32"], "sizee", "unknown key"),
    (["source=digits", "size=big"], "size", "valid integer"),
    (["source=digits", "size=3"], "size", "greater than or equal to 4"),
    (["source=digits", "max_per_class=0"], "max_per_class", "greater than or equal to 1"),
    (["source=digits", "strict=maybe"], "strict", "valid boolean"),
])
def test_override_errors_name_the_key_and_the_command_line(items, key, reason):
    with pytest.raises(ConfigError) as info:
        resolve_config(PrepareConfig, overrides=items)
    message = str(info.value)
    assert f"key {key!r} in the command line" in message
    assert reason in message


def test_an_override_fixes_a_bad_file_value_and_origins_follow(tmp_path):
    path = _yaml(tmp_path, "source: digits\nsize: 2\nfit: zoom\n")
    with pytest.raises(ConfigError) as info:
        resolve_config(PrepareConfig, config_file=path, overrides=["size=8"])
    message = str(info.value)
    assert "'size'" not in message  # the override replaced the bad value
    assert f"key 'fit' in config file {path}" in message
    config = resolve_config(PrepareConfig, config_file=path, overrides=["size=8", "fit=pad"])
    assert (config.size, config.fit) == (8, "pad")


def test_parse_overrides_types():
    parsed = parse_overrides(["a.b=3", "a.c=0.5", "flag=true", "none=null", "names=[cat, dog]",
                              "text=hello world", "empty=", "colour=[1, 2, 3]"])
    assert parsed == {"a": {"b": 3, "c": 0.5}, "flag": True, "none": None,
                      "names": ["cat", "dog"], "text": "hello world", "empty": "",
                      "colour": [1, 2, 3]}


@pytest.mark.parametrize("item", ["size", "=3", "a..b=1", ".a=1"])
def test_malformed_override(item):
    with pytest.raises(ConfigError, match="on the command line is not of the form key.sub=value"):
        parse_overrides([item])


def test_conflicting_overrides():
    with pytest.raises(ConfigError, match="conflicts with an earlier override of 'a'"):
        parse_overrides(["a=1", "a.b=2"])


# ------------------------------------------------------------------------------------ layering
def test_layers_rise_from_defaults_to_overrides(tmp_path):
    path = _yaml(tmp_path, "size: 24\nseed: 5\n")
    base = resolve_config(PrepareConfig, preset=("data", "digits"))
    assert (base.source, base.size, base.fit, base.seed) == ("digits", 16, "stretch", 0)
    assert base.test_fraction == 0.2 and base.workers is None  # a model default
    from_file = resolve_config(PrepareConfig, preset=("data", "digits"), config_file=path)
    assert (from_file.size, from_file.seed, from_file.fit) == (24, 5, "stretch")
    flagged = resolve_config(PrepareConfig, preset=("data", "digits"), config_file=path,
                             flags={"size": 28, "seed": None})
    assert (flagged.size, flagged.seed) == (28, 5)  # None means "flag not given"
    top = resolve_config(PrepareConfig, preset=("data", "digits"), config_file=path,
                         flags={"size": 28}, overrides=["size=32"])
    assert top.size == 32


def test_preset_errors_name_the_preset_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        resolve_config(PrepareConfig, preset=("data", "digits"), overrides=["source=folder"])
    # The rule that folder needs a path is not tied to one key; the message still says why.
    assert "needs a path" in str(info.value)
    with pytest.raises(ConfigError, match="unknown data preset 'nope'; known presets: .*digits"):
        resolve_config(PrepareConfig, preset=("data", "nope"))


def test_resolved_config_round_trips(tmp_path):
    config = resolve_config(PrepareConfig, preset=("data", "lfw-faces"), overrides=["seed=3"])
    dumped = dump_config(config)
    assert dumped["classes"] == ["face"] and dumped["seed"] == 3
    path = _yaml(tmp_path, yaml.safe_dump(dumped))
    assert resolve_config(PrepareConfig, config_file=path) == config


def test_config_error_is_a_user_error():
    assert issubclass(ConfigError, SynthworthError)


# ------------------------------------------------------------------------------------ shipped files
def _shipped_presets() -> list[tuple[str, str]]:
    root = resources.files("synthworth") / "presets"
    found = []
    for group in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for file in sorted(p.name for p in (root / group).iterdir()):
            if file.endswith((".yaml", ".yml")):
                found.append((group, file))
    return found


def test_presets_are_shipped():
    shipped = _shipped_presets()
    assert ("data", "digits.yaml") in shipped
    assert len([g for g, _ in shipped if g == "data"]) == 5
    # A model registered for a group that ships no preset is a stale entry.
    assert set(PRESET_MODELS) <= {g for g, _ in shipped}


@pytest.mark.parametrize("group,file", _shipped_presets())
def test_every_shipped_yaml_loads_against_its_model(group, file):
    assert group in PRESET_MODELS, (
        f"presets/{group}/ has no model in PRESET_MODELS; add the config class it is loaded into")
    assert file.endswith(".yaml"), f"presets/{group}/{file}: name presets *.yaml so they are found"
    model, completion = _model(group), PRESET_MODELS[group][1]
    name = file[: -len(".yaml")]
    assert name in preset_names(group)
    values = read_yaml(preset_path(group, name))
    assert values, f"presets/{group}/{file} is empty"
    flags = {k: v for k, v in completion.items() if k not in values}
    config = resolve_config(model, preset=(group, name), flags=flags)
    assert isinstance(config, model)
    _assert_contains(dump_config(config), values, "")


@pytest.mark.parametrize("group", sorted(PRESET_MODELS))
def test_every_config_field_has_a_one_line_description(group):
    model = _model(group)

    def check(cls: type[BaseModel], prefix: str) -> None:
        for name, info in cls.model_fields.items():
            where = f"{cls.__name__}.{prefix}{name}"
            assert info.description and info.description.strip(), f"{where} has no description"
            assert "\n" not in info.description, f"{where}: description is not one line"
            sub = info.annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                check(sub, f"{prefix}{name}.")

    check(model, "")
    assert len(model.model_fields) >= 3


# ------------------------------------------------------------------------------------ typing by field
def test_a_text_field_takes_the_text_typed_and_numbers_stay_numbers(tmp_path):
    from synthworth.engine.config import TrainConfig
    from synthworth.study.spec import StudySpec

    # YAML reads no as False; the field is no|fp16|bf16, so the user meant "no".
    train = resolve_config(TrainConfig, overrides=["mixed_precision=no", "epochs=3", "progress=no"])
    assert (train.mixed_precision, train.epochs, train.progress) == ("no", 3, False)
    spec = resolve_config(StudySpec, overrides=["compositions=[real]", "real=2024-01-01", "name=1.0e-3", "out=yes", "ratio=1.0e-1",
                                                "seeds=[1, 2]", "synthetic.gan.path=0.5",
                                                "synthetic.gan.class_map={cat: no, dog: null}"])
    assert (spec.real, spec.name, spec.out, spec.ratio, spec.seeds) == ("2024-01-01", "1.0e-3", "yes", 0.1, [1, 2])
    assert spec.synthetic["gan"].path == "0.5" and spec.synthetic["gan"].class_map == {"cat": "no", "dog": None}
    # The same in a YAML file, and an optional text field still takes null as "none".
    path = _yaml(tmp_path, "mixed_precision: no\nepochs: 2\n")
    assert resolve_config(TrainConfig, config_file=path).mixed_precision == "no"
    assert resolve_config(StudySpec, overrides=["real=x", "compositions=[real]", "out=null"]).out is None


def test_list_fields_are_typed_item_by_item():
    from synthworth.study.spec import StudySpec

    config = resolve_config(PrepareConfig, overrides=["source=digits", "classes=[yes, 1.0e-3, 3, 'no']"])
    assert config.classes == ["yes", "1.0e-3", "3", "no"]
    spec = resolve_config(StudySpec, overrides=["real=x", "synthetic.g=y", "sizes=[10, 20]", "ratios=[0.5, 1]",
                                                "comparisons=[[real, mixed]]"])
    assert spec.sizes == [10, 20] and spec.ratios == [0.5, 1.0] and spec.comparisons == [("real", "mixed")]


def test_the_study_classifier_section_is_typed_by_the_classifier_config():
    from synthworth.study.spec import StudySpec, classifier_config

    spec = resolve_config(StudySpec, overrides=["real=x", "compositions=[real]", "classifier_preset=tiny",
                                                "classifier.train.mixed_precision=no", "classifier.train.epochs=2"])
    config = classifier_config(spec)
    assert (config.train.mixed_precision, config.train.epochs) == ("no", 2)


@pytest.mark.parametrize("items,key", [
    (["epochs=many"], "epochs"),
    (["mixed_precision=fp8"], "mixed_precision"),
    (["grid_epochs=[1, x]"], "grid_epochs.1"),
    (["epochs=[1, 2]"], "epochs"),
])
def test_wrong_types_are_still_one_line_naming_the_key(items, key):
    from synthworth.engine.config import TrainConfig

    with pytest.raises(ConfigError) as info:
        resolve_config(TrainConfig, overrides=items)
    assert f"key {key!r} in the command line" in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------------ did you mean
def _follow(message: str, items: list[str], typo: str) -> list[str]:
    """The overrides with the mistyped key or value replaced by the suggestion of ``message``."""
    import re

    found = re.search(r"did you mean '([^']+)'\?", message)
    assert found, message
    fixed = []
    for item in items:
        key, _, value = item.partition("=")
        if key == typo:
            key = found.group(1)
        elif typo in value:
            value = value.replace(typo, found.group(1))
        fixed.append(f"{key}={value}")
    return fixed


SUGGESTIONS = [
    ("synthworth.study.spec:StudySpec", ["real=x", "compositions=[real]", "seed=[1]"], "seed", "seeds"),
    ("synthworth.study.spec:StudySpec", ["real=x", "compositions=[real, mixd]", "synthetic.g=y"], "mixd", "mixed"),
    ("synthworth.study.spec:StudySpec", ["real=x", "compositions=[real]", "metrics.enabeld=true"], "metrics.enabeld", "metrics.enabled"),
    ("synthworth.data.prepare:PrepareConfig", ["source=digit"], "digit", "digits"),
    ("synthworth.data.prepare:PrepareConfig", ["source=digits", "fit=Crop"], "Crop", "crop"),
    ("synthworth.generators.dcgan:DCGANConfig", ["train.epoch=2"], "train.epoch", "train.epochs"),
    # a section's key given at the top: that key (not the look-alike `grid_seed`, which is the sample grid's)
    ("synthworth.generators.dcgan:DCGANConfig", ["seed=3"], "seed", "train.seed"),
    ("synthworth.generators.diffusion:DiffusionConfig", ["sampling.sampler=ddm"], "ddm", "ddpm"),
]


@pytest.mark.parametrize("model,items,typo,suggestion", SUGGESTIONS, ids=[s[2] for s in SUGGESTIONS])
def test_a_typo_gets_a_suggestion_that_works(model, items, typo, suggestion):
    module, _, name = model.partition(":")
    cls = getattr(importlib.import_module(module), name)
    with pytest.raises(ConfigError) as info:
        resolve_config(cls, overrides=items)
    assert f"did you mean {suggestion!r}?" in str(info.value)
    resolve_config(cls, overrides=_follow(str(info.value), items, typo))  # no error: the advice works


def test_a_typo_in_a_yaml_file_and_in_the_study_classifier_section(tmp_path):
    from synthworth.study.spec import classifier_config, load_spec

    path = _yaml(tmp_path, "real: x\ncompositions: [real]\nseed: [1]\n", "spec.yaml")
    with pytest.raises(ConfigError, match=f"key 'seed' in config file {path}: unknown key; did you mean 'seeds'"):
        load_spec(path)
    fixed = _yaml(tmp_path, "real: x\ncompositions: [real]\nseeds: [1]\nclassifier: {train: {epoch: 1}}\n", "fixed.yaml")
    spec, _ = load_spec(fixed)  # the suggestion followed: the spec loads
    with pytest.raises(ConfigError, match="key 'classifier.train.epoch' .* did you mean 'classifier.train.epochs'"):
        classifier_config(spec)
    fixed.write_text(fixed.read_text().replace("epoch:", "epochs:"))
    assert classifier_config(load_spec(fixed)[0]).train.epochs == 1


def test_a_mistyped_preset_gets_the_closest_name():
    with pytest.raises(ConfigError, match="unknown data preset 'digit'; did you mean 'digits'\\? Known presets: "):
        preset_path("data", "digit")
    assert preset_path("data", "digits").is_file()
    with pytest.raises(ConfigError, match="unknown data preset 'zzz'; known presets: "):  # nothing close: no guess
        preset_path("data", "zzz")


def test_a_repeated_or_mistyped_key_on_the_command_line_is_named(capsys, tmp_path):
    """Through the CLI: a key typed twice (or a key and its sub-key) is named in a warning (the
    later value wins, as when a changed value is appended to the original command); a typo is an
    error naming the key it meant. Nothing is written."""
    from synthworth.cli import main

    argv = ["train", "dcgan", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    assert main([*argv, "train.epochs=2", "train.epochs=3"]) == 2     # the missing Dataset
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("synthworth: warning: key 'train.epochs' is given twice on the command line "
                      "('train.epochs=2', then 'train.epochs=3'); the later one is used")
    assert err[1].startswith("synthworth: error: Dataset folder") and len(err) == 2
    assert main([*argv, "train.epochs=2", "train={epochs: 3}"]) == 2
    assert ("'train.epochs=2' and 'train={epochs: 3}' overlap on the command line"
            in capsys.readouterr().err)
    assert main([*argv, "train.epoch=2"]) == 2
    assert "key 'train.epoch' in the command line: unknown key; did you mean 'train.epochs'?" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
