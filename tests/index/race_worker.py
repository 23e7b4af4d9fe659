"""Subprocess for the add/remove race test: adds the image file IMAGE to DIR and removes it again, ROUNDS times.

Every round adds the same bytes (one content-addressed file) and removes the item it added, so its remove
deletes the last row that references the file while other processes and threads add the same file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pairsim.index import Searcher


def main(directory: str, image: str, rounds: str) -> None:
    searcher = Searcher(directory)
    data = Path(image).read_bytes()
    for _ in range(int(rounds)):
        item_id = searcher.add_bytes(data, ".png", "race", "worker")
        searcher.store.remove([item_id])


if __name__ == "__main__":
    main(*sys.argv[1:])
