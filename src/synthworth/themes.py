"""Prompt themes for text-to-image generation: the subjects (the classes), word lists and a template.

The source study built every prompt as ``"A {distance} picture of a {subject}, looking from
{angle}"``: the subject cycles through the theme's classes and the distance and angle are drawn
at random from fixed lists. ``animals`` and ``fruits`` are shipped exactly as published
(``presets/themes/*.yaml``); a user theme is a YAML file with the same keys, checked on load::

    name: pets
    template: "A photo of a {subject}, {angle}"     # {subject} required; {distance}, {angle} optional
    subjects: [cat, dog]                            # the classes (folder names), or instead:
    # subjects_from: ../data/pets                   # a prepared Dataset: its class names
    subject_words: {cat: tabby cat}                 # what {subject} says, where not the class name
    angles: [from the front, from the side]
    negative_prompt: "blurry, text"

The distance and angle of image ``i`` come from a hash of its seed, so a prompt never depends on
which process, shard or resumed run generates it.
"""

from __future__ import annotations

import hashlib
import os
import string
from pathlib import Path

from pydantic import Field, PrivateAttr, field_validator, model_validator

from synthworth.config import StrictModel, preset_names, preset_path, read_yaml, validate
from synthworth.errors import ConfigError

__all__ = ["Theme", "load_theme", "theme_names", "PLACEHOLDERS"]

PLACEHOLDERS = ("subject", "distance", "angle")
# The list each optional placeholder draws from.
_LISTS = {"distance": "distances", "angle": "angles"}


class Theme(StrictModel):
    """What to ask a text-to-image pipeline for: one class per subject."""

    name: str = Field(min_length=1, description="Name of the theme, recorded in the metadata.")
    template: str = Field(description="Prompt template with {subject} and optionally {distance} and {angle}.")
    subjects: list[str] = Field(default_factory=list, description="The classes, in the order prompts cycle through them; each is a class folder.")
    subjects_from: str | None = Field(None, description="A prepared Dataset whose class names become the subjects (a relative path starts at the theme file's folder).")
    subject_words: dict[str, str] = Field(default_factory=dict, description="What {subject} says for a class whose name is not the wanted prompt words.")
    distances: list[str] = Field(default_factory=list, description="Values drawn for {distance}, one per image.")
    angles: list[str] = Field(default_factory=list, description="Values drawn for {angle}, one per image.")
    negative_prompt: str = Field("", description="Negative prompt of every image (empty: none).")
    _inputs: list[Path] = PrivateAttr(default_factory=list)  # the files it was read from

    @property
    def inputs(self) -> list[Path]:
        """The theme file and the Dataset its subjects came from (a generation must not write there)."""
        return list(self._inputs)

    @field_validator("template")
    @classmethod
    def _check_template(cls, template: str) -> str:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc})") from None
        unknown = sorted(set(fields) - set(PLACEHOLDERS))
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
                             f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        if "subject" not in fields:
            raise ValueError("the template must contain {subject}")
        return template

    @field_validator("subjects")
    @classmethod
    def _check_subjects(cls, subjects: list[str]) -> list[str]:
        for subject in subjects:
            check_class_name(subject)
        if len(set(subjects)) != len(subjects):
            raise ValueError("subjects must be distinct")
        return subjects

    @model_validator(mode="after")
    def _check(self) -> Theme:
        if self.subjects and self.subjects_from:
            raise ValueError("give either subjects or subjects_from, not both")
        if not self.subjects and not self.subjects_from:
            raise ValueError("the subject list is empty: give subjects (the classes) or subjects_from (a Dataset)")
        unknown = sorted(set(self.subject_words) - set(self.subjects))
        if self.subjects and unknown:
            raise ValueError(f"subject_words names classes that are not subjects: {', '.join(unknown)}")
        for placeholder, key in _LISTS.items():
            if "{" + placeholder + "}" in self.template and not getattr(self, key):
                raise ValueError(f"the template uses {{{placeholder}}} but {key} is empty")
        return self

    # ---------------------------------------------------------------- prompts
    def words(self, subject: str) -> str:
        """What ``{subject}`` says for a class."""
        return self.subject_words.get(subject, subject)

    def prompt(self, subject: str, seed: int) -> str:
        """The prompt of the image with this seed and subject (distance and angle from the seed)."""
        # The project's first name stays in this salt: the same seed gives the same prompt as before
        # the rename, so Datasets generated then reproduce.
        digest = hashlib.blake2b(f"synthbench-prompt-{int(seed)}".encode(), digest_size=16).digest()
        picks = {"subject": self.words(subject)}
        for n, (placeholder, key) in enumerate(_LISTS.items()):
            values = getattr(self, key)
            if values:
                picks[placeholder] = values[int.from_bytes(digest[8 * n:8 * n + 8], "big") % len(values)]
        return self.template.format(**picks)

    def all_prompts(self, subject: str) -> list[str]:
        """Every prompt :meth:`prompt` can make for ``subject``: each distance with each angle the
        template uses, in list order (one prompt when it uses neither)."""
        used = [(p, getattr(self, key)) for p, key in _LISTS.items() if "{" + p + "}" in self.template]
        combos: list[dict[str, str]] = [{}]
        for placeholder, values in used:
            combos = [{**c, placeholder: v} for c in combos for v in values]
        return [self.template.format(subject=self.words(subject), **c) for c in combos]

    def with_subjects(self, subjects: list[str]) -> Theme:
        """The same theme for other subjects (e.g. a real Dataset's class names)."""
        words = {k: v for k, v in self.subject_words.items() if k in subjects}
        return self.model_copy(update={"subjects": list(subjects), "subjects_from": None,
                                       "subject_words": words})


