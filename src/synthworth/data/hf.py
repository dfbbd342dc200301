"""The Hugging Face ``datasets`` side of an exported or generated Dataset: split folders, per-split
metadata and the dataset card that make the folder a ready-to-publish dataset repository.

Layout (written by ``synthworth data export`` and by ``synthworth generate`` once its images are
all there)::

    FOLDER/README.md                          dataset card: YAML header (configs, features, splits)
                                              and a short provenance section
    FOLDER/<split>/<class folder>/<name>.png  split = train, validation (synthworth's "valid"), test
    FOLDER/<split>/metadata.parquet           file_name (relative to the split folder), label, and each
                                              image's plain facts (seed, prompt, source file, ...)

Why this layout (``datasets`` >= 3.5; both load styles were read in its source and are tested):

* ``load_dataset("imagefolder", data_dir=FOLDER)`` never reads the card. It finds splits only from
  folder names (``train/``, ``validation/``, ``test/``, ...), so the splits must be folders; a
  ``split`` column cannot make splits. Once a metadata file exists it takes the label from it as a
  plain integer and drops the folder labels. A ``metadata.parquet`` file carries ``datasets``' own
  description of its columns in its schema, so the label comes back as a ``ClassLabel`` with the
  real class names in the Dataset's order (a ``metadata.jsonl`` cannot say that, and folder labels
  would name the sanitised folders, in sorted order).
* ``load_dataset(FOLDER)``, and the Hub after an upload, read the card: ``configs`` names each
  split's files and ``dataset_info.features`` the ``ClassLabel``; nothing else in the folder (the
  packed arrays, a plan, the top-level ``metadata.jsonl``) is read.
* The loader takes *any* folder whose name holds a split word (``val``, ``test-2``, ``my_train``)
  for a split: a class folder named like that would add a split or put its images in another.
  Class folders therefore shield such words (``train`` -> ``(train)``); the real names stay in the
  card and the metadata. A class named like one of synthworth's own files (``manifest.json``,
  ``README.md``, ``metadata.parquet``, ...) is wrapped the same way, so its folder never takes
  that file's place.
* In each split folder the class folders sort in label order (a ``00_`` index prefix where needed)
  and every class has one, even an empty one: torchvision's ``ImageFolder`` on a split folder
  gives index == label.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from synthworth.errors import DataError
from synthworth.safety import safe_names

UNLABELLED_FOLDER = "unlabelled"
CARD = "README.md"
SPLIT_METADATA = "metadata.parquet"
# synthworth's split names -> the Hugging Face ones (the names `datasets` finds by folder name).
HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
HF_ORDER = ["train", "validation", "test"]

# The words `datasets` (data_files.SPLIT_KEYWORDS) looks for in folder names, between characters of
# NON_WORDS_CHARS ("-._ 0-9") or the ends of the name; longest first.
_SPLIT_WORDS = ["training", "train", "validation", "valid", "dev", "val", "testing", "test",
                "evaluation", "eval"]
_SEP = r"\-._ 0-9"
_SPLIT_WORD = re.compile(rf"(?<![^{_SEP}])({'|'.join(_SPLIT_WORDS)})(?![^{_SEP}])", re.IGNORECASE)


# ------------------------------------------------------------------------------------ names
def shield(folder: str) -> str:
    """``folder`` with every split word wrapped in parentheses, so that `datasets` does not take it
    for a split folder (``train`` -> ``(train)``, ``dog-val`` -> ``dog-(val)``)."""
    return _SPLIT_WORD.sub(r"(\1)", folder)


# The files synthworth writes beside class folders: a generation folder's top level (plan, timing,
# metadata, packed arrays, card) and an export's split folders (metadata.parquet). A class named
# like one of them would be a folder where that file must go, found only after every image was
# written; its folder is wrapped in parentheses instead (``manifest.json`` -> ``(manifest.json)``).
# Compared ignoring case: on a case-insensitive disk ``Manifest.JSON`` is the same entry.
OWN_FILES = frozenset(name.casefold() for name in (
    CARD, SPLIT_METADATA, "metadata.jsonl", "manifest.json", "images.npy", "labels.npy", "splits.npy",
    "items.jsonl", "generate.json", "generation.jsonl"))


def _not_own_file(folder: str) -> str:
    return f"({folder})" if folder.casefold() in OWN_FILES else folder


def _distinct(folders: list[str]) -> list[str]:
    """Distinct ignoring case (shielding may meet a name that was already written that way)."""
    out, seen = [], set()
    for base in folders:
        candidate, i = base, 2
        while candidate.casefold() in seen:
            candidate, i = f"{base}-{i}", i + 1
        seen.add(candidate.casefold())
        out.append(candidate)
    return out


def class_folders(class_names: Sequence[str], *, ordered: bool = True) -> list[str]:
    """The folder of each class: file-name safe (:func:`synthworth.safety.safe_names`), distinct
    ignoring case, no split word `datasets` would read (:func:`shield`), never the name of a file
    synthworth writes beside it (:data:`OWN_FILES`) and, when ``ordered``, sorting in label order
    (so that ``ImageFolder``'s index of folder ``i`` is ``i``)."""
    folders = _distinct([_not_own_file(shield(f)) for f in safe_names(class_names)])
    if ordered and folders != sorted(folders):
        width = len(str(len(folders) - 1))
        folders = [f"{i:0{width}d}_{name}" for i, name in enumerate(folders)]
    return folders


def hf_split(split: str) -> str:
    """The Hugging Face name of a synthworth split (``valid`` -> ``validation``)."""
    name = HF_SPLITS.get(split)
    if name is None:
        # Only these three are found by `load_dataset("imagefolder", data_dir=...)`, which
        # would silently drop any other split folder.
        raise DataError(f"split {split!r} has no Hugging Face name: only train, valid and test can be "
                        f"written (as train, validation and test); export one of them with --split")
    return name


def hf_splits(splits: Sequence[str]) -> list[str]:
    """The Hugging Face names of ``splits``, in train, validation, test order."""
    return sorted({hf_split(s) for s in splits}, key=HF_ORDER.index)


# ------------------------------------------------------------------------------------ features
_RESERVED = {"file_name", "label", "class_name", "split", "image"}  # given by the layout itself
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64" if -2**63 <= value < 2**63 else "other"
    return {float: "float64", str: "string"}.get(type(value), "other")


def extra_columns(records: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The per-image facts worth a column (seed, prompt, source file, ...): ``{name: dtype}`` of
    every key whose values are all of one plain type (ints among floats count as floats; a missing
    value is null). Nested or mixed values stay in ``metadata.jsonl`` only: every split's
    metadata must have the same columns and types, or `datasets` refuses the folder."""
    kinds: dict[str, set] = {}
    for record in records:
        for key, value in record.items():
            if key not in _RESERVED and _COLUMN.fullmatch(key):
                kinds.setdefault(key, set()).add(_kind(value))
    out = {}
    for key, found in kinds.items():
        found.discard(None)
        if found == {"int64", "float64"}:
            found = {"float64"}
        if len(found) == 1 and "other" not in found:
            out[key] = found.pop()
    return out


def _features_json(class_names: Sequence[str] | None, extras: dict[str, str]) -> dict[str, Any]:
    """The columns of the metadata file as ``datasets`` describes features (its JSON form)."""
    features: dict[str, Any] = {"file_name": {"dtype": "string", "_type": "Value"}}
    if class_names is not None:
        features["label"] = {"names": list(class_names), "_type": "ClassLabel"}
    features.update({k: {"dtype": dtype, "_type": "Value"} for k, dtype in extras.items()})
    return features


def features_yaml(class_names: Sequence[str] | None, extras: dict[str, str]) -> list[dict[str, Any]]:
    """``dataset_info.features`` of the card: ``image``, (labelled) ``label`` as a ClassLabel, extras."""
    features: list[dict[str, Any]] = [{"name": "image", "dtype": "image"}]
    if class_names is not None:
        names = {str(i): name for i, name in enumerate(class_names)}
        features.append({"name": "label", "dtype": {"class_label": {"names": names}}})
    features += [{"name": k, "dtype": dtype} for k, dtype in extras.items()]
    return features


def write_split_metadata(split_dir: Path, files: Sequence[str], labels: Sequence[int] | None,
                         class_names: Sequence[str] | None, extras: dict[str, str],
                         records: Sequence[dict[str, Any]]) -> None:
    """``split_dir/metadata.parquet``: one row per image (``file_name`` relative to ``split_dir``,
    ``label``, the ``extras`` from ``records``), with the ClassLabel named in the schema the way
    ``datasets`` writes it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"file_name": pa.array(list(files), pa.string())}
    if class_names is not None:
        columns["label"] = pa.array([int(x) for x in labels], pa.int64())
    arrow = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
    for key, dtype in extras.items():
        values = [r.get(key) for r in records]
        if dtype == "float64":
            values = [None if v is None else float(v) for v in values]
        columns[key] = pa.array(values, arrow[dtype])
    meta = {"huggingface": json.dumps({"info": {"features": _features_json(class_names, extras)}})}
    table = pa.table(columns).replace_schema_metadata(meta)
    pq.write_table(table, split_dir / SPLIT_METADATA)


# ------------------------------------------------------------------------------------ the card
class _CardDumper(yaml.SafeDumper):
    """Strings with line breaks or other unprintable characters are written double-quoted with
    escapes, on one line: no value can end the YAML block (``---``) or spill into the text."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = None if value.isprintable() else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_CardDumper.add_representer(str, _represent_str)


def card_header(class_names: Sequence[str] | None, extras: dict[str, str], counts: dict[str, int],
                sizes: dict[str, int], *, synthetic: bool) -> str:
    """The YAML header ``datasets`` and the Hub read: features, splits and each split's files.
    ``sizes`` are each split's bytes of image files (``num_bytes``, which `datasets` requires there;
    it only informs, the number of examples is what it checks)."""
    header = {
        "task_categories": ["image-classification"] if class_names is not None else ["image-to-image"],
        "tags": ["synthworth", "synthetic" if synthetic else "real"],
        "configs": [{"config_name": "default",
                     "data_files": [{"split": s, "path": f"{s}/**"} for s in counts]}],
        "dataset_info": {"features": features_yaml(class_names, extras),
                         "splits": [{"name": s, "num_bytes": int(sizes[s]), "num_examples": int(n)}
                                    for s, n in counts.items()]},
    }
    text = yaml.dump(header, Dumper=_CardDumper, sort_keys=False, allow_unicode=True, width=1 << 30)
    return ("# license: fill in the licence of these images before publishing (the source data's, or\n"
            "# the generator's terms), e.g. `license: cc-by-4.0`; see https://hf.co/docs/hub/repositories-licenses\n"
            + text)


def _code(value: Any) -> str:
    """``value`` as a Markdown code span (JSON for anything but a string; no line breaks)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = json.dumps(text, ensure_ascii=False)[1:-1] if not text.isprintable() else text
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


