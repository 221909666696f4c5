"""lrpkit.data: image loading and its bad inputs, the checksummed image sets, ILSVRC-2012 val."""
from __future__ import annotations

import csv
import functools
import http.server
import io
import os
import shutil
import struct
import subprocess
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from lrpkit import checksums, data, imagenet, models

ROOT = Path(__file__).resolve().parent.parent
MIRROR = Path(os.environ.get("LRPKIT_DATA_MIRROR") or ROOT.parent / "shared" / "data")
needs_mirror = pytest.mark.skipif(not (MIRROR / "SOURCES.tsv").is_file(),
                                  reason=f"no image mirror at {MIRROR}")
CASTLE = MIRROR / "castle.jpg"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test fetches into its own cache and sees no mirror unless it sets one."""
    monkeypatch.setenv("LRPKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LRPKIT_DATA_MIRROR", raising=False)


# --------------------------------------------------------------------------------------------
# files for the bad-input tests (also used by tests/test_cli.py)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height but holds almost no data: a decoder that trusted it
    would allocate width * height * 3 bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return path


def bad_image_files(folder: Path) -> dict[str, tuple[Path, type, str]]:
    """name -> (file, expected exception, words the one-line message must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.jpg").write_text("this is a text file, not a picture\n")
    (folder / "empty.png").write_bytes(b"")
    jpeg = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(jpeg, "JPEG", quality=90)
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    Image.new("RGB", (1, 1), (255, 0, 0)).save(folder / "one-pixel.png")
    _png_header_only(folder / "huge.png", 30000, 30000)      # beyond Pillow's own bomb limit
    _png_header_only(folder / "large.png", 12000, 10000)     # 120 MP: beyond lrpkit's limit only
    return {
        "missing file": (folder / "does-not-exist.jpg", FileNotFoundError, "not found"),
        "not an image": (folder / "notes.jpg", ValueError, "not an image"),
        "truncated JPEG": (folder / "truncated.jpg", ValueError, "truncated"),
        "empty file": (folder / "empty.png", ValueError, "empty"),
        "1x1 image": (folder / "one-pixel.png", ValueError, "too small"),
        "huge image": (folder / "huge.png", ValueError, "too large"),
        "large image": (folder / "large.png", ValueError, "too large"),
    }


BAD_NAMES = ["missing file", "not an image", "truncated JPEG", "empty file", "1x1 image",
             "huge image", "large image"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_image_raises_one_clear_error(tmp_path, name):
    path, kind, words = bad_image_files(tmp_path)[name]
    with pytest.raises(kind) as caught:
        data.load_image(path)
    message = str(caught.value)
    assert words in message and str(path) in message and "\n" not in message
    assert type(caught.value) is kind or kind is ValueError  # not a deep PIL/torch error type


# --------------------------------------------------------------------------------------------
# formats: every one becomes the 8-bit RGB a viewer shows


def _quadrants(size: int = 64) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    half = size // 2
    img[:half, :half] = (255, 0, 0)
    img[:half, half:] = (0, 255, 0)
    img[half:, :half] = (0, 0, 255)
    img[half:, half:] = (255, 255, 0)
    return img


def test_grayscale_becomes_equal_channels(tmp_path):
    gray = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    rgb = data.read_rgb(tmp_path / "g.png", size=64)
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], gray)


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[:, :32] = (0, 0, 255, 255)      # opaque blue
    rgba[:, 32:48] = (255, 0, 0, 0)      # fully transparent red: white
    rgba[:, 48:] = (0, 0, 0, 128)        # half-transparent black: mid gray
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = data.read_rgb(tmp_path / "a.png", size=64)
    assert (rgb[:, :32] == (0, 0, 255)).all()
    assert (rgb[:, 32:48] == 255).all()
    expected = round(255 * (1 - 128 / 255))
    assert (rgb[:, 48:] == expected).all()


