"""emoji: keys, name matching and rendering on a miniature copy of the npm packages (no network)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pairsim.data import emoji, load_dataset
from pairsim.data.emoji import emoji_files, emoji_key, install_packages, render_file, slug

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 72 72"><circle cx="36" cy="36" r="{r}" fill="{fill}"/></svg>'
)


def write_png(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image.paste(Image.new("RGBA", (30, 20), (*colour, 255)), (10, 30))  # off-centre, padded
    image.save(path)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_packages(modules: Path) -> None:
    """Miniature node_modules: 4 emoji across the 6 styles, plus what must be left out."""
    versions = dict(p.rsplit("@", 1) for p in emoji.NPM_PACKAGES)
    for name, version in versions.items():
        write(modules / name / "package.json", json.dumps({"name": name, "version": version}))
    entries = [
        {"name": "GRINNING FACE", "unified": "1F600", "image": "1f600.png"},
        {"name": "HASH KEY", "unified": "0023-FE0F-20E3", "image": "0023-fe0f-20e3.png"},
        {"name": "THUMBS UP SIGN", "unified": "1F44D", "image": "1f44d.png"},
    ]
    for vendor, colour in (("google", (200, 0, 0)), ("twitter", (0, 0, 200))):
        package = modules / f"emoji-datasource-{vendor}"
        write(package / "emoji.json", json.dumps([{**e, f"has_img_{vendor}": True} for e in entries]))
        for e in entries:
            write_png(package / "img" / vendor / "64" / e["image"], colour)
    (modules / "emoji-datasource-twitter" / "img" / "twitter" / "64" / "1f44d.png").write_bytes(b"corrupt")
    openmoji = [
        {"hexcode": "1F600", "annotation": "grinning face", "skintone": "", "group": "smileys-emotion"},
        {"hexcode": "1F44D", "annotation": "thumbs up", "skintone": "", "group": "people-body"},
        {"hexcode": "1F44D-1F3FB", "annotation": "thumbs up: light skin tone", "skintone": "1", "group": "people-body"},
        {"hexcode": "2764-FE0F", "annotation": "red heart", "skintone": "", "group": "smileys-emotion"},
        {"hexcode": "1F680", "annotation": "rocket", "skintone": "", "group": "travel-places"},
        {"hexcode": "E000", "annotation": "openmoji logo", "skintone": "", "group": "extras-openmoji"},
    ]
    write(modules / "openmoji" / "data" / "openmoji.json", json.dumps(openmoji))
    for e in openmoji:
        write(modules / "openmoji" / "color" / "svg" / f"{e['hexcode']}.svg", SVG.format(r=20, fill="#00AA00"))
    icons = modules / "fluentui-emoji" / "icons"
    for path in ("flat/grinning-face", "modern/thumbs-up-default", "high-contrast/red-heart", "flat/thumbs-up-dark"):
        write(icons / f"{path}.svg", SVG.format(r=30, fill="#222222"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_packages(tmp_path / "emoji" / "npm" / "node_modules")
    return tmp_path


def test_keys_and_slugs() -> None:
    assert emoji_key("1f44d-1f3fb") == "1F44D-1F3FB" and emoji_key("2764-FE0F") == "2764"
    assert emoji_key("1F3F3-FE0F-200D-1F308") == "1F3F3-200D-1F308"
    assert slug("thumbs up") == "thumbs-up" and slug("piñata") == "pinata" and slug("keycap: *") == "keycap-asterisk"


def test_files_per_class(root: Path) -> None:
    files = emoji_files(root / "emoji" / "npm" / "node_modules")
    styles = {key: [style for style, _ in v] for key, v in files.items()}
    assert styles == {
        "0023-20E3": ["google", "twitter"],
        "1F44D": ["fluent-modern", "google", "openmoji", "twitter"],  # the "-default" Fluent drawing
        "1F600": ["fluent-flat", "google", "openmoji", "twitter"],
        "1F680": ["openmoji"],
        "2764": ["fluent-high-contrast", "openmoji"],
    }  # no skin tones, no OpenMoji extras


def test_load_builds_rgb_on_white_and_lists_the_corrupt_file(root: Path) -> None:
    s = load_dataset("emoji", "all", root, image_size=32, progress=False)
    assert s.class_keys == ("0023-20E3", "1F44D", "1F600", "2764")  # 1F680 has one style only
    assert np.bincount(s.labels).tolist() == [2, 3, 4, 2]
    assert s.image_shape == (3, 32, 32) and s.images.dtype == np.uint8
    assert (s.images[:, :, 0, 0] == 255).all()  # white background
    google = s.images[s.sources.index("google:1f600.png")]
    assert tuple(google[:, 16, 16]) == (200, 0, 0)  # the drawing is centred after cropping
    assert len(s.skipped) == 1 and "1f44d.png" in s.skipped[0]
    assert {src.split(":")[0] for src in s.sources} == {
        "google",
        "twitter",
        "openmoji",
        "fluent-flat",
        "fluent-modern",
        "fluent-high-contrast",
    }


def test_svg_is_cropped_and_fitted(tmp_path: Path) -> None:
    path = tmp_path / "small.svg"
    path.write_text(SVG.format(r=10, fill="#0000FF"))
    image = render_file(path, 64)  # (3, 64, 64)
    blue = (image[2] > 200) & (image[0] < 80)
    rows, cols = np.flatnonzero(blue.any(axis=1)), np.flatnonzero(blue.any(axis=0))
    assert rows[-1] - rows[0] > 50 and cols[-1] - cols[0] > 50  # a radius-10 circle now fills the square
    blank = tmp_path / "blank.svg"
    blank.write_text(SVG.format(r=10, fill="none"))
    with pytest.raises(ValueError, match="blank"):
        render_file(blank, 64)


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="librsvg2-bin not installed")
def test_rsvg_convert_takes_over_when_cairosvg_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cairosvg

    def fail(**kwargs: object) -> bytes:
        raise RuntimeError("unsupported")

    path = tmp_path / "e.svg"
    path.write_text(SVG.format(r=20, fill="#FF0000"))
    expected = render_file(path, 32)
    monkeypatch.setattr(cairosvg, "svg2png", fail)
    assert np.abs(render_file(path, 32).astype(int) - expected).mean() < 8


def test_missing_npm_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emoji.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="npm"):
        install_packages(tmp_path / "npm")


@pytest.mark.slow
def test_real_packages(tmp_path: Path) -> None:
    s = load_dataset("emoji", "all", tmp_path, progress=False)
    assert 1500 <= s.num_classes <= 2500 and 3 <= len(s) / s.num_classes <= 7