# An absolute local path inside a value or a sentence (after its start, a space, a bracket, a
# quote, '=' or ':'): a card is published, so it keeps only the path's last part (a folder's name).
_LOCAL_PATH = re.compile(r"""(?:^|(?<=[\s(\[{'"=:]))~?/[^\s()\[\]{}'",;]*""")


def _no_local_paths(value: Any) -> Any:
    """``value`` with every absolute local path replaced by its last part (names and relative
    paths say what a reader needs; where the author keeps their files is not theirs to know)."""
    if isinstance(value, dict):
        return {k: _no_local_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_local_paths(v) for v in value]
    if isinstance(value, str):
        return _LOCAL_PATH.sub(lambda m: Path(m.group(0).rstrip("/")).name or "(a local folder)", value)
    return value


def _seen(provenance: Any) -> Any:
    """What real data a trained model saw, from a provenance record (issue 11's contract):
    the Dataset's name, split, image count and fingerprint (no local path), or the note saying why
    it is unknown."""
    if not isinstance(provenance, dict):
        return "not recorded in this Dataset's manifest"
    trained_on = provenance.get("trained_on")
    if isinstance(trained_on, dict):
        return {k: v for k, v in trained_on.items() if k != "path"}
    return provenance.get("note") or f"none recorded ({provenance.get('kind')} generator)"