def test_palette_image_takes_its_palette_colours(tmp_path):
    img = Image.fromarray(_quadrants(), "RGB").convert("P", palette=Image.ADAPTIVE, colors=4)
    img.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(data.read_rgb(tmp_path / "p.png", size=64), _quadrants())


def test_palette_transparency_is_composited(tmp_path):
    img = Image.fromarray(_quadrants(), "RGB").convert("P", palette=Image.ADAPTIVE, colors=4)
    red = img.getpixel((0, 0))
    img.info["transparency"] = red
    img.save(tmp_path / "pt.png", transparency=red)
    rgb = data.read_rgb(tmp_path / "pt.png", size=64)
    assert (rgb[:32, :32] == 255).all()              # transparent red -> white
    np.testing.assert_array_equal(rgb[32:, 32:], _quadrants()[32:, 32:])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    # pure process colours: cyan+magenta+yellow inks -> RGB primaries and their complements
    cmyk = np.zeros((64, 64, 4), np.uint8)
    cmyk[:32, :32] = (0, 255, 255, 0)    # red
    cmyk[:32, 32:] = (255, 0, 255, 0)    # green
    cmyk[32:, :32] = (255, 255, 0, 0)    # blue
    cmyk[32:, 32:] = (0, 0, 0, 255)      # black
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", quality=100)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    rgb = data.read_rgb(tmp_path / "c.jpg", size=64).astype(int)
    centre = {(8, 8): (255, 0, 0), (8, 56): (0, 255, 0), (56, 8): (0, 0, 255), (56, 56): (0, 0, 0)}
    for (row, col), colour in centre.items():
        assert np.abs(rgb[row, col] - colour).max() <= 4, (row, col, rgb[row, col])


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    values = np.tile((np.arange(64, dtype=np.uint32) * 1040).astype(np.uint16), (64, 1))
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    rgb = data.read_rgb(tmp_path / "g16.png", size=64)
    expected = np.round(values / 257.0).astype(np.uint8)   # 65535 -> 255, 0 -> 0
    np.testing.assert_array_equal(rgb[..., 1], expected)
    assert len(np.unique(rgb)) > 32          # Pillow's plain convert("RGB") would clip to 255


def test_16bit_rgb_png_keeps_the_high_byte(tmp_path):
    import cv2
    bgr16 = np.zeros((64, 64, 3), np.uint16)
    bgr16[...] = (1000, 32896, 65535)     # OpenCV writes BGR
    cv2.imwrite(str(tmp_path / "c16.png"), bgr16)
    rgb = data.read_rgb(tmp_path / "c16.png", size=64)
    assert (rgb == (255, 128, 3)).all()


def test_exif_orientation_is_applied(tmp_path):
    original = _quadrants()
    exif = Image.Exif()
    exif[0x0112] = 6          # EXIF: stored image must be turned 90 degrees clockwise to display
    Image.fromarray(original).save(tmp_path / "o.jpg", exif=exif, quality=100)
    rgb = data.read_rgb(tmp_path / "o.jpg", size=64).astype(int)
    displayed = np.rot90(original, k=-1).astype(int)
    assert np.abs(rgb[8::16, 8::16] - displayed[8::16, 8::16]).max() <= 8


# --------------------------------------------------------------------------------------------
# geometry and normalisation against torchvision


def test_crop_matches_torchvision_imagenet_transform(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "r.png")
    x, rgb = data.load_image(tmp_path / "r.png", return_rgb=True)
    transform = torchvision.models.VGG16_Weights.IMAGENET1K_V1.transforms()
    expected = transform(Image.open(tmp_path / "r.png"))[None]
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32 and rgb.shape == (224, 224, 3)
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=0)


