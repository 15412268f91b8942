"""Tests of datamodules/: item format, splits, limits, caching, corrupt files and error messages.

Tests that need the Debian data (dataset-fashion-mnist, fonts-noto-color-emoji) skip when it is absent;
the rest run on small synthetic files.
"""

from __future__ import annotations

import gzip
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from PIL import Image

import datamodules.emoji as emoji_mod
from datamodules import (
    EmojiDataModule,
    EmojiDataset,
    FashionMNISTDataModule,
    FashionMNISTDataset,
    ImageFolderDataModule,
    ImageFolderDataset,
    load_emoji,
)
from datamodules.__main__ import main as cli_main
from datamodules.emoji import DEFAULT_FONT
from datamodules.fashion_mnist import DEFAULT_DATA_DIR, read_idx

HAVE_FASHION = Path(DEFAULT_DATA_DIR, "train-images-idx3-ubyte.gz").is_file()
HAVE_FONT = Path(DEFAULT_FONT).is_file()
needs_fashion = pytest.mark.skipif(
    not HAVE_FASHION, reason=f"Debian dataset-fashion-mnist absent ({DEFAULT_DATA_DIR})"
)
needs_font = pytest.mark.skipif(
    not HAVE_FONT, reason=f"Debian fonts-noto-color-emoji absent ({DEFAULT_FONT})"
)


def check_batch(batch: dict, batch_size: int, channels: int, resolution: int) -> None:
    image, index, label = batch["image"], batch["index"], batch["label"]
    assert image.shape == (batch_size, channels, resolution, resolution)
    assert image.dtype == torch.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert image.max() > 0.5  # not a blank image
    assert index.shape == (batch_size,) and index.dtype == torch.int64
    assert label.shape == (batch_size,) and label.dtype == torch.int64