def _real_data_facts(provenance: Any) -> list[tuple[str, Any]]:
    """The card's lines on the real data behind a synthetic Dataset: the filter that chose its
    images (and what its classifier saw), the generator's data, and a latent model's
    autoencoder's data."""
    facts: list[tuple[str, Any]] = []
    while isinstance(provenance, dict) and provenance.get("kind") == "filtered":
        f = provenance.get("filter") if isinstance(provenance.get("filter"), dict) else {}
        if f.get("method") == "clip":   # a pretrained CLIP chose the images: it saw no real data of the user's
            model = f.get("model") if isinstance(f.get("model"), dict) else {}
            facts.append(("filter", {"kind": "clip", "keep": f.get("keep"), "kept": f.get("kept"), "of": f.get("of"),
                                     "model": model.get("model"), "sha256": model.get("sha256")}))
            facts.append(("real data the filter's model saw", f.get("note") or "external data (a pretrained CLIP)"))
            provenance = provenance.get("parent")
            continue
        classifier = f.get("classifier") if isinstance(f.get("classifier"), dict) else {}
        model = classifier.get("model") if isinstance(classifier.get("model"), dict) else {}
        facts.append(("filter", {"kind": f.get("method"), "keep": f.get("keep"), "kept": f.get("kept"),
                                 "of": f.get("of"), "classifier": model.get("name") or model or None}))
        facts.append(("real data the filter's classifier saw",
                      {"name": Path(str(f["real_path"])).name if f.get("real_path") else None,
                       "split": f.get("real_split"), "images": f.get("train_images"),
                       "fingerprint": f.get("real_fingerprint")}))
        provenance = provenance.get("parent")
    facts.append(("real data the generator saw", _seen(provenance)))
    if isinstance(provenance, dict) and isinstance(provenance.get("autoencoder"), dict):
        facts.append(("real data its autoencoder saw", _seen(provenance["autoencoder"])))
    return facts


