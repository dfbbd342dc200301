"""Messy downloads: odd image modes, broken files, junk, wrong layouts, killed runs and re-runs."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthworth.data.dataset import Dataset
from synthworth.data.imageio import ImageSpec, load_image
from synthworth.errors import DataError, SynthworthError

# The module, not the function of the same name that synthworth.data re-exports.
prepare_module = importlib.import_module("synthworth.data.prepare")

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (30, 40, 220)


def _leftovers(folder: Path) -> list[str]:
    """Temporary folders a prepare/export run left next to its output."""
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


def _looks_like_dataset(folder: Path) -> bool:
    return folder.is_dir() and (folder / "manifest.json").exists()


# ------------------------------------------------------------------------------------ conversions
def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 12), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    out = load_image(str(path), ImageSpec(size=8))
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - (255, 0, 0)).max() <= 8


def test_palette_png_with_transparency_is_composited(tmp_path):
    path = tmp_path / "palette.png"
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 255, 0] + [0, 0, 255] + [0, 0, 0] * 254)  # index 0 green (transparent), 1 blue
    for x in range(5, 10):
        for y in range(10):
            img.putpixel((x, y), 1)
    img.save(path, transparency=0)
    out = load_image(str(path), ImageSpec(size=10, background=(10, 20, 30)))
    assert out.shape == (10, 10, 3)
    assert tuple(out[5, 1]) == (10, 20, 30)  # transparent palette entry: the background, not green
    assert tuple(out[5, 8]) == (0, 0, 255)


def test_grayscale_to_rgb_and_kept_single_channel(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (10, 10), 77).save(path)
    rgb = load_image(str(path), ImageSpec(size=10, channels=3))
    grey = load_image(str(path), ImageSpec(size=10, channels=1))
    assert rgb.shape == (10, 10, 3) and (rgb == 77).all()
    assert grey.shape == (10, 10, 1) and (grey == 77).all()


def test_rgb_to_single_channel_uses_luminance(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (10, 10), (255, 0, 0)).save(path)
    grey = load_image(str(path), ImageSpec(size=10, channels=1))
    assert grey.shape == (10, 10, 1)
    assert abs(int(grey[0, 0, 0]) - 76) <= 1  # ITU-R 601-2 luma of pure red: 0.299 * 255


def test_rgba_is_composited_on_the_background(tmp_path):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (10, 10), (200, 0, 0, 128)).save(path)
    out = load_image(str(path), ImageSpec(size=10, background=(0, 0, 255)))
    # 128/255 of red over blue: (200 * a, 0, 255 * (1 - a)) with a = 128/255.
    assert np.abs(out[4, 4].astype(int) - (100, 0, 127)).max() <= 1
    white = load_image(str(path), ImageSpec(size=10))  # the default background is white
    assert np.abs(white[4, 4].astype(int) - (228, 127, 127)).max() <= 1


def test_la_image_is_composited(tmp_path):
    path = tmp_path / "la.png"
    Image.new("LA", (10, 10), (0, 0)).save(path)  # fully transparent black
    out = load_image(str(path), ImageSpec(size=10, channels=1, background=(90, 90, 90)))
    assert out.shape == (10, 10, 1) and (out == 90).all()


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    values = np.zeros((8, 8), np.uint16)
    values[:, :4] = 16384   # a quarter of the range
    values[:, 4:] = 65535   # full white
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    out = load_image(str(path), ImageSpec(size=8, channels=1, fit="stretch", resample="nearest"))
    assert out.shape == (8, 8, 1)
    assert (out[:, :4] == 64).all()   # 16384 / 65535 * 255 = 63.75 -> 64 (clipping would give 255)
    assert (out[:, 4:] == 255).all()
    rgb = load_image(str(path), ImageSpec(size=8, channels=3, fit="stretch", resample="nearest"))
    assert (rgb[:, :4] == 64).all()


def test_exif_rotation_is_applied(tmp_path):
    # Stored 40 wide x 20 high, red left half and blue right half, with orientation 6
    # ("rotate 90 degrees clockwise to display"): shown upright it is 20 wide x 40 high,
    # red on top and blue at the bottom.
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)

    out = load_image(str(path), ImageSpec(size=20, fit="pad", background=(0, 255, 0)))
    top, bottom = out[3, 10].astype(int), out[16, 10].astype(int)
    assert np.abs(top - (255, 0, 0)).max() <= 20, top
    assert np.abs(bottom - (0, 0, 255)).max() <= 20, bottom
    # Padded on the left and right (it is tall once rotated), not above and below.
    assert tuple(out[10, 0]) == (0, 255, 0) and tuple(out[10, 19]) == (0, 255, 0)
    assert np.abs(out[0, 10].astype(int) - (255, 0, 0)).max() <= 20
    # The default crop goes through libjpeg's reduced-size decoding (draft) first: the rotation
    # must still be applied, so the centre square is red above blue, not red beside blue.
    cropped = load_image(str(path), ImageSpec(size=8))
    assert np.abs(cropped[1].astype(int) - (255, 0, 0)).max() <= 30
    assert np.abs(cropped[6].astype(int) - (0, 0, 255)).max() <= 30


def test_odd_extensions_and_file_names_are_read(tmp_path, make_image, run_prepare):
    root = tmp_path / "src"
    names = ["UPPER.JPG", "lower.jpeg", "Shouty.PNG", "old.JPE", "scan.tif", "paint.bmp",
             "dépôt d'images ü.png", "with spaces and (brackets).jpg", "日本語の名前.png",
             "double.dot.name.png"]
    from PIL import features
    if features.check("webp"):
        names.append("modern.webp")
    for k, name in enumerate(names):
        make_image(root / "things" / name, colour=RED)
    make_image(root / "other" / "x.png", colour=BLUE)
    ds = run_prepare(source="folder", path=root, size=8, test_fraction=0.0)

    assert ds.manifest["skipped"] == []
    assert len(ds) == len(names) + 1
    assert sorted(i["source_file"] for i in ds.items()) == sorted(
        [f"things/{n}" for n in names] + ["other/x.png"])
    for image, label in zip(ds.take(np.arange(len(ds))), ds.labels):
        want = RED if ds.class_names[label] == "things" else BLUE
        assert np.abs(image.mean(axis=(0, 1)) - want).max() < 12
    # The manifest is UTF-8 JSON and keeps the names as they are.
    text = (ds.path / "manifest.json").read_text(encoding="utf-8")
    assert json.loads(text)["num_images"] == len(names) + 1
    assert "日本語の名前.png" in (ds.path / "items.jsonl").read_text(encoding="utf-8")


def test_every_odd_mode_goes_through_prepare(tmp_path, run_prepare):
    root = tmp_path / "src" / "mixed"
    root.mkdir(parents=True)
    Image.new("CMYK", (12, 10), (0, 0, 0, 0)).save(root / "cmyk.jpg")
    Image.new("P", (12, 10), 3).save(root / "palette.png")
    Image.new("L", (12, 10), 9).save(root / "grey.png")
    Image.new("RGBA", (12, 10), (1, 2, 3, 0)).save(root / "rgba.png")
    Image.fromarray(np.full((10, 12), 40000, np.uint16)).save(root / "deep.png")
    Image.new("1", (12, 10), 1).save(root / "bilevel.png")
    ds = run_prepare(source="folder", path=tmp_path / "src", size=8, test_fraction=0.0)
    assert len(ds) == 6 and ds.manifest["skipped"] == []
    assert ds.shape == (8, 8, 3)
    by_file = {i["source_file"]: img for i, img in zip(ds.items(), ds.take(np.arange(6)))}
    assert (by_file["mixed/rgba.png"] == 255).all()  # fully transparent: the white background
    assert (by_file["mixed/grey.png"] == 9).all()
    assert (by_file["mixed/deep.png"] == round(40000 / 65535 * 255)).all()


# ------------------------------------------------------------------------------------ resize policies
def _three_bands(path: Path, size=(30, 10)) -> Path:
    """Left third red, middle third green, right third blue."""
    w, h = size
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[:, : w // 3] = RED
    pixels[:, w // 3: 2 * w // 3] = GREEN
    pixels[:, 2 * w // 3:] = BLUE
    Image.fromarray(pixels).save(path)
    return path


def test_fit_crop_takes_the_centre_square(tmp_path):
    path = _three_bands(tmp_path / "wide.png")
    exact = load_image(str(path), ImageSpec(size=8, fit="crop", resample="nearest"))
    assert exact.shape == (8, 8, 3)
    assert (exact == GREEN).all()  # only the middle band survives
    # The default bicubic filter may only blur the crop's very edge, never bring the bands in.
    out = load_image(str(path), ImageSpec(size=8, fit="crop"))
    assert np.abs(out[:, 1:-1].astype(int) - GREEN).max() <= 2
    assert np.abs(out.astype(int) - GREEN).max() <= 12


def test_fit_pad_keeps_everything_and_pads_with_the_background(tmp_path):
    path = _three_bands(tmp_path / "wide.png")
    out = load_image(str(path), ImageSpec(size=30, fit="pad", background=(0, 0, 0),
                                          resample="nearest"))
    assert out.shape == (30, 30, 3)
    # 30x10 keeps its size and sits in the middle: rows 10..19 hold it, the rest is padding.
    assert (out[:10] == 0).all() and (out[20:] == 0).all()
    assert tuple(out[15, 2]) == RED and tuple(out[15, 15]) == GREEN and tuple(out[15, 27]) == BLUE
    grey = load_image(str(path), ImageSpec(size=12, channels=1, fit="pad", background=(30, 60, 90)))
    assert grey.shape == (12, 12, 1) and grey[0, 0, 0] == 60  # the background's grey level


def test_fit_stretch_squeezes_the_whole_image(tmp_path):
    path = _three_bands(tmp_path / "wide.png")
    out = load_image(str(path), ImageSpec(size=9, fit="stretch", resample="nearest"))
    assert out.shape == (9, 9, 3)
    assert tuple(out[4, 1]) == RED and tuple(out[4, 4]) == GREEN and tuple(out[4, 7]) == BLUE


def test_fit_crop_on_a_tall_image_and_upscaling(tmp_path):
    pixels = np.zeros((9, 3, 3), np.uint8)
    pixels[:3], pixels[3:6], pixels[6:] = RED, GREEN, BLUE
    path = tmp_path / "tall.png"
    Image.fromarray(pixels).save(path)
    out = load_image(str(path), ImageSpec(size=16, fit="crop", resample="nearest"))
    assert out.shape == (16, 16, 3) and (out == GREEN).all()


# ------------------------------------------------------------------------------------ bad files
@pytest.fixture
def messy_folder(tmp_path, class_tree, make_image):
    """Two good classes and, among them, every kind of unusable file."""
    root = tmp_path / "src"
    colours = class_tree(root, {"cat": 5, "dog": 4})
    good = root / "cat" / "img_000.png"
    (root / "cat" / "notes.jpg").write_text("this is not a jpeg\n")
    (root / "dog" / "empty.jpeg").write_bytes(b"")
    jpeg = make_image(tmp_path / "whole.jpg", size=(30, 30), seed=3, quality=90).read_bytes()
    (root / "dog" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    make_image(root / "cat" / "bomb.png", size=(100, 100), colour=RED)  # 10,000 px > max_pixels
    (root / "dog" / "readme.txt").write_text("credits\n")
    assert good.exists()
    expected = {
        "cat/notes.jpg": "not an image file",
        "dog/empty.jpeg": "not an image file",
        "dog/truncated.jpg": "corrupt or truncated image",
        "cat/bomb.png": "decompression bomb",
        "dog/readme.txt": "not an image file extension",
    }
    return root, colours, expected


def test_bad_files_are_skipped_and_listed(messy_folder, run_prepare, assert_colours, capsys, tmp_path):
    root, colours, expected = messy_folder
    ds = run_prepare(source="folder", path=root, size=8, max_pixels=1000, test_fraction=0.0,
                     progress=True)

    assert len(ds) == 9
    assert ds.counts() == {"train": {"cat": 5, "dog": 4}}
    assert_colours(ds, colours)
    skipped = {s["file"]: s["reason"] for s in ds.manifest["skipped"]}
    assert set(skipped) == set(expected)
    for file, reason in expected.items():
        assert skipped[file].startswith(reason), (file, skipped[file])
    on_disk = json.loads((ds.path / "manifest.json").read_text())
    assert on_disk["skipped"] == ds.manifest["skipped"]

    summary = [line for line in capsys.readouterr().err.splitlines() if line.startswith("prepared ")]
    assert len(summary) == 1
    line = summary[0]
    assert "prepared 9 images" in line and "skipped 5 files" in line
    for reason in ("decompression bomb", "corrupt or truncated image", "not an image file extension",
                   "2 not an image file (or an unsupported format)"):
        assert reason in line
    assert str(ds.path / "manifest.json") in line


def test_bad_files_are_skipped_by_parallel_workers_too(messy_folder, run_prepare, assert_colours):
    root, colours, expected = messy_folder
    ds = run_prepare(source="folder", path=root, size=8, max_pixels=1000, test_fraction=0.0, workers=2)
    assert len(ds) == 9
    assert {s["file"] for s in ds.manifest["skipped"]} == set(expected)
    assert_colours(ds, colours)


def test_strict_makes_bad_files_an_error_and_leaves_nothing(messy_folder, run_prepare, tmp_path):
    root, _, _ = messy_folder
    out = tmp_path / "strict-out"
    with pytest.raises(DataError, match=r"--strict: 5 file\(s\) could not be used"):
        run_prepare(out, source="folder", path=root, size=8, max_pixels=1000, strict=True)
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_a_source_of_only_bad_files_is_an_error(tmp_path, run_prepare):
    root = tmp_path / "src" / "cat"
    root.mkdir(parents=True)
    (root / "a.jpg").write_text("nope")
    (root / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match="no usable images.*2 candidate files were skipped"):
        run_prepare(source="folder", path=tmp_path / "src", size=8)
    assert not (tmp_path / "prepared").exists()


def test_junk_never_becomes_a_class(tmp_path, class_tree, make_image, run_prepare):
    root = tmp_path / "src"
    class_tree(root, {"cat": 3, "dog": 3})
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "dog" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "dog" / "desktop.ini").write_text("[.ShellClassInfo]\n")
    make_image(root / "cat" / "._img_000.png", colour=GREEN)  # AppleDouble resource fork
    make_image(root / "__MACOSX" / "cat" / "._img_000.png", colour=GREEN)
    make_image(root / ".hidden" / "secret.png", colour=GREEN)
    make_image(root / "cat" / ".thumbnails" / "t.png", colour=GREEN)
    ds = run_prepare(source="folder", path=root, size=8, test_fraction=0.0)

    assert ds.class_names == ["cat", "dog"]
    assert len(ds) == 6
    assert ds.manifest["skipped"] == []
    assert not any("MACOSX" in i["source_file"] or "/." in i["source_file"] for i in ds.items())


def test_junk_folders_are_ignored_beside_split_folders(tmp_path, class_tree, make_image, run_prepare):
    root = tmp_path / "src"
    class_tree(root / "train", {"cat": 2, "dog": 2})
    class_tree(root / "test", {"cat": 1, "dog": 1})
    make_image(root / "__MACOSX" / "train" / "cat" / "._x.png")
    (root / ".DS_Store").write_bytes(b"junk")
    ds = run_prepare(source="folder", path=root, size=8)
    assert ds.split_names == ["train", "test"]
    assert ds.class_names == ["cat", "dog"]


# ------------------------------------------------------------------------------------ wrong layouts
def test_celeba_without_partition_csv(celeba_download, run_prepare):
    root, _, _ = celeba_download
    (root / "list_eval_partition.csv").unlink()
    with pytest.raises(DataError) as info:
        run_prepare(source="celeba", path=root, size=8)
    message = str(info.value)
    assert "no list_eval_partition.csv" in message
    assert "expected" in message and "img_align_celeba/img_align_celeba/*.jpg" in message


def test_celeba_label_attr_without_attribute_csv(celeba_download, run_prepare):
    root, _, _ = celeba_download
    (root / "list_attr_celeba.csv").unlink()
    with pytest.raises(DataError, match="--label-attr Smiling needs .*list_attr_celeba.csv"):
        run_prepare(source="celeba", path=root, size=8, label_attr="Smiling")


def test_celeba_without_image_folder(tmp_path, run_prepare):
    (tmp_path / "celeba").mkdir()
    (tmp_path / "celeba" / "list_eval_partition.csv").write_text("image_id,partition\n")
    with pytest.raises(DataError, match="no img_align_celeba folder; expected"):
        run_prepare(source="celeba", path=tmp_path / "celeba", size=8)


def test_fruits_without_split_folders(tmp_path, class_tree, run_prepare):
    root = tmp_path / "fruits"
    class_tree(root / "Fruits Classification", {"Apple": 2, "Banana": 2})
    with pytest.raises(DataError) as info:
        run_prepare(source="fruits", path=root, size=8)
    message = str(info.value)
    assert "expected split folders train/, valid/ and test/" in message
    assert "missing: train, valid, test" in message


def test_fruits_with_a_missing_split(tmp_path, class_tree, run_prepare):
    base = tmp_path / "fruits" / "Fruits Classification"
    class_tree(base / "train", {"Apple": 2})
    class_tree(base / "test", {"Apple": 2})
    with pytest.raises(DataError, match=r"missing: valid\)"):
        run_prepare(source="fruits", path=tmp_path / "fruits", size=8)


def test_empty_class_folder(tmp_path, class_tree, run_prepare):
    root = tmp_path / "src"
    class_tree(root, {"cat": 2})
    (root / "dog").mkdir()
    (root / "dog" / ".DS_Store").write_bytes(b"junk")  # junk alone does not make it non-empty
    with pytest.raises(DataError, match=r"class folder .*dog.* holds no image files.*expected files such as"):
        run_prepare(source="folder", path=root, size=8)


def test_path_that_does_not_exist(tmp_path, run_prepare):
    for source in ("folder", "animals10", "fruits", "celeba"):
        with pytest.raises(DataError, match=f"{tmp_path / 'missing'} does not exist"):
            run_prepare(source=source, path=tmp_path / "missing", size=8)


def test_path_that_is_a_file(tmp_path, make_image, run_prepare):
    file = make_image(tmp_path / "one.png")
    with pytest.raises(DataError, match="is not a folder"):
        run_prepare(source="folder", path=file, size=8)


def test_animals10_wrong_folder(tmp_path, class_tree, run_prepare):
    class_tree(tmp_path / "zoo", {"dog": 1, "cat": 1})  # English names: not the Kaggle download
    with pytest.raises(DataError, match="not the Animals-10 download: expected .*raw-img/<class>/.*cane"):
        run_prepare(source="animals10", path=tmp_path / "zoo", size=8)


def test_folder_without_any_image(tmp_path, run_prepare):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("nothing here")
    with pytest.raises(DataError, match="holds no images; expected .*<class>/<images>"):
        run_prepare(source="folder", path=tmp_path / "src", size=8)


def test_too_few_images_for_a_stratified_split(tmp_path, class_tree, run_prepare):
    class_tree(tmp_path / "src", {"cat": 5, "dog": 1})
    with pytest.raises(DataError, match="cannot hold out a test fraction of 0.2"):
        run_prepare(source="folder", path=tmp_path / "src", size=8)
    assert not (tmp_path / "prepared").exists()


# ------------------------------------------------------------------------------------ atomicity
def _failing_after(monkeypatch, good: int):
    """Make prepare's decoder raise after ``good`` images, as a crash mid-way would."""
    real = prepare_module.load_image
    calls = {"n": 0}

    def decode(path, spec):
        calls["n"] += 1
        if calls["n"] > good:
            raise RuntimeError("simulated crash while decoding")
        return real(path, spec)

    monkeypatch.setattr(prepare_module, "load_image", decode)
    return calls