# ---------------------------------------------------------------- Fashion-MNIST (synthetic idx files)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def fake_fashion(tmp_path_factory) -> Path:
    """A Fashion-MNIST folder with 120 train and 30 test 28x28 images; pixel (0, 0) encodes the row."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for part, n in (("train", 120), ("t10k", 30)):
        images = rng.integers(1, 256, size=(n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)
        write_idx(root / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{part}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return root


def test_read_idx_roundtrip_and_bad_magic(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), array)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")


def test_fashion_pad_keeps_pixels_and_zero_border(fake_fashion):
    ds = FashionMNISTDataset("test", data_dir=str(fake_fashion), resolution=32, resize_mode="pad")
    raw = read_idx(fake_fashion / "t10k-images-idx3-ubyte.gz")
    assert len(ds) == 30
    for i in (0, 7, 29):
        image = ds[i]["image"]
        assert image.shape == (1, 32, 32)
        np.testing.assert_allclose(image[0, 2:30, 2:30].numpy(), raw[i] / 255.0, atol=1e-6)
        border = torch.ones(32, 32, dtype=torch.bool)
        border[2:30, 2:30] = False
        assert image[0][border].abs().max() == 0
        assert int(ds[i]["label"]) == i % 10 and int(ds[i]["index"]) == i


def test_fashion_resize_mode_and_bad_args(fake_fashion):
    ds = FashionMNISTDataset("test", data_dir=str(fake_fashion), resolution=16, resize_mode="resize")
    image = ds[3]["image"]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32
    # antialiased downsampling averages: the mean brightness is kept (within rounding)
    raw = read_idx(fake_fashion / "t10k-images-idx3-ubyte.gz")[3] / 255.0
    assert abs(float(image.mean()) - raw.mean()) < 0.02
    with pytest.raises(ValueError, match="resize_mode='resize'"):
        FashionMNISTDataModule(resolution=16)  # pad cannot shrink
    with pytest.raises(ValueError, match="resize_mode"):
        FashionMNISTDataModule(resize_mode="stretch")
    with pytest.raises(ValueError, match="limit_train"):
        FashionMNISTDataModule(limit_train=0)


def test_fashion_splits_are_seeded_and_disjoint(fake_fashion):
    def rows(split, seed, **kw):
        ds = FashionMNISTDataset(split, data_dir=str(fake_fashion), val_size=20, seed=seed, **kw)
        return [int(ds[i]["image"][0, 2, 2] * 255 + 0.5) for i in range(len(ds))]  # pixel (0, 0) = row

    train, val = rows("train", 0), rows("val", 0)
    assert len(train) == 100 and len(val) == 20
    assert sorted(train + val) == list(range(120))
    assert rows("train", 0) == train and rows("val", 0) == val
    assert rows("val", 1) != val
    limited = rows("train", 0, limit=10)
    assert len(limited) == 10 and set(limited) <= set(train)
    assert rows("train", 0, limit=10) == limited and rows("train", 5, limit=10) != limited


def test_fashion_datamodule_loaders_and_attributes(fake_fashion):
    dm = FashionMNISTDataModule(batch_size=8, data_dir=str(fake_fashion), val_size=20, limit_train=40, seed=3)
    assert (dm.channels, dm.resolution, dm.num_classes) == (1, 32, 10)
    with pytest.raises(RuntimeError, match="setup"):
        _ = dm.num_train
    dm.setup("fit")
    assert dm.num_train == 40 and len(dm.val_set) == 20
    batch = next(iter(dm.train_dataloader()))
    check_batch(batch, 8, 1, 32)
    assert batch["index"].max() < 40 and ((batch["label"] >= 0) & (batch["label"] < 10)).all()
    # the train loader is shuffled by a seeded generator: same seed, same order; another seed, another
    order = torch.cat([b["index"] for b in dm.train_dataloader()])
    assert sorted(order.tolist()) == list(range(40)) and order.tolist() != list(range(40))
    dm2 = FashionMNISTDataModule(
        batch_size=8, data_dir=str(fake_fashion), val_size=20, limit_train=40, seed=3
    )
    dm2.setup("fit")
    assert torch.equal(torch.cat([b["index"] for b in dm2.train_dataloader()]), order)
    # each epoch has its own order, a function of (seed, epoch) only: a resumed run repeats it
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)
    epoch2 = torch.cat([b["index"] for b in loader])
    fresh = dm2.train_dataloader()
    fresh.sampler.set_epoch(2)
    assert not torch.equal(epoch2, order) and torch.equal(torch.cat([b["index"] for b in fresh]), epoch2)
    val_index = torch.cat([b["index"] for b in dm.val_dataloader()])
    assert val_index.tolist() == list(range(20))  # validation is not shuffled
    dm.setup("test")
    assert len(dm.test_set) == 30 and len(dm.test_dataloader()) == 4


def test_fashion_missing_dir_names_path_and_package(tmp_path):
    missing = tmp_path / "nowhere"
    dm = FashionMNISTDataModule(data_dir=str(missing))
    for call in (dm.prepare_data, lambda: dm.setup("fit")):
        with pytest.raises(FileNotFoundError) as err:
            call()
        message = str(err.value)
        assert str(missing) in message and "apt-get install dataset-fashion-mnist" in message
        assert "data_dir=" in message


@needs_fashion
def test_real_fashion_mnist():
    dm = FashionMNISTDataModule(
        batch_size=16, resolution=16, resize_mode="resize", limit_train=64, limit_test=32
    )
    dm.setup(None)
    assert dm.num_train == 64 and len(dm.val_set) == 5000 and len(dm.test_set) == 32
    check_batch(next(iter(dm.train_dataloader())), 16, 1, 16)
    full = FashionMNISTDataset("train")
    assert len(full) == 55000 and full[0]["image"].shape == (1, 32, 32)
    assert full.labels.bincount().tolist() == [6000] * 10  # the 60k file is balanced
    assert FashionMNISTDataset("val").rows.tolist() == FashionMNISTDataset("val").rows.tolist()


# ---------------------------------------------------------------- emoji


@pytest.fixture
def fake_font(tmp_path, monkeypatch):
    """A font file stand-in and a counting rasteriser that draws N distinct synthetic RGB images."""
    font = tmp_path / "fake.ttf"
    font.write_bytes(b"not really a font")
    calls = []

    def fake_rasterize(font_path, resolution=32, background=(255, 255, 255), limit=None):
        calls.append((str(font_path), resolution, tuple(background), limit))
        n = 50 if limit is None else min(limit, 50)
        images = np.zeros((n, resolution, resolution, 3), dtype=np.uint8)
        images[:] = np.array(background, dtype=np.uint8)
        images[:, 2:-2, 2:-2, 0] = np.arange(n, dtype=np.uint8)[:, None, None] * 5
        return images, [f"g{i:03d}" for i in range(n)]

    monkeypatch.setattr(emoji_mod, "rasterize_emoji", fake_rasterize)
    return font, calls


def test_emoji_cache_is_reused(fake_font, tmp_path, monkeypatch):
    font, calls = fake_font
    cache = tmp_path / "cache"
    first, names = load_emoji(font, 16, (255, 255, 255), None, cache)
    assert len(calls) == 1 and first.shape == (50, 16, 16, 3)
    second, names2 = load_emoji(font, 16, (255, 255, 255), None, cache)
    assert len(calls) == 1  # served from disk: the rasteriser was not called again
    np.testing.assert_array_equal(first, second)
    assert names2 == names
    files = list((cache / "emoji").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary files left behind
    # other settings are other cache entries
    load_emoji(font, 16, (0, 0, 0), None, cache)
    load_emoji(font, 8, (255, 255, 255), None, cache)
    load_emoji(font, 16, (255, 255, 255), 10, cache)
    assert len(calls) == 4 and len(list((cache / "emoji").iterdir())) == 4
    # the datamodule path reads the same cache: a rasteriser that raises proves it is not called
    monkeypatch.setattr(emoji_mod, "rasterize_emoji", lambda *a, **k: pytest.fail("rasterised again"))
    dm = EmojiDataModule(resolution=16, font_path=str(font), cache_dir=str(cache), batch_size=5)
    dm.prepare_data()
    dm.setup(None)
    assert dm.num_train + len(dm.val_set) + len(dm.test_set) == 50
    # a changed font file (size/mtime) is a cache miss
    font.write_bytes(b"a newer font version")
    with pytest.raises(pytest.fail.Exception, match="rasterised again"):
        load_emoji(font, 16, (255, 255, 255), None, cache)


def test_emoji_splits_seeded_disjoint_and_limited(fake_font, tmp_path):
    font, _ = fake_font

    def names(split, seed, **kw):
        return EmojiDataset(
            split, font_path=str(font), resolution=8, seed=seed, cache_dir=str(tmp_path), **kw
        ).names

    splits = {s: names(s, 0, val_fraction=0.2, test_fraction=0.1) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [35, 10, 5]
    assert sorted(sum(splits.values(), [])) == names("all", 0)
    assert names("val", 0, val_fraction=0.2, test_fraction=0.1) == splits["val"]
    assert names("val", 1, val_fraction=0.2, test_fraction=0.1) != splits["val"]
    limited = names("train", 0, val_fraction=0.2, test_fraction=0.1, split_limit=7)
    assert len(limited) == 7 and set(limited) <= set(splits["train"])
    dm = EmojiDataModule(
        batch_size=4, resolution=8, font_path=str(font), cache_dir=str(tmp_path), limit_train=12, seed=2
    )
    assert (dm.channels, dm.resolution, dm.num_classes) == (3, 8, 0)
    dm.setup("fit")
    assert dm.num_train == 12
    batch = next(iter(dm.train_dataloader()))
    check_batch(batch, 4, 3, 8)
    assert (batch["label"] == -1).all()


def test_emoji_missing_font_names_path_and_package(tmp_path):
    missing = tmp_path / "NoEmoji.ttf"
    dm = EmojiDataModule(font_path=str(missing), cache_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        dm.setup("fit")
    assert str(missing) in str(err.value) and "apt-get install fonts-noto-color-emoji" in str(err.value)
    with pytest.raises(ValueError, match="background"):
        EmojiDataModule(background=(0, 0, 300))


@needs_font
def test_real_emoji_rasterised_colourful_on_background(tmp_path):
    dm = EmojiDataModule(
        batch_size=8, resolution=16, limit=40, background=(0, 0, 255), cache_dir=str(tmp_path)
    )
    dm.setup(None)
    assert dm.num_train + len(dm.val_set) + len(dm.test_set) == 40
    check_batch(next(iter(dm.train_dataloader())), 8, 3, 16)
    images = EmojiDataset("all", resolution=16, limit=40, background=(0, 0, 255), cache_dir=str(tmp_path))
    stack = torch.stack([images[i]["image"] for i in range(len(images))])
    corners = stack[:, :, 0, 0]  # the corner of a centred glyph shows the background
    assert torch.allclose(corners.median(0).values, torch.tensor([0.0, 0.0, 1.0]), atol=0.05)
    saturation = stack.max(1).values - stack.min(1).values
    assert (saturation.flatten(1).mean(1) > 0.2).float().mean() > 0.5  # colour images, not gray
    assert images.names == sorted(images.names)  # deterministic order by glyph name
    assert len(list((tmp_path / "emoji").glob("*.npz"))) == 1


# ---------------------------------------------------------------- image folder


def solid(color, size=(24, 20), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


@pytest.fixture
def folder(tmp_path) -> Path:
    """Class folders of png/jpg/webp/bmp (upper case too), gray, RGBA, 16-bit, corrupt and truncated files."""
    root = tmp_path / "images"
    (root / "cats" / "deep").mkdir(parents=True)
    (root / "dogs").mkdir()
    solid((255, 0, 0)).save(root / "cats" / "red.png")
    solid(128, mode="L").save(root / "cats" / "gray.PNG")
    solid((0, 255, 0)).save(root / "cats" / "deep" / "green.jpg", quality=95)
    solid((0, 0, 255)).save(root / "dogs" / "blue.webp")
    solid((255, 255, 0)).save(root / "dogs" / "yellow.BMP")
    solid((0, 0, 0, 0), mode="RGBA").save(root / "dogs" / "clear.png")  # transparent -> white
    Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16)).save(root / "dogs" / "deep16.png")
    (root / "dogs" / "notes.txt").write_text("not an image")
    (root / "dogs" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    jpg = root / "cats" / "truncated.jpeg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpg)
    jpg.write_bytes(jpg.read_bytes()[:-2000])  # header intact: opens, fails to decode
    return root


def test_image_folder_skips_corrupt_files_with_one_warning(folder):
    dm = ImageFolderDataModule(str(folder), batch_size=3, resolution=16, val_fraction=0.2, test_fraction=0.2)
    with pytest.warns(UserWarning, match="unreadable") as record:
        dm.setup(None)
    messages = [str(w.message) for w in record if "unreadable" in str(w.message)]
    assert len(messages) == 1
    assert "corrupt.png" in messages[0] and "truncated.jpeg" in messages[0] and "notes.txt" not in messages[0]
    assert dm.num_train + len(dm.val_set) + len(dm.test_set) == 7
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        for batch in loader:  # a whole epoch of every split runs through
            assert batch["image"].shape[1:] == (3, 16, 16)
            assert batch["image"].min() >= 0 and batch["image"].max() <= 1
            assert (batch["label"] == -1).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder_converts_gray_and_rgb(folder, channels):
    with pytest.warns(UserWarning, match="unreadable"):
        ds = ImageFolderDataset(str(folder), resolution=16, channels=channels)
    by_name = {f.name: ds[i]["image"] for i, f in enumerate(ds.files)}
    assert len(by_name) == 7
    for image in by_name.values():
        assert image.shape == (channels, 16, 16) and image.dtype == torch.float32
    red, gray, clear, deep = (
        by_name["red.png"],
        by_name["gray.PNG"],
        by_name["clear.png"],
        by_name["deep16.png"],
    )
    if channels == 3:
        assert torch.allclose(red.mean((1, 2)), torch.tensor([1.0, 0.0, 0.0]), atol=0.01)
        assert torch.allclose(gray, torch.full_like(gray, 128 / 255), atol=0.01)  # gray -> equal channels
    else:
        assert torch.allclose(red, torch.full_like(red, 76 / 255), atol=0.01)  # ITU-R 601 luma of red
        assert torch.allclose(gray, torch.full_like(gray, 128 / 255), atol=0.01)
    assert torch.allclose(clear, torch.ones_like(clear))  # transparency composited on white
    assert torch.allclose(deep, torch.ones_like(deep))  # 16-bit white stays white


def test_image_folder_resizes_shorter_side_and_centre_crops(tmp_path):
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :10] = (255, 0, 0)
    array[:, 10:30] = (0, 255, 0)
    array[:, 30:] = (0, 0, 255)
    Image.fromarray(array).save(tmp_path / "wide.png")
    image = ImageFolderDataset(str(tmp_path), resolution=10)[0]["image"]
    assert image.shape == (3, 10, 10)
    # 20x40 -> 10x20, centre 10x10 is the green middle half (bicubic edges kept off by 1 px)
    assert torch.allclose(image[:, :, 1:-1].mean((1, 2)), torch.tensor([0.0, 1.0, 0.0]), atol=0.05)


def test_image_folder_labels_splits_and_whole_folder(folder):
    dm = ImageFolderDataModule(str(folder), resolution=8, labels_from_subdirs=True, val_fraction=0.3, seed=1)
    assert dm.num_classes == 2 and dm.class_names == ["cats", "dogs"] and dm.channels == 3
    with pytest.warns(UserWarning, match="unreadable"):
        dm.setup("fit")
    labels = {f.name: int(dm.train_set[i]["label"]) for i, f in enumerate(dm.train_set.files)}
    labels |= {f.name: int(dm.val_set[i]["label"]) for i, f in enumerate(dm.val_set.files)}
    assert labels == {"red.png": 0, "gray.PNG": 0, "green.jpg": 0} | dict.fromkeys(
        ["blue.webp", "yellow.BMP", "clear.png", "deep16.png"], 1
    )

    def split_files(seed, split="val"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ImageFolderDataset(str(folder), split=split, val_fraction=0.3, seed=seed).files

    assert len(split_files(1)) == 2 and split_files(1) == split_files(1)
    assert any(split_files(s) != split_files(1) for s in (2, 3, 4))
    assert set(split_files(1)).isdisjoint(split_files(1, "train"))
    dm.setup("test")
    with pytest.raises(ValueError, match="split='all'"):
        dm.test_dataloader()  # test_fraction=0: nothing held out
    whole = ImageFolderDataModule(str(folder), resolution=8, split="all", batch_size=4)
    with pytest.warns(UserWarning, match="unreadable"):
        whole.setup("test")
    assert len(whole.test_set) == 7
    assert torch.cat([b["index"] for b in whole.test_dataloader()]).tolist() == list(range(7))


def test_image_folder_item_guard_survives_file_breaking_after_scan(tmp_path):
    for i, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        solid(color).save(tmp_path / f"{i}.png")
    ds = ImageFolderDataset(str(tmp_path), resolution=8)
    (tmp_path / "1.png").write_bytes(b"broken now")
    with pytest.warns(RuntimeWarning, match="1.png"):
        item = ds[1]
    assert int(item["index"]) == 1 and item["image"].shape == (3, 8, 8)
    assert torch.allclose(item["image"].mean((1, 2)), torch.tensor([0.0, 0.0, 1.0]), atol=0.01)  # next image


def test_image_folder_errors_name_the_folder(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        ImageFolderDataModule(str(missing))
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match=f"{empty}.*no readable images"):
        ImageFolderDataModule(str(empty)).setup("fit")
    (empty / "sub" / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="no readable images"), pytest.warns(UserWarning, match="bad.jpg"):
        ImageFolderDataset(str(empty))
    with pytest.raises(ValueError, match="channels"):
        ImageFolderDataModule(str(empty), channels=2)


# ---------------------------------------------------------------- CLI / YAML


def test_constructors_parse_from_yaml(tmp_path, fake_fashion):
    parser = ArgumentParser()
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(EmojiDataModule, "emoji")
    parser.add_class_arguments(FashionMNISTDataModule, "fashion")
    parser.add_class_arguments(ImageFolderDataModule, "folder")
    config = tmp_path / "data.yaml"
    config.write_text(
        f"emoji:\n  background: [0, 0, 255]\n  limit: 5\n  cache_dir: {tmp_path}\n"
        f"fashion:\n  resize_mode: resize\n  resolution: 16\n  data_dir: {fake_fashion}\n"
        "  limit_train: null\n"
        f"folder:\n  root: {tmp_path}\n  split: all\n  channels: 1\n"
    )
    objects = parser.instantiate_classes(parser.parse_args(["--config", str(config)]))
    assert objects.emoji.background == (0, 0, 255) and objects.emoji.limit == 5
    assert objects.fashion.resolution == 16 and objects.fashion.resize_mode == "resize"
    assert objects.folder.channels == 1 and objects.folder.split == "all"


def test_preview_writes_png_and_skips_missing_datasets(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        solid((80 * i, 0, 200)).save(images / f"{i}.png")
    out = tmp_path / "out" / "grid.png"
    missing = tmp_path / "none"
    args = ["preview", "--out", str(out), "--n", "4", "--resolution", "8", "--folder", str(images)]
    cli_main(args + ["--fashion-dir", str(missing), "--font", str(missing / "x.ttf")])
    err = capsys.readouterr().err
    assert "skipping Fashion-MNIST" in err and "dataset-fashion-mnist" in err
    assert "skipping Noto Color Emoji" in err and "fonts-noto-color-emoji" in err
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > 16 and png.height > 16
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]
    with pytest.raises(SystemExit, match="no dataset"):
        cli_main(["preview", "--out", str(out), "--fashion-dir", str(missing), "--font", str(missing)])