@needs_mirror
def test_castle_is_used_as_is_and_rgb_gives_back_the_tensor():
    x, rgb = data.load_image(CASTLE, return_rgb=True)
    raw = np.asarray(Image.open(CASTLE).convert("RGB"))
    assert raw.shape == (224, 224, 3)
    np.testing.assert_array_equal(rgb, raw)          # 224x224 stays untouched under "auto"
    mean = torch.tensor(imagenet.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(imagenet.STD).view(1, 3, 1, 1)
    back = torch.round((x * std + mean) * 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(back, rgb)
    assert imagenet.MEAN == tuple(torchvision.models.VGG16_Weights.IMAGENET1K_V1.transforms().mean)


def test_resize_modes(tmp_path):
    Image.new("RGB", (100, 50), (10, 20, 30)).save(tmp_path / "w.png")
    assert data.read_rgb(tmp_path / "w.png", resize="exact").shape == (224, 224, 3)
    assert data.read_rgb(tmp_path / "w.png", size=64, resize="crop").shape == (64, 64, 3)
    with pytest.raises(ValueError, match="not 224x224"):
        data.read_rgb(tmp_path / "w.png", resize="none")
    with pytest.raises(ValueError, match="unknown resize mode"):
        data.read_rgb(tmp_path / "w.png", resize="stretch")


@pytest.mark.parametrize("size", [256, 100, 64, 32])
def test_crop_matches_torchvision_at_other_sizes(tmp_path, size):
    """Any size VGG takes: shorter side to round(size * 256 / 224), then the centre size x size."""
    from torchvision import transforms
    pixels = np.random.default_rng(2).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "r.png")
    expected = transforms.Compose([transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size)])(
        Image.open(tmp_path / "r.png"))
    np.testing.assert_array_equal(data.read_rgb(tmp_path / "r.png", size=size), np.asarray(expected))


def test_sizes_out_of_range_are_refused_before_any_work(tmp_path):
    """A huge size is refused up front in one line (it used to surface as Pillow's decompression-bomb
    warning, or error, from the crop); so is one below VGG's 32 pixels."""
    Image.new("RGB", (40, 40), (10, 20, 30)).save(tmp_path / "s.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^size 10001 is too large: .* at most 10000$"):
            data.read_rgb(tmp_path / "s.png", size=10001)
        with pytest.raises(ValueError, match=r"^size 31 is too small: .* at least 32$"):
            data.load_image(tmp_path / "s.png", size=31)