def check_class_name(name: str) -> None:
    """A subject becomes a folder name: refuse names that cannot be one."""
    if not name or not name.strip():
        raise ValueError("a subject name is empty")
    if name != name.strip() or name.startswith(".") or any(c in name for c in '/\\:*?"<>|\0'):
        raise ValueError(f"subject {name!r} cannot be a folder name (no leading dot, slash or :*?\"<>|)")


def theme_names() -> list[str]:
    """The shipped themes."""
    return preset_names("themes")


def load_theme(spec: str | os.PathLike, subjects_from: str | os.PathLike | None = None) -> Theme:
    """A shipped theme by name, or a user theme from a YAML file, with its subjects resolved.

    ``subjects_from`` (a prepared Dataset) replaces the theme's subjects by the Dataset's class
    names, so the synthetic classes line up with the real ones.
    """
    text = str(spec)
    is_file = text.endswith((".yaml", ".yml")) or os.sep in text or Path(text).is_file()
    if is_file:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"theme file {path} does not exist")
    elif text in theme_names():
        path = preset_path("themes", text)
    else:
        raise ConfigError(f"unknown theme {text!r}; shipped themes: {', '.join(theme_names())}, "
                          "or give a YAML file (see synthworth.themes)")
    where = f"theme file {path}"
    try:
        raw = read_yaml(path, "theme file")
    except (OSError, UnicodeDecodeError) as exc:  # a binary file or an unreadable one: still one line
        raise ConfigError(f"{where} cannot be read as YAML text ({exc})") from None
    theme = validate(Theme, raw, lambda loc: where)
    inputs = [path]
    dataset = subjects_from or theme.subjects_from
    if dataset is not None:
        base = Path.cwd() if subjects_from else path.parent
        inputs.append(base / Path(dataset).expanduser())
        theme = theme.with_subjects(_dataset_classes(inputs[-1], where))
    theme._inputs = inputs
    return theme


def _dataset_classes(folder: Path, where: str) -> list[str]:
    from synthworth.data.dataset import Dataset

    names = Dataset.open(folder).class_names
    if not names:
        raise ConfigError(f"{where}: the Dataset {folder} has no classes to take subjects from")
    for name in names:
        try:
            check_class_name(name)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return names