def test_a_crash_mid_way_leaves_no_dataset(tmp_path, class_tree, run_prepare, monkeypatch):
    class_tree(tmp_path / "src", {"cat": 6, "dog": 6})
    calls = _failing_after(monkeypatch, good=5)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_prepare(out, source="folder", path=tmp_path / "src", size=8)
    assert calls["n"] == 6
    assert not out.exists()
    assert _leftovers(tmp_path) == []
    assert not any(_looks_like_dataset(p) for p in tmp_path.iterdir())

    monkeypatch.undo()  # the next run, with a healthy decoder, starts from scratch
    ds = run_prepare(out, source="folder", path=tmp_path / "src", size=8)
    assert len(ds) == 12


def test_a_crash_while_overwriting_keeps_the_old_dataset(tmp_path, class_tree, run_prepare, monkeypatch):
    class_tree(tmp_path / "src", {"cat": 4, "dog": 4})
    out = tmp_path / "out"
    old = run_prepare(out, source="folder", path=tmp_path / "src", size=8)
    _failing_after(monkeypatch, good=3)
    with pytest.raises(RuntimeError):
        run_prepare(out, source="folder", path=tmp_path / "src", size=16, overwrite=True)
    kept = Dataset.open(out)
    assert kept.shape == (8, 8, 3) and kept.fingerprint == old.fingerprint
    assert _leftovers(tmp_path) == []