def is_synthetic(manifest: dict[str, Any]) -> bool:
    """Whether a Dataset's images were generated: a generation plan, a synthetic or filtered
    kind, or any provenance (a real Dataset records none)."""
    return (isinstance(manifest.get("plan"), dict) or manifest.get("kind") in ("synthetic", "filtered")
            or isinstance(manifest.get("provenance"), dict))


def provenance_facts(manifest: dict[str, Any]) -> list[tuple[str, Any]]:
    """(label, value) pairs of where the images come from, read from a Dataset's manifest, with
    no absolute local path in them (see :func:`_no_local_paths`)."""
    from synthworth import __version__

    facts: list[tuple[str, Any]] = []
    plan = manifest.get("plan") if isinstance(manifest.get("plan"), dict) else None
    if plan is not None:
        generator = plan.get("generator") if isinstance(plan.get("generator"), dict) else {}
        facts.append(("generator", plan.get("name")))
        facts.append(("generator source", {k: v for k, v in generator.items()
                                           if k in ("source", "kind", "pipeline", "weights")}))
        theme = generator.get("theme")
        if isinstance(theme, dict):
            facts.append(("theme", theme.get("name")))
            facts.append(("prompt template", theme.get("template")))
        seed, count = plan.get("seed"), plan.get("count")
        if isinstance(seed, int) and isinstance(count, int):
            facts.append(("seeds", f"{seed} to {seed + count - 1} (image i has seed {seed} + i)"))
        if "sampling" in generator:
            facts.append(("sampler", generator["sampling"]))
        facts += _real_data_facts(manifest.get("provenance"))
    else:
        facts.append(("source", manifest.get("source", "not recorded")))
        if "provenance" in manifest:
            facts += _real_data_facts(manifest["provenance"])
    facts.append(("Dataset fingerprint", manifest.get("fingerprint")))
    facts.append(("made with synthworth", manifest.get("synthworth_version", manifest.get("synthbench_version", "unknown"))))
    facts.append(("written by synthworth", __version__))
    return [(k, _no_local_paths(v)) for k, v in facts if v is not None]


