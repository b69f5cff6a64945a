"""Image folders: shapes and labels, the subsample, resize and colour rules, bad files, the cache."""

import os

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from sslgeom import folder_speed, image_folder
from sslgeom.folder_speed import write_synthetic_folder
from sslgeom.image_folder import ImageFolderError, load_image_folder, subsample_order


def save(path, array):
    """Write an array as an image; PIL picks the mode from the dtype and channels (LA, RGBA, I;16, 1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path)
    return path


@pytest.fixture
def folder(tmp_path, private_cache):
    """3 classes x 5 images of 20 x 30 pixels (PNG), with a private cache."""
    return write_synthetic_folder(tmp_path / "images", n_classes=3, n_per_class=5, shape=(20, 30), seed=0)


def read(root, **kwargs):
    return load_image_folder(root, **{"size": 16, "num_workers": 0, "progress": False, **kwargs})


def test_reads_uint8_images_int64_labels_and_class_names(folder):
    data = read(folder)
    assert data.images.dtype == torch.uint8 and data.images.shape == (15, 3, 16, 16)
    assert data.labels.dtype == np.int64 and data.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert data.classes == ("class_0", "class_1", "class_2")
    assert list(data.paths) == sorted(data.paths) and data.paths[0] == "class_0/img_00000.png"
    report = data.report
    assert (report.n_found, report.n_loaded, report.n_skipped, report.n_upsampled) == (15, 15, 0, 0)
    assert report.kept_per_class == {"class_0": 5, "class_1": 5, "class_2": 5} and report.short_classes == {}
    assert "15 images of 3 classes" in report.summary()


def test_worker_processes_decode_the_same_images(folder):
    in_process = read(folder, use_cache=False)
    workers = read(folder, use_cache=False, num_workers=2, batch_size=4)
    assert torch.equal(in_process.images, workers.images) and workers.paths == in_process.paths


def test_crop_resizes_the_shorter_side_then_crops_the_centre(tmp_path):
    # 20 x 40 image: red left quarter, green middle half, blue right quarter
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :10, 0], array[:, 10:30, 1], array[:, 30:, 2] = 255, 255, 255
    path = save(tmp_path / "wide.png", array)
    cropped, upsampled = image_folder.decode_image(path, 16, "crop")
    expected = TF.center_crop(TF.resize(torch.from_numpy(array).permute(2, 0, 1), 16, antialias=True), [16, 16])
    assert cropped.shape == (3, 16, 16) and not upsampled
    assert (cropped.int() - expected.int()).abs().max() <= 1  # PIL and tensor resize agree to rounding
    # only the green centre is left (the outermost columns blend a little red or blue in)
    assert cropped[1, :, 1:-1].min() == 255 and cropped[0, :, 1:-1].max() == 0 and cropped[2].max() < 30
    stretched, _ = image_folder.decode_image(path, 16, "stretch")
    assert stretched.shape == (3, 16, 16)
    assert stretched[0, :, 0].min() >= 250 and stretched[2, :, -1].min() >= 250  # the whole width is kept


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((12, 30, 3), np.uint8)
    array[:, :10, 0] = 255  # red left third as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the red third ends up on top
    Image.fromarray(array).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image, _ = image_folder.decode_image(tmp_path / "rotated.jpg", 12, "stretch")
    assert image[0, :3].float().mean() > 200 and image[0, -3:].float().mean() < 50


def test_subsample_is_the_first_files_of_a_seeded_per_class_order(folder):
    data = read(folder, n_per_class=2, seed=3)
    for label, name in enumerate(data.classes):
        files = sorted(f"{name}/{p.name}" for p in (folder / name).iterdir())
        chosen = sorted(files[i] for i in subsample_order(files, name, 3)[:2])
        assert [p for p, y in zip(data.paths, data.labels) if y == label] == chosen
    assert read(folder, n_per_class=2, seed=3).paths == data.paths
    assert read(folder, n_per_class=2, seed=4).paths != data.paths
    # a class's draw depends on its name and the seed only: another class does not change it
    write_synthetic_folder(folder, n_classes=4, n_per_class=5, shape=(20, 30), seed=9)
    grown = read(folder, n_per_class=2, seed=3)
    assert grown.paths[:6] == data.paths and len(grown.classes) == 4


def test_a_short_class_keeps_all_its_files_and_is_reported(folder):
    for extra in range(3):
        (folder / "class_1" / f"img_0000{extra}.png").unlink()
    data = read(folder, n_per_class=4)
    assert data.report.kept_per_class == {"class_0": 4, "class_1": 2, "class_2": 4}
    assert data.report.short_classes == {"class_1": 2}
    assert "class_1 (2)" in data.report.summary()


def test_unreadable_files_are_skipped_replaced_and_reported(folder):
    (folder / "class_0" / "img_00000b.png").write_bytes(os.urandom(300))  # not an image at all
    good = (folder / "class_2" / "img_00000.png").read_bytes()
    (folder / "class_2" / "img_00000.png").write_bytes(good[: len(good) // 2])  # truncated
    data = read(folder, num_workers=2, use_cache=False)
    assert data.report.n_found == 16 and data.report.n_loaded == 14 and data.report.n_skipped == 2
    assert any("class_0/img_00000b.png: UnidentifiedImageError" in s for s in data.report.skipped)
    assert any("class_2/img_00000.png" in s for s in data.report.skipped)
    assert data.report.short_classes == {}  # without a target per class, no class is short
    assert "Skipped 2 unreadable files" in data.report.summary()
    # with a target per class, the next file of the seeded order replaces an unreadable one: take a
    # seed whose first 5 files of class_0 include the bad one, so that the replacement is needed
    files = sorted(f"class_0/{p.name}" for p in (folder / "class_0").iterdir())
    seed = next(s for s in range(50) if "class_0/img_00000b.png" in
                [files[i] for i in subsample_order(files, "class_0", s)[:5]])
    replaced = read(folder, n_per_class=5, seed=seed, num_workers=2, use_cache=False)
    assert replaced.report.kept_per_class == {"class_0": 5, "class_1": 5, "class_2": 4}
    assert replaced.report.short_classes == {"class_2": 4}
    assert "class_0/img_00000b.png" not in replaced.paths


def test_every_colour_mode_becomes_rgb(tmp_path, private_cache):
    root = tmp_path / "modes"
    grey = np.full((12, 12), 100, np.uint8)
    save(root / "a" / "grey.png", grey)
    save(root / "a" / "grey_alpha.png", np.stack([grey, np.zeros_like(grey)], -1))
    save(root / "a" / "rgba.png", np.tile(np.array([10, 20, 30, 0], np.uint8), (12, 12, 1)))
    save(root / "a" / "sixteen_bit.png", np.full((12, 12), 257 * 100, np.uint16))
    palette = Image.fromarray(np.full((12, 12, 3), (200, 50, 0), np.uint8)).quantize(4)
    palette.info["transparency"] = 0
    (root / "b").mkdir()
    palette.save(root / "b" / "palette.png")
    Image.fromarray(np.full((12, 12, 3), (200, 50, 0), np.uint8)).convert("CMYK").save(root / "b" / "cmyk.jpg")
    save(root / "b" / "bilevel.png", np.ones((12, 12), bool))
    data = read(root, size=8)
    pixel = {path.split("/")[1]: tuple(data.images[i, :, 4, 4].tolist()) for i, path in enumerate(data.paths)}
    assert data.images.shape == (7, 3, 8, 8)
    assert pixel["grey.png"] == pixel["grey_alpha.png"] == pixel["sixteen_bit.png"] == (100, 100, 100)
    assert pixel["rgba.png"] == (10, 20, 30) and pixel["bilevel.png"] == (255, 255, 255)
    assert pixel["palette.png"] == (200, 50, 0)
    assert np.allclose(pixel["cmyk.jpg"], (200, 50, 0), atol=8)  # JPEG is lossy


def test_small_images_are_upsampled_and_counted(folder):
    save(folder / "class_0" / "tiny.png", np.full((6, 9, 3), 77, np.uint8))
    data = read(folder, size=16)
    assert data.report.n_upsampled == 1 and "Upsampled 1 images" in data.report.summary()
    tiny = data.paths.index("class_0/tiny.png")
    assert data.images[tiny].shape == (3, 16, 16) and (data.images[tiny] == 77).all()


def test_non_image_and_hidden_files_are_ignored(folder):
    (folder / "README.txt").write_text("not a class")
    (folder / "class_0" / "notes.md").write_text("not an image")
    (folder / "class_0" / "._img_00000.png").write_bytes(b"AppleDouble")  # macOS metadata, named like an image
    (folder / "class_0" / ".DS_Store").write_bytes(b"\0")
    save(folder / ".ipynb_checkpoints" / "img.png", np.zeros((20, 30, 3), np.uint8))  # a hidden folder
    (folder / "empty_class").mkdir()
    data = read(folder)
    assert data.classes == ("class_0", "class_1", "class_2") and data.report.n_loaded == 15
    assert data.report.n_ignored == 3 and data.report.n_skipped == 0
    assert "class_0/notes.md" in data.report.ignored and data.report.empty_classes == ("empty_class",)


def test_folder_errors_say_what_is_wrong(tmp_path, private_cache):
    with pytest.raises(FileNotFoundError, match="does not exist.*root/<class>/<image>"):
        read(tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is a file"):
        read(tmp_path / "file.png")
    loose = tmp_path / "loose"
    save(loose / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ImageFolderError, match=r"no class sub-folders \(1 images lie directly in it\)"):
        read(loose)
    (tmp_path / "none" / "a").mkdir(parents=True)
    (tmp_path / "none" / "a" / "x.txt").write_text("x")
    with pytest.raises(ImageFolderError, match="No PNG or JPEG images.*ignored 1 other files"):
        read(tmp_path / "none")
    save(tmp_path / "one" / "cats" / "a.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "one" / "dogs").mkdir()
    with pytest.raises(ImageFolderError, match="single class \\('cats'\\).*at least 2 classes"):
        read(tmp_path / "one")
    (tmp_path / "one" / "dogs" / "b.png").write_bytes(b"broken")
    with pytest.raises(ImageFolderError, match="Fewer than 2 classes .* have a readable image.*dogs/b.png"):
        read(tmp_path / "one")


@pytest.mark.parametrize("option, value, error", [
    ("size", 4, ValueError), ("size", 16.0, TypeError), ("n_per_class", 0, ValueError),
    ("resize", "pad", ValueError), ("num_workers", -1, ValueError), ("seed", -1, ValueError),
])
def test_invalid_options_are_refused(folder, option, value, error):
    with pytest.raises(error, match=option if option != "resize" else "resize mode"):
        read(folder, **{option: value})


def test_cache_is_reused_and_a_changed_folder_recomputes(folder, monkeypatch):
    first = read(folder, n_per_class=3)
    calls = []
    original = image_folder._decode_selection
    monkeypatch.setattr(image_folder, "_decode_selection", lambda *a, **k: calls.append(1) or original(*a, **k))
    again = read(folder, n_per_class=3)
    assert calls == [] and torch.equal(again.images, first.images) and again.report == first.report
    read(folder, n_per_class=3, seed=1)
    read(folder, n_per_class=3, size=12)
    assert len(calls) == 2  # seed and size are part of the key
    path = folder / "class_1" / "img_00001.png"
    save(path, np.full((20, 30, 3), 9, np.uint8))
    os.utime(path, ns=(1, 1))  # same name, new content and modification time
    changed = read(folder, n_per_class=5)
    assert len(calls) == 3 and (changed.images[changed.paths.index("class_1/img_00001.png")] == 9).all()


def test_decoding_throughput_is_measured(folder):
    result = folder_speed.decoding_throughput(folder, size=16, num_workers=0)
    assert result["images"] == 15 and result["seconds"] > 0 and result["images_per_second"] > 0
    assert folder_speed.benchmark_decoding(6, shape=(20, 30), size=16, num_workers=0)["images"] == 6