def test_a_killed_run_leaves_no_dataset_and_the_next_run_cleans_up(tmp_path, class_tree, run_prepare):
    src, out = tmp_path / "src", tmp_path / "out"
    class_tree(src, {"cat": 20, "dog": 20})
    # A child process that decodes slowly (0.2 s per image), killed with SIGKILL mid-way.
    script = textwrap.dedent(f"""
        import importlib, time
        p = importlib.import_module("synthworth.data.prepare")
        real = p.load_image
        def slow(path, spec):
            time.sleep(0.2)
            return real(path, spec)
        p.load_image = slow
        p.prepare(p.PrepareConfig(source="folder", path={str(src)!r}, size=8, workers=0),
                  {str(out)!r}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        temps: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in tmp_path.glob(".out.tmp-*") if (p / "images.npy").exists()]
            if temps:
                break
            time.sleep(0.05)
        assert temps, "the child never started writing"
        time.sleep(0.3)
        assert proc.poll() is None, "the child finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    assert not any(_looks_like_dataset(p) for p in tmp_path.iterdir())
    with pytest.raises(DataError, match="not a complete Dataset"):
        Dataset.open(temps[0])

    ds = run_prepare(out, source="folder", path=src, size=8)
    assert len(ds) == 40
    assert _leftovers(tmp_path) == []  # the dead run's temporary folder was removed


# ------------------------------------------------------------------------------------ reuse
def test_same_options_on_an_unchanged_source_reuse_the_dataset(tmp_path, class_tree, run_prepare,
                                                                monkeypatch, capsys):
    class_tree(tmp_path / "src", {"cat": 4, "dog": 4})
    out = tmp_path / "out"
    first = run_prepare(out, source="folder", path=tmp_path / "src", size=8, seed=1)
    stamps = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    manifest = json.loads((out / "manifest.json").read_text())

    def must_not_decode(path, spec):
        raise AssertionError("a reused Dataset must not be decoded again")

    monkeypatch.setattr(prepare_module, "load_image", must_not_decode)
    # workers and strict do not change the content, so they do not prevent the reuse.
    again = run_prepare(out, source="folder", path=tmp_path / "src", size=8, seed=1, workers=2,
                        progress=True)
    assert again.fingerprint == first.fingerprint
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir()} == stamps
    assert json.loads((out / "manifest.json").read_text())["created"] == manifest["created"]
    assert "reusing" in capsys.readouterr().err


def test_changed_options_need_overwrite(tmp_path, class_tree, run_prepare):
    class_tree(tmp_path / "src", {"cat": 4, "dog": 4})
    out = tmp_path / "out"
    run_prepare(out, source="folder", path=tmp_path / "src", size=8)
    with pytest.raises(DataError, match="other options; choose a new --out, or pass --overwrite"):
        run_prepare(out, source="folder", path=tmp_path / "src", size=16)
    assert Dataset.open(out).shape == (8, 8, 3)

    replaced = run_prepare(out, source="folder", path=tmp_path / "src", size=16, overwrite=True)
    assert replaced.shape == (16, 16, 3)
    assert Dataset.open(out).shape == (16, 16, 3)
    assert _leftovers(tmp_path) == []


def test_a_changed_source_is_not_reused(tmp_path, class_tree, make_image, run_prepare):
    class_tree(tmp_path / "src", {"cat": 4, "dog": 4})
    out = tmp_path / "out"
    run_prepare(out, source="folder", path=tmp_path / "src", size=8, test_fraction=0.0)
    make_image(tmp_path / "src" / "cat" / "new.png", colour=BLUE)
    with pytest.raises(DataError, match="--overwrite"):
        run_prepare(out, source="folder", path=tmp_path / "src", size=8, test_fraction=0.0)
    ds = run_prepare(out, source="folder", path=tmp_path / "src", size=8, test_fraction=0.0,
                     overwrite=True)
    assert len(ds) == 9


def test_overwrite_with_same_options_prepares_again(tmp_path, class_tree, run_prepare, monkeypatch):
    class_tree(tmp_path / "src", {"cat": 3, "dog": 3})
    out = tmp_path / "out"
    run_prepare(out, source="folder", path=tmp_path / "src", size=8, test_fraction=0.0)
    calls = _failing_after(monkeypatch, good=1000)
    ds = run_prepare(out, source="folder", path=tmp_path / "src", size=8, test_fraction=0.0,
                     overwrite=True)
    assert calls["n"] == 6 and len(ds) == 6


def test_a_non_dataset_folder_is_not_overwritten_silently(tmp_path, class_tree, run_prepare):
    class_tree(tmp_path / "src", {"cat": 3, "dog": 3})
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(SynthworthError, match="not written by synthworth .* choose a new folder, e.g. .*out-2"):
        run_prepare(out, source="folder", path=tmp_path / "src", size=8)
    with pytest.raises(SynthworthError, match="will not be replaced"):
        run_prepare(out, source="folder", path=tmp_path / "src", size=8, overwrite=True)
    assert (out / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]
    # An empty folder is fine to fill.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(run_prepare(empty, source="folder", path=tmp_path / "src", size=8)) == 6


def test_max_pixels_does_not_leak_into_the_process(tmp_path, make_image, run_prepare):
    limit = Image.MAX_IMAGE_PIXELS
    root = tmp_path / "src" / "cat"
    make_image(root / "small.png", size=(10, 10))
    make_image(root / "big.png", size=(100, 100))
    ds = run_prepare(source="folder", path=tmp_path / "src", size=8, max_pixels=1000, test_fraction=0.0)
    assert len(ds) == 1
    assert Image.MAX_IMAGE_PIXELS == limit
    with Image.open(root / "big.png") as img:  # the rest of the process still opens big images
        img.load()


def test_strict_is_not_bypassed_by_reusing_a_dataset_with_skips(messy_folder, run_prepare, tmp_path):
    root, _, expected = messy_folder
    out = tmp_path / "out"
    lenient = run_prepare(out, source="folder", path=root, size=8, max_pixels=1000)
    assert len(lenient.manifest["skipped"]) == len(expected)
    with pytest.raises(DataError, match=r"--strict: 5 file\(s\) could not be used"):
        run_prepare(out, source="folder", path=root, size=8, max_pixels=1000, strict=True)
    assert Dataset.open(out).fingerprint == lenient.fingerprint  # the earlier Dataset is untouched


def test_celeba_changed_attribute_csv_is_not_reused(celeba_download, run_prepare, tmp_path):
    root, _, _ = celeba_download
    out = tmp_path / "out"
    first = run_prepare(out, source="celeba", path=root, size=8, label_attr="Smiling")
    attr_csv = root / "list_attr_celeba.csv"
    lines = attr_csv.read_text().splitlines()
    header, rows = lines[0], [line.split(",") for line in lines[1:]]
    smiling = header.split(",").index("Smiling")
    for row in rows:
        row[smiling] = "1" if row[smiling] == "-1" else "-1"  # every label flipped
    attr_csv.write_text("\n".join([header] + [",".join(r) for r in rows]) + "\n")
    stat = attr_csv.stat()
    os.utime(attr_csv, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(DataError, match="--overwrite"):
        run_prepare(out, source="celeba", path=root, size=8, label_attr="Smiling")
    again = run_prepare(out, source="celeba", path=root, size=8, label_attr="Smiling", overwrite=True)
    np.testing.assert_array_equal(again.labels, 1 - first.labels)