def test_no_pillow_warning_for_sizes_within_lrpkits_limit(tmp_path, monkeypatch):
    """Pillow's decompression-bomb check (89 MP, an error at twice that) must not fire on the images
    lrpkit makes itself: lrpkit applies its own limit to the files it opens. A --size of 9500 crosses
    Pillow's limit; here the limit is scaled down so that the test stays small."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    Image.new("RGB", (40, 40), (10, 20, 30)).save(tmp_path / "s.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for size in (72, 100):  # 72x72 crop: over Pillow's limit; 100x100: over twice it
            assert data.read_rgb(tmp_path / "s.png", size=size).shape == (size, size, 3)


# --------------------------------------------------------------------------------------------
# image sets


def test_unknown_image_set_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown image set 'castel' \(did you mean 'castle'\?\)"):
        data.fetch("castel", mirror=MIRROR)
    with pytest.raises(ValueError, match="known sets: .*random10"):
        data.image_set("imagenet")


def test_manifest_labels_agree_with_torchvision_and_sets():
    categories = imagenet.categories()
    records = data.manifest()
    assert len(records) == 85 and len({r.file for r in records}) == 85
    for record in records:
        assert categories[record.class_index] == record.class_name
        assert len(record.sha256) == 64 and record.source_url.startswith("https://")
    sets = data.image_sets()
    assert set(sets) >= {"castle", "castle2", "axolotl", "dalmatian", "alp", "random10"}
    label = {r.file: r.class_index for r in records}
    assert [label[f] for f in sets["castle"] + sets["castle2"]] == [483, 483]
    assert [label[sets[n][0]] for n in ("axolotl", "dalmatian", "alp")] == [29, 251, 970]
    random10 = [label[f] for f in sets["random10"]]
    assert len(set(random10)) == 10 and not set(random10) & {29, 251, 483, 970}


@needs_mirror
def test_manifest_is_what_build_manifest_writes_from_sources():
    import importlib.util
    spec = importlib.util.spec_from_file_location("build_manifest", ROOT / "data" / "build_manifest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    images, sets = module.build(MIRROR)
    assert (ROOT / "data" / "images.tsv").read_text() == images
    assert (ROOT / "data" / "sets.tsv").read_text() == sets
    with open(MIRROR / "SOURCES.tsv", newline="") as handle:
        sources = {r["file"]: r["sha256"] for r in csv.DictReader(handle, delimiter="\t")}
    assert {r.file: r.sha256 for r in data.manifest()} == sources


@needs_mirror
def test_fetch_from_mirror_verifies_and_skips_intact_files(tmp_path):
    paths = data.fetch(["castle", "random10"], mirror=MIRROR)
    assert len(paths) == 11
    for path in paths:
        assert path.is_file() and str(path).startswith(str(tmp_path / "cache"))
        assert path.read_bytes() == (MIRROR / path.relative_to(tmp_path / "cache")).read_bytes()
    before = paths[0].stat().st_mtime_ns
    data.fetch("castle", mirror=MIRROR)
    assert paths[0].stat().st_mtime_ns == before      # intact: not copied again
    records = data.image_set("castle", fetch_missing=False)
    assert records[0].path == paths[0] and records[0].class_index == 483


@needs_mirror
def test_fetch_uses_the_mirror_environment_variable(monkeypatch):
    monkeypatch.setenv("LRPKIT_DATA_MIRROR", str(MIRROR))
    (path,) = data.fetch("axolotl")
    assert checksums.sha256_file(path) == data.image_set("axolotl")[0].sha256


@needs_mirror
def test_checksum_mismatch_rejects_the_file(tmp_path):
    mirror = tmp_path / "bad-mirror"
    mirror.mkdir()
    shutil.copy(MIRROR / "castle.jpg", mirror / "castle.jpg")
    with open(mirror / "castle.jpg", "r+b") as handle:      # one flipped byte
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(data.ChecksumError, match="checksum mismatch for castle.jpg.*rejected"):
        data.fetch("castle", mirror=mirror)
    cache = tmp_path / "cache"
    assert not (cache / "castle.jpg").exists() and not list(cache.rglob("*.part"))
    with pytest.raises(FileNotFoundError, match="lrpkit data fetch castle"):
        data.image_set("castle", fetch_missing=False)


@needs_mirror
def test_damaged_cached_file_is_replaced_not_used(tmp_path):
    (path,) = data.fetch("castle", mirror=MIRROR)
    path.write_bytes(b"garbage")
    with pytest.raises(FileNotFoundError):
        data.image_set("castle", fetch_missing=False)     # damaged: deleted, not handed out
    assert not path.exists()
    record = data.image_set("castle", mirror=MIRROR)[0]
    assert checksums.sha256_file(record.path) == record.sha256


def test_missing_mirror_folder_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="mirror not found"):
        data.fetch("castle", mirror=tmp_path / "nowhere")
    (tmp_path / "empty-mirror").mkdir()
    with pytest.raises(FileNotFoundError, match="castle.jpg is not in the mirror folder"):
        data.fetch("castle", mirror=tmp_path / "empty-mirror")


@needs_mirror
def test_fetch_downloads_from_url_and_checks(tmp_path, monkeypatch):
    """The URL path, against a local HTTP server standing in for the public host."""
    served = tmp_path / "www"
    served.mkdir()
    shutil.copy(MIRROR / "castle.jpg", served / "castle.jpg")
    (served / "wrong.jpg").write_bytes(b"not the castle")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    castle = data.manifest()[0]
    assert castle.file == "castle.jpg"
    try:
        monkeypatch.setattr(data, "manifest", lambda: [
            castle.__class__(**{**castle.__dict__, "source_url": f"{base}/castle.jpg"})])
        (path,) = data.fetch("castle")
        assert checksums.sha256_file(path) == castle.sha256
        path.unlink()
        monkeypatch.setattr(data, "manifest", lambda: [
            castle.__class__(**{**castle.__dict__, "source_url": f"{base}/wrong.jpg"})])
        with pytest.raises(data.ChecksumError):
            data.fetch("castle")
        assert not path.exists()
        monkeypatch.setattr(data, "manifest", lambda: [
            castle.__class__(**{**castle.__dict__, "source_url": f"{base}/gone.jpg"})])
        with pytest.raises(FileNotFoundError, match="cannot download .*LRPKIT_DATA_MIRROR"):
            data.fetch("castle")
    finally:
        server.shutdown()
        server.server_close()


def test_git_tracks_no_images_or_weights():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    binary = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pth", ".pt", ".npy"}
    assert not [f for f in files if Path(f).suffix.lower() in binary]
    assert "data/images.tsv" in files or not files


# --------------------------------------------------------------------------------------------
# ILSVRC-2012 validation


def _classes() -> list[tuple[int, str, str]]:
    path = MIRROR / "imagenet_classes.tsv"
    with open(path, newline="") as handle:
        return [(int(r["index"]), r["wnid"], r["name"]) for r in csv.DictReader(handle, delimiter="\t")]


@needs_mirror
def test_class_order_is_sorted_wnids_and_names_are_torchvisions():
    classes = _classes()
    assert [c[0] for c in classes] == list(range(1000))
    assert [c[1] for c in classes] == sorted(c[1] for c in classes)
    assert [c[2] for c in classes] == imagenet.categories()


@needs_mirror
def test_imagenet_val_class_folders(tmp_path):
    root = tmp_path / "val"
    for _, wnid, _ in _classes():
        (root / wnid).mkdir(parents=True)
    axolotl = MIRROR / "imagenet-samples" / "n01632777_axolotl.JPEG"
    for number in (7, 3, 12):
        shutil.copy(axolotl, root / "n01632777" / f"ILSVRC2012_val_{number:08d}.JPEG")
    shutil.copy(CASTLE, root / "n02980441" / "ILSVRC2012_val_00000001.JPEG")
    val = imagenet.ImageNetVal(root)
    assert len(val) == 4
    for key in (29, "29", "n01632777", "axolotl", "Axolotl"):
        assert val.class_index(key) == 29
    assert val.class_index("castle") == val.class_index("n02980441") == 483
    first = val.images("axolotl", n=2)
    assert [p.name for p in first] == ["ILSVRC2012_val_00000003.JPEG", "ILSVRC2012_val_00000007.JPEG"]
    assert val.images(29) == val.images("n01632777", n=3)
    with pytest.raises(ValueError, match="fewer than n=4"):
        val.images(29, n=4)
    with pytest.raises(ValueError, match="out of range"):
        val.images(1000)
    with pytest.raises(ValueError, match="unknown ImageNet class name 'axolotel'.*axolotl"):
        val.class_index("axolotel")
    with pytest.raises(ValueError, match="ambiguous"):
        val.class_index("CARDIGAN")
    assert val.class_index("Cardigan") == 264 and val.class_index("cardigan") == 474


@needs_mirror
def test_imagenet_val_partial_folders_need_wnids(tmp_path):
    root = tmp_path / "val"
    (root / "n01632777").mkdir(parents=True)
    shutil.copy(CASTLE, root / "n01632777" / "a.JPEG")
    with pytest.raises(ValueError, match="1 class folders, not 1000.*wnids"):
        imagenet.ImageNetVal(root)
    val = imagenet.ImageNetVal(root, wnids=MIRROR / "imagenet_classes.tsv")
    assert val.samples == [(root / "n01632777" / "a.JPEG", 29)]


@needs_mirror
def test_imagenet_val_flat_with_label_files(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for number in (1, 2, 3):
        shutil.copy(CASTLE, root / f"ILSVRC2012_val_{number:08d}.JPEG")
    caffe = tmp_path / "val.txt"       # "<file> <torchvision class index>"
    caffe.write_text("ILSVRC2012_val_00000001.JPEG 29\nILSVRC2012_val_00000002.JPEG 483\n"
                     "ILSVRC2012_val_00000003.JPEG 29\n")
    val = imagenet.ImageNetVal(root, labels=caffe)
    assert [p.name for p in val.images("axolotl")] == ["ILSVRC2012_val_00000001.JPEG",
                                                        "ILSVRC2012_val_00000003.JPEG"]
    with pytest.raises(ValueError, match="wnids .* unknown"):
        val.class_index("n01632777")
    kaggle = tmp_path / "LOC_val_solution.csv"    # header, id without suffix, wnid + boxes
    kaggle.write_text("ImageId,PredictionString\nILSVRC2012_val_00000002,n02980441 1 2 3 4 \n"
                      "ILSVRC2012_val_00000001,n01632777 5 6 7 8 n01632777 1 1 2 2\n")
    val = imagenet.ImageNetVal(root, labels=kaggle, wnids=MIRROR / "imagenet_classes.tsv")
    assert sorted((p.name, c) for p, c in val.samples) == [
        ("ILSVRC2012_val_00000001.JPEG", 29), ("ILSVRC2012_val_00000002.JPEG", 483)]
    truth = tmp_path / "ground_truth.txt"
    truth.write_text("65\n970\n")
    with pytest.raises(ValueError, match="devkit"):
        imagenet.ImageNetVal(root, labels=truth)
    with pytest.raises(ValueError, match="labels=FILE"):
        imagenet.ImageNetVal(root)


@needs_mirror
def test_imagenet_val_devkit(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    wnids = [c[1] for c in _classes()]
    order = np.random.default_rng(3).permutation(1000)      # devkit IDs are not torchvision's order
    synsets = np.zeros(1001, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"),
                                    ("num_children", "O")])
    for devkit_id, cls in enumerate(order, start=1):
        synsets[devkit_id - 1] = (devkit_id, wnids[cls], "leaf", 0)
    synsets[1000] = (1001, "n00001740", "entity", 3)          # an inner node: ignored
    devkit = tmp_path / "ILSVRC2012_devkit_t12"
    (devkit / "data").mkdir(parents=True)
    scipy_io.savemat(devkit / "data" / "meta.mat", {"synsets": synsets})
    id_of = {cls: devkit_id for devkit_id, cls in enumerate(order, start=1)}
    (devkit / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text(
        f"{id_of[483]}\n{id_of[29]}\n{id_of[29]}\n")
    root = tmp_path / "flat"
    root.mkdir()
    for number in (1, 2, 3):
        shutil.copy(CASTLE, root / f"ILSVRC2012_val_{number:08d}.JPEG")
    val = imagenet.ImageNetVal(root, devkit=devkit)
    assert val.wnids == wnids
    assert sorted((p.name, c) for p, c in val.samples) == [
        ("ILSVRC2012_val_00000001.JPEG", 483), ("ILSVRC2012_val_00000002.JPEG", 29),
        ("ILSVRC2012_val_00000003.JPEG", 29)]
    assert len(val.images("n01632777", n=2)) == 2


@needs_mirror
def test_fetch_and_load_show_progress_bars_when_asked(capsys):
    paths = data.fetch("random10", mirror=MIRROR, progress=True)
    assert "fetch images" in capsys.readouterr().err
    x, rgb = data.load_images(paths, return_rgb=True, progress=True)
    assert "load images" in capsys.readouterr().err
    assert x.shape == (10, 3, 224, 224) and rgb.shape == (10, 224, 224, 3)
    torch.testing.assert_close(x[3:4], data.load_image(paths[3]))