def write_card(folder: Path, *, class_names: Sequence[str] | None, extras: dict[str, str],
               counts: dict[str, int], manifest: dict[str, Any], note: str = "") -> None:
    """``folder/README.md``: the YAML header and a short provenance section."""
    synthetic = is_synthetic(manifest)
    sizes = {s: sum(f.stat().st_size for f in (folder / s).rglob("*.png") if f.is_file()) for s in counts}
    what = "Synthetic images" if synthetic else "Images"
    classes = f" of {len(class_names)} classes" if class_names is not None else ""
    lines = [
        "---", card_header(class_names, extras, counts, sizes, synthetic=synthetic).rstrip("\n"), "---", "",
        f"# {what}{classes}, written by synthworth", "",
        "Load it with `datasets.load_dataset(\"path/to/this/folder\")` (or, after uploading the folder "
        "as a dataset repository, by its Hub id); `load_dataset(\"imagefolder\", data_dir=...)` gives "
        "the same splits and labels. Each split folder also reads with torchvision's `ImageFolder` "
        "(class index == `label`).", "",
        "Splits: " + ", ".join(f"{s} ({n} images)" for s, n in counts.items()) + ".", "",
        "## Provenance", "",
        *(f"- {label}: {_code(value)}" for label, value in provenance_facts(manifest)),
    ]
    if note:
        lines += ["", note]
    (folder / CARD).write_text("\n".join(lines) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------ generated folders
def generated_entries() -> list[str]:
    """Top-level names the HF layout adds to a generation folder (its splits are train and test)."""
    return [CARD, "train", "test"]


def write_generated(out: Path, rows: Sequence[dict[str, Any]], manifest: dict[str, Any]) -> None:
    """Give a finished generation folder its split folders and card.

    The images stay where the plan put them (``OUT/<class>/seed-N.png``: resuming, sharding and
    merging find them there); each split folder holds hard links to them (a copy where the file
    system has no hard links), so the HF layout costs no disk space and no change to the plan."""
    from synthworth.safety import GENERATION, mark_owned

    class_names = list(manifest["class_names"]) or None
    splits = [str(r["split"]) for r in rows]
    names = hf_splits(splits)
    mark_owned(out, GENERATION, generated_entries())  # before they appear: --overwrite knows them
    for split in ("train", "test"):  # an earlier finish of this folder's: made again from the images
        path = out / split
        if any(str(r.get("file_name", "")).split("/")[0] == split for r in rows):
            # A folder an older synthworth started keeps a class literally named like a split there:
            # removing it would remove the generated images themselves.
            raise DataError(f"{out} keeps the images of a class in {path} (made by an older synthworth), where the "
                            "Hugging Face layout puts its split folder; run the same generate command with "
                            "--overwrite to make it again with the class folder renamed")
        if path.is_symlink() or path.is_file():
            path.unlink()  # never written through: a link is removed, not followed
        elif path.is_dir():
            shutil.rmtree(path)
    folders = class_folders(class_names) if class_names else [UNLABELLED_FOLDER]
    extras = extra_columns(rows)
    counts = {}
    for name in names:
        split_dir = out / name
        for folder in folders:
            (split_dir / folder).mkdir(parents=True, exist_ok=True)
        files, labels, records = [], [], []
        for row in rows:
            if hf_split(str(row["split"])) != name:
                continue
            label = row.get("label")
            file = f"{folders[label] if label is not None else UNLABELLED_FOLDER}/{Path(row['file_name']).name}"
            _link(out / row["file_name"], split_dir / file)
            files.append(file)
            labels.append(label)
            records.append(row)
        write_split_metadata(split_dir, files, labels, class_names, extras, records)
        counts[name] = len(files)
    write_card(out, class_names=class_names, extras=extras, counts=counts, manifest=manifest,
               note="The class folders at the top of this folder, `metadata.jsonl` (every image's seed, "
                    "prompt and settings) and the packed arrays (`images.npy`, ...) are synthworth's own "
                    "form of the same images; the split folders hold the same files. To publish, "
                    "`hf upload USER/NAME FOLDER --repo-type dataset --exclude \"*.npy\"` leaves the "
                    "packed arrays out.")


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
