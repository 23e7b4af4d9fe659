"""hangul-fonts: real renders from the Debian fonts (a few hundred classes) and each drop rule."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from fontTools.ttLib import TTFont

from pairsim.data import ImageSet, load_dataset
from pairsim.data import hangul_fonts as hf
from pairsim.data.registry import BuildContext

DEJAVU = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
NANUM = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")

pytestmark = pytest.mark.skipif(not NANUM.exists(), reason="Debian font packages not installed (make install)")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageSet, Path]:
    root = tmp_path_factory.mktemp("hangul")
    return load_dataset("hangul-fonts", "test", root, max_classes=150, progress=False), root


def signatures(images: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.stack([hf.binary_signature(a[0]) for a in images]), axis=1).astype(int)


def test_faces_come_from_the_five_packages_sorted() -> None:
    faces = hf.font_faces()
    assert len(faces) >= 30
    assert [(f.path, f.index) for f in faces] == sorted((f.path, f.index) for f in faces)
    assert {f.index for f in faces if f.path.endswith(".ttc")} == set(range(hf._ttc_face_count(faces[-1].path)))
    with pytest.raises(ValueError, match="apt-get install"):
        hf.font_faces(("no-such-font-package",))


def test_images_are_white_glyphs_centred_on_black(built: tuple[ImageSet, Path]) -> None:
    s, _ = built
    assert s.images.shape[1:] == (1, 64, 64) and s.images.dtype == np.uint8
    assert s.num_classes == 150 and all(len(k) == 1 and 0xAC00 <= ord(k) <= 0xD7A3 for k in s.class_keys)
    counts = np.bincount(s.labels, minlength=s.num_classes)
    assert counts.min() >= 10 and counts.max() <= len(hf.font_faces())
    assert (s.images[:, :, :2].max(axis=(1, 2, 3)) == 0).all()  # top margin is background
    assert (s.images.max(axis=(1, 2, 3)) == 255).all()
    ink = s.images[:, 0] >= 128
    rows = np.asarray(ink.any(axis=2))  # (N, 64)
    cols = np.asarray(ink.any(axis=1))  # (N, 64)
    # Scaled to fit: every glyph reaches the margin on some side.
    reaches = rows[:, :6].any(axis=1) | rows[:, -6:].any(axis=1) | cols[:, :6].any(axis=1) | cols[:, -6:].any(axis=1)
    assert reaches.all()
    assert set(s.sources) <= {f.name for f in hf.font_faces()}


def test_no_near_duplicates_within_a_class(built: tuple[ImageSet, Path]) -> None:
    s, _ = built
    for label in range(0, s.num_classes, 10):
        bits = signatures(s.images[s.labels == label])
        distance = (bits[:, None] != bits[None]).sum(axis=2)
        np.fill_diagonal(distance, 10**6)
        assert distance.min() > hf.NEAR_DUPLICATE_BITS
        assert len(set(np.array(s.sources)[s.labels == label])) == len(bits)  # one image per face


def test_report_accounts_for_every_face_and_class(built: tuple[ImageSet, Path]) -> None:
    s, root = built
    (build_dir,) = (root / "hangul-fonts").glob("build-*")
    report = json.loads((build_dir / "report.json").read_text())
    assert report["images"] == len(s) and report["classes"] == s.num_classes
    dropped = sum(report[k] for k in ("missing", "placeholder_glyph", "blank", "placeholder_bitmap", "near_duplicate"))
    assert dropped + report["images"] == report["faces"] * report["classes"]
    assert report["blank"] > 0 and report["near_duplicate"] > 0


def test_build_is_deterministic(built: tuple[ImageSet, Path], tmp_path: Path) -> None:
    s, _ = built
    again = load_dataset("hangul-fonts", "test", tmp_path, max_classes=150, progress=False)
    assert again.class_keys == s.class_keys and again.sources == s.sources
    assert np.array_equal(again.images, s.images) and np.array_equal(again.labels, s.labels)


def test_cmap_decides_coverage_not_pixels() -> None:
    present, reused = hf.covered(hf.Face(str(DEJAVU), 0), ["가", "A"])
    assert present == [False, True] and reused == [False, False]


def make_placeholder_font(path: Path) -> None:
    """DejaVu Sans with syllables 0-9 mapped to 10 copies of "A" and 10-19 to the one glyph "Z"."""
    font = TTFont(DEJAVU)
    copies = [f"placeholder{i}" for i in range(10)]
    for name in copies:
        font["glyf"][name] = copy.deepcopy(font["glyf"]["A"])
        font["hmtx"][name] = font["hmtx"]["A"]
    assert font.getGlyphOrder()[-10:] == copies  # glyf's __setitem__ appended them
    for table in font["cmap"].tables:
        if table.isUnicode():
            table.cmap.update({0xAC00 + i: name for i, name in enumerate(copies)})
            table.cmap.update({0xAC00 + 10 + i: "Z" for i in range(10)})
            table.cmap.update({0xAC00 + 20: "B", 0xAC00 + 21: "C"})
    font.save(path)


def test_placeholders_missing_glyphs_and_duplicate_faces_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "fake.ttf"
    make_placeholder_font(fake)
    twin = tmp_path / "twin.ttf"
    shutil.copy(NANUM, twin)
    faces = [hf.Face(str(NANUM), 0), hf.Face(str(fake), 0), hf.Face(str(twin), 0)]
    monkeypatch.setattr(hf, "font_faces", lambda packages=hf.FONT_PACKAGES: faces)
    keys = [chr(0xAC00 + i) for i in range(24)]
    result = hf.HangulFonts().build(BuildContext(tmp_path, None, 32, False), keys)
    r = result.report
    # fake.ttf: 10 identical bitmaps (distinct glyph ids), 10 syllables on one glyph, 2 absent.
    assert (r["placeholder_bitmap"], r["placeholder_glyph"], r["missing"]) == (10, 10, 2)
    assert r["near_duplicate"] == 24  # twin.ttf draws exactly what NanumGothic drew
    kept_fake = [result.keys[c] for c, src in zip(result.labels, result.sources, strict=True) if src == "fake.ttf"]
    assert kept_fake == [chr(0xAC00 + 20), chr(0xAC00 + 21)]  # "B" and "C" are real, single-use glyphs
    assert set(result.sources) == {"NanumGothic.ttf", "fake.ttf"}


def test_blank_glyphs_render_as_none() -> None:
    from PIL import ImageFont

    font = ImageFont.truetype(str(NANUM), 64)
    assert hf.render_glyph(font, " ", 64) is None
    image = hf.render_glyph(font, "한", 64)
    assert image is not None and image.shape == (64, 64)


@pytest.mark.slow
def test_full_build_counts(tmp_path: Path) -> None:
    s = load_dataset("hangul-fonts", "all", tmp_path, progress=False)
    assert s.num_classes == 11172
    assert 20 <= len(s) / s.num_classes <= 32
    assert np.bincount(s.labels).min() >= 5


def test_worker_processes_and_a_single_process_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [chr(0xAC00 + 97 * i) for i in range(100)]  # 3 tasks: a pool of 2 workers
    pooled = hf.HangulFonts().build(BuildContext(tmp_path, None, 32, False), keys)
    monkeypatch.setattr(hf.os, "cpu_count", lambda: 1)
    single = hf.HangulFonts().build(BuildContext(tmp_path, None, 32, False), keys)
    assert np.array_equal(pooled.images, single.images) and pooled.sources == single.sources
    assert pooled.report == single.report
