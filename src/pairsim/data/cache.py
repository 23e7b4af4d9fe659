"""The on-disk cache of built data sets: one directory per build, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pairsim._io import atomic_directory
from pairsim.data.base import Built

_FORMAT = 1


def default_root() -> Path:
    """``$PAIRSIM_DATA`` when set, else ``data/`` under the current directory."""
    return Path(os.environ.get("PAIRSIM_DATA", "data"))


def write_built(built: Built, directory: Path) -> None:
    """Write ``built`` to ``directory`` atomically (:func:`pairsim._io.atomic_directory`).

    A reader therefore sees either no cache or a complete one, even if the build is killed.
    """
    try:
        with atomic_directory(directory) as tmp:
            np.save(tmp / "images.npy", np.ascontiguousarray(built.images))
            np.save(tmp / "labels.npy", built.labels.astype(np.int64))
            names = sorted(set(built.sources))
            ids = {name: i for i, name in enumerate(names)}
            np.save(tmp / "source_ids.npy", np.array([ids[s] for s in built.sources], dtype=np.int32))
            if built.holdout is not None:
                np.save(tmp / "holdout.npy", built.holdout.astype(bool))
            meta = {"format": _FORMAT, "keys": list(built.keys), "source_names": names, "skipped": list(built.skipped)}
            (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False))
            (tmp / "report.json").write_text(json.dumps(dict(built.report), indent=1, ensure_ascii=False))
    except FileExistsError:
        # Another process finished the same deterministic build first; its copy is as good.
        if not (directory / "meta.json").exists():
            raise


def read_built(directory: Path) -> Built | None:
    """The cached build in ``directory``, or ``None`` when there is none (or an older format)."""
    meta_path = directory / "meta.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != _FORMAT:
        return None
    names = meta["source_names"]
    source_ids = np.load(directory / "source_ids.npy")
    holdout_path = directory / "holdout.npy"
    return Built(
        # Memory-mapped: splitting then reads only the rows it keeps.
        images=np.load(directory / "images.npy", mmap_mode="r"),
        labels=np.load(directory / "labels.npy"),
        keys=tuple(meta["keys"]),
        sources=tuple(names[i] for i in source_ids),
        holdout=np.load(holdout_path) if holdout_path.exists() else None,
        skipped=tuple(meta["skipped"]),
        report=json.loads((directory / "report.json").read_text()),
    )
