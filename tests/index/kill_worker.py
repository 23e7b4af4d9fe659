"""Subprocess for the SIGKILL tests: ``add_images(DIR, IMAGES)``, killing itself with SIGKILL at POINT.

POINT names a moment of the update (see ``tests/index/test_kill.py``); ``none`` runs to the end.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from pairsim._optional import require
from pairsim.index import add_images
from pairsim.index import store as store_module


def die(*_: Any, **__: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(directory: str, images: str, point: str) -> None:
    faiss = require("faiss", "the kill test")
    if point == "before_faiss_write":  # rows inserted in the open transaction
        store_module.fv.tune = die
    elif point == "faiss_tmp_written":  # next generation's file written, not yet renamed
        write = faiss.write_index

        def write_then_die(index: Any, path: str) -> None:
            write(index, path)
            die()

        faiss.write_index = write_then_die
    elif point == "generation_bumped":  # file renamed, meta.generation updated, not committed
        store_module.fv.kind_of = die  # type: ignore[assignment]
    elif point == "committed":  # committed, old generation not swept yet
        store_module.IndexStore._sweep = die  # type: ignore[method-assign]
    elif point != "none":
        raise SystemExit(f"unknown point {point}")
    add_images(directory, images)


if __name__ == "__main__":
    main(*sys.argv[1:])
