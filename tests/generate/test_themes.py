"""Prompt themes: the two shipped themes are the source study's, user themes are checked on load."""

from __future__ import annotations

import re

import numpy as np
import pytest

from synthworth.config import preset_path, read_yaml
from synthworth.data.dataset import Dataset
from synthworth.errors import ConfigError, DataError
from synthworth.themes import Theme, load_theme, theme_names

TEMPLATE = "A {distance} picture of a {subject}, looking from {angle}"
# As published by the source study (MISSION.md).
ANIMALS = {
    "subjects": ["dog", "cat", "horse", "spider", "butterfly", "chicken", "sheep", "cow", "squirrel", "elephant"],
    "distances": ["close-up", "far away", "medium distance"],
    "angles": ["straight on", "slightly to the right", "slightly to the left", "slightly from above",
               "the left", "the right"],
}
FRUITS = {
    "subjects": ["apple", "banana", "grape", "mango", "strawberry"],
    "distances": ["close-up", "medium distance"],
    "angles": ["straight on", "above", "the left", "the right"],
}


@pytest.mark.parametrize("name, expected", [("animals", ANIMALS), ("fruits", FRUITS)])
def test_shipped_themes_are_the_source_studys(name, expected):
    theme = load_theme(name)
    assert theme.template == TEMPLATE
    assert theme.subjects == expected["subjects"]
    assert theme.distances == expected["distances"]
    assert theme.angles == expected["angles"]
    assert theme.negative_prompt == "" and theme.subject_words == {}


def test_every_shipped_theme_file_validates_against_the_model():
    assert theme_names() == ["animals", "fruits"]
    for name in theme_names():
        Theme.model_validate(read_yaml(preset_path("themes", name)))


def test_prompts_follow_the_template_and_draw_from_the_lists():
    theme = load_theme("animals")
    pattern = re.compile(r"^A (.+) picture of a (.+), looking from (.+)$")
    seen_distances, seen_angles = set(), set()
    for seed in range(300):
        prompt = theme.prompt("dog", seed)
        distance, subject, angle = pattern.match(prompt).groups()
        assert subject == "dog"
        assert distance in ANIMALS["distances"] and angle in ANIMALS["angles"]
        seen_distances.add(distance)
        seen_angles.add(angle)
        assert theme.prompt("dog", seed) == prompt  # a function of the seed alone
    # Random draws: every value turns up, and about evenly.
    assert seen_distances == set(ANIMALS["distances"]) and seen_angles == set(ANIMALS["angles"])
    counts = np.unique([theme.prompt("cat", s).split(" picture")[0] for s in range(3000)], return_counts=True)[1]
    assert counts.min() > 850


def _write(tmp_path, text: str, name: str = "theme.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_user_theme_with_subject_words_and_a_negative_prompt(tmp_path):
    path = _write(tmp_path, """
name: pets
template: "A photo of a {subject}, {angle}"
subjects: [tabby, dog]
subject_words: {tabby: tabby cat}
angles: [from the front]
negative_prompt: "blurry, text"
""")
    theme = load_theme(path)
    assert theme.prompt("tabby", 3) == "A photo of a tabby cat, from the front"
    assert theme.prompt("dog", 3) == "A photo of a dog, from the front"
    assert theme.negative_prompt == "blurry, text"


@pytest.mark.parametrize("body, message", [
    ("name: x\nsubjects: [a]\n", r"key 'template'.*theme file .*theme\.yaml.*Field required"),
    ("name: x\ntemplate: 'a {subject}'\nsubjects: []\n", "subject list is empty"),
    ("name: x\ntemplate: 'a {subject}'\n", "subject list is empty"),
    ("name: x\ntemplate: 'a {thing}'\nsubjects: [a]\n", r"key 'template'.*unknown placeholder.*\{thing\}"),
    ("name: x\ntemplate: 'a picture'\nsubjects: [a]\n", r"must contain \{subject\}"),
    ("name: x\ntemplate: 'a {distance} {subject}'\nsubjects: [a]\n", r"uses \{distance\} but distances is empty"),
    ("name: x\ntemplate: 'a {subject}'\nsubjects: [a, a]\n", "distinct"),
    ("name: x\ntemplate: 'a {subject}'\nsubjects: [a/b]\n", "cannot be a folder name"),
    ("name: x\ntemplate: 'a {subject}'\nsubjects: [a]\nsubject_words: {b: bee}\n", "not subjects: b"),
    ("name: x\ntemplate: 'a {subject}'\nsubjects: [a]\ncolour: red\n", r"key 'colour'.*unknown key"),
])
def test_bad_theme_files_name_the_problem_and_the_file(tmp_path, body, message):
    path = _write(tmp_path, body)
    with pytest.raises(ConfigError, match=message) as info:
        load_theme(path)
    assert str(path) in str(info.value)


def test_unknown_theme_and_missing_file():
    with pytest.raises(ConfigError, match="unknown theme 'plants'.*animals, fruits"):
        load_theme("plants")
    with pytest.raises(ConfigError, match="theme file .*nope.yaml does not exist"):
        load_theme("nope.yaml")


def test_subjects_from_a_prepared_dataset(tmp_path):
    images = np.zeros((3, 4, 4, 3), np.uint8)
    ds = Dataset.from_arrays(images, [0, 1, 2], ["cat", "dog", "horse"])
    from synthworth.data.dataset import atomic_folder, write_packed

    with atomic_folder(tmp_path / "data" / "real", kind="dataset") as tmp:
        write_packed(tmp, images, ds.labels, ds.splits, ds.class_names, [{}] * 3, {"kind": "test"})
    # In a theme file the path starts at the file's folder.
    path = _write(tmp_path, "name: real\ntemplate: 'a {subject}'\nsubjects_from: data/real\n"
                            "subject_words: {cat: kitten}\n")
    theme = load_theme(path)
    assert theme.subjects == ["cat", "dog", "horse"]
    assert theme.prompt("cat", 0) == "a kitten"
    # Given on its own, it replaces a shipped theme's subjects and keeps its lists.
    animals = load_theme("animals", subjects_from=tmp_path / "data" / "real")
    assert animals.subjects == ["cat", "dog", "horse"] and animals.angles == ANIMALS["angles"]
    with pytest.raises(DataError, match="does not exist"):
        load_theme("animals", subjects_from=tmp_path / "missing")
