"""``emoji``: the same emoji drawn by different vendors, from openly licensed npm packages.

Class = the code point sequence with U+FE0F (the emoji presentation selector, which vendors
spell inconsistently) removed, e.g. ``"1F600"`` or ``"0023-20E3"``. Styles: Google (Noto) and
Twitter (Twemoji) 64 px PNGs from ``emoji-datasource-*``, OpenMoji colour SVGs, and Microsoft
Fluent's flat, modern and high-contrast SVGs (``fluentui-emoji``, matched by CLDR name). No
Apple or Facebook art (not openly licensed). Skin-tone variants are left out: they would be
classes that differ from their base only in colour. Only classes with >= ``MIN_STYLES`` styles
are kept. Each drawing is cropped to its opaque pixels, fitted to the square with a small margin
and composited on white (black outlines, which most vendors use, stay visible); 3 channels.

The packages are installed with ``npm install --ignore-scripts`` into ``<root>/emoji/npm`` on the
first build (npm is needed then, not afterwards).
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pairsim.data.base import Built
from pairsim.data.registry import BuildContext, register_dataset
from pairsim.data.render import fit_square, on_background

NPM_PACKAGES = (
    "openmoji@17.0.0",
    "emoji-datasource-google@16.0.0",
    "emoji-datasource-twitter@16.0.0",
    "fluentui-emoji@1.3.0",
)
MIN_STYLES = 2
FLUENT_STYLES = ("flat", "high-contrast", "modern")
_SKIN_TONES = {f"{cp:X}" for cp in range(0x1F3FB, 0x1F400)}


def emoji_key(hexcode: str) -> str:
    """The class key of a code point sequence: upper-case hex joined by ``-``, FE0F removed.

    Example:
        >>> emoji_key("0023-fe0f-20e3"), emoji_key("1F600")
        ('0023-20E3', '1F600')
    """
    return "-".join(p.upper() for p in re.split(r"[-_ ]", hexcode) if p and p.upper() != "FE0F")


def slug(name: str) -> str:
    """A CLDR name as fluentui-emoji spells its file names.

    Example:
        >>> slug("one o’clock"), slug("Face with Symbols on Mouth"), slug("keycap: #")
        ('one-oclock', 'face-with-symbols-on-mouth', 'keycap-hashtag')
    """
    spelled = name.replace("#", " hashtag ").replace("*", " asterisk ")  # "keycap: #" -> keycap-hashtag
    ascii_name = unicodedata.normalize("NFKD", spelled).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", re.sub(r"['’]", "", ascii_name)).strip("-")


def install_packages(directory: Path) -> Path:
    """``node_modules`` with :data:`NPM_PACKAGES`, installing them on first use.

    Raises:
        ValueError: npm is not on ``PATH`` or the install failed (with npm's message).
    """
    modules = directory / "node_modules"
    wanted = {p.rsplit("@", 1)[0]: p.rsplit("@", 1)[1] for p in NPM_PACKAGES}
    if all(_installed_version(modules / name) == version for name, version in wanted.items()):
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise ValueError(
            "the emoji data set installs its images with npm, which is not on PATH; install it "
            "(`sudo apt-get install npm`) and retry"
        )
    # Installed into a temporary directory, then renamed: a killed install leaves no half-filled
    # node_modules that the version check above would take for a complete one.
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".npm-", dir=directory))
    try:
        (tmp / "package.json").write_text('{"private": true, "description": "pairsim emoji sources"}\n')
        command = [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--save-exact", *NPM_PACKAGES]
        result = subprocess.run(command, cwd=tmp, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ValueError(f"`{' '.join(command)}` failed in {tmp}:\n{result.stderr[-2000:]}")
        shutil.rmtree(modules, ignore_errors=True)
        os.rename(tmp / "node_modules", modules)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return modules


def _installed_version(package_dir: Path) -> str | None:
    try:
        return str(json.loads((package_dir / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def emoji_files(modules: Path) -> dict[str, list[tuple[str, Path]]]:
    """``key -> [(style, file), ...]`` for every base emoji any style draws, styles sorted."""
    found: dict[str, dict[str, Path]] = defaultdict(dict)
    names: dict[str, str] = {}
    for vendor in ("google", "twitter"):
        package = modules / f"emoji-datasource-{vendor}"
        for entry in json.loads((package / "emoji.json").read_text()):
            names.setdefault(slug(entry["name"]), emoji_key(entry["unified"]))
            path = package / "img" / vendor / "64" / entry["image"]
            if entry.get(f"has_img_{vendor}") and path.exists():
                found[emoji_key(entry["unified"])][vendor] = path
    openmoji = modules / "openmoji"
    for entry in json.loads((openmoji / "data" / "openmoji.json").read_text()):
        if entry.get("skintone") or str(entry.get("group", "")).startswith("extras"):
            continue
        key = emoji_key(entry["hexcode"])
        names[slug(entry["annotation"])] = key  # CLDR names: what fluentui-emoji's file names follow
        path = openmoji / "color" / "svg" / f"{entry['hexcode']}.svg"
        if path.exists():
            found[key]["openmoji"] = path
    for style in FLUENT_STYLES:
        for path in sorted((modules / "fluentui-emoji" / "icons" / style).glob("*.svg")):
            # "-default" marks the yellow (no skin tone) drawing of emoji that have skin tones.
            key = names.get(path.stem.removesuffix("-default"), "")
            if key:
                found[key][f"fluent-{style}"] = path
    return {
        key: sorted(styles.items())
        for key, styles in sorted(found.items())
        if not _SKIN_TONES.intersection(key.split("-"))
    }


def render_file(path: Path, size: int) -> np.ndarray:
    """``(3, size, size)`` uint8: an emoji PNG or SVG cropped to its opaque pixels, fitted, on white.

    Raises:
        OSError: unreadable file; ValueError: nothing opaque was drawn.
    """
    # SVGs are drawn at 2x, then scaled down: cleaner edges than drawing at the final size.
    is_svg = path.suffix.lower() == ".svg"
    image = Image.open(io.BytesIO(_svg_to_png(path, 2 * size))) if is_svg else Image.open(path)
    rgba = image.convert("RGBA")
    box = rgba.getchannel("A").point(lambda a: 255 if a >= 16 else 0).getbbox()
    if box is None:
        raise ValueError(f"{path}: blank drawing")
    fitted = fit_square(rgba.crop(box), size, (0, 0, 0, 0), margin=max(1, size // 32))
    return np.asarray(on_background(fitted, (255, 255, 255))).transpose(2, 0, 1)  # (3, S, S)


def _svg_to_png(path: Path, width: int) -> bytes:
    try:
        import cairosvg

        return bytes(cairosvg.svg2png(url=str(path), output_width=width))
    except Exception as error:  # cairosvg raises many types on SVGs it cannot handle; rsvg-convert gets a try
        rsvg = shutil.which("rsvg-convert")
        if rsvg is None:
            raise OSError(f"{path}: cairosvg failed ({error}) and rsvg-convert is not installed") from error
        result = subprocess.run([rsvg, "-w", str(width), "-a", str(path)], capture_output=True, check=False)
        if result.returncode != 0:
            raise OSError(f"{path}: {result.stderr.decode(errors='replace')[-300:]}") from error
        return result.stdout


def _render_task(task: tuple[str, int]) -> np.ndarray | str:
    path, size = task
    try:
        return render_file(Path(path), size)
    except (OSError, ValueError) as error:
        return f"{path}: {type(error).__name__}: {error}"


@register_dataset("emoji")
class Emoji:
    """Builder of ``emoji`` (see the module docstring)."""

    version = "1"
    default_image_size = 64
    uses_source = False
    subset_builds = True

    def class_keys(self, ctx: BuildContext) -> list[str]:
        files = emoji_files(install_packages(ctx.data_dir / "npm"))
        return [key for key, styles in files.items() if len(styles) >= MIN_STYLES]

    def fingerprint(self, ctx: BuildContext) -> str:
        return ",".join(NPM_PACKAGES)

    def build(self, ctx: BuildContext, keys: Sequence[str]) -> Built:
        files = emoji_files(install_packages(ctx.data_dir / "npm"))
        items = [(cls, style, path) for cls, key in enumerate(keys) for style, path in files.get(key, [])]
        tasks = [(str(path), ctx.image_size) for _, _, path in items]
        workers = min(2, os.cpu_count() or 1)
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(workers) as pool:
            rendered = pool.imap(_render_task, tasks, chunksize=8)  # ordered: the build is deterministic
            results = list(tqdm(rendered, total=len(tasks), desc="emoji", unit="img", disable=not ctx.progress))
        ok = [i for i, r in enumerate(results) if isinstance(r, np.ndarray)]
        skipped = tuple(r for r in results if isinstance(r, str))
        styles = Counter(items[i][1] for i in ok)
        per_class = Counter(Counter(items[i][0] for i in ok).values())
        report = {"classes": len(keys), "images": len(ok), "skipped": len(skipped)}
        report |= {f"style_{s}": n for s, n in sorted(styles.items())}
        report |= {f"classes_with_{n}_styles": c for n, c in sorted(per_class.items())}
        return Built(
            images=np.array([results[i] for i in ok], np.uint8).reshape(-1, 3, ctx.image_size, ctx.image_size),
            labels=np.array([items[i][0] for i in ok], np.int64),
            keys=tuple(keys),
            sources=tuple(f"{items[i][1]}:{items[i][2].name}" for i in ok),
            skipped=skipped,
            report=report,
        )
