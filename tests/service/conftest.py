"""A real uvicorn server on 127.0.0.1 (free port) over a fresh copy of a small index, per test module."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from tests.index.helpers import make_checkpoint, make_folder
from tests.service.helpers import API_KEY, MAX_UPLOAD, Server

from pairsim.index import build_index
from pairsim.service import ServiceConfig, create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(app: FastAPI, **settings: float) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread, as ``pairsim serve`` configures it; yields the base URL."""
    import uvicorn

    from pairsim.service.server import ServerSettings, uvicorn_config

    port = free_port()
    uv = uvicorn.Server(uvicorn_config(app, ServerSettings(host="127.0.0.1", port=port, **settings)))  # type: ignore[arg-type]
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=30)


def make_index(root: Path) -> tuple[Path, Path, Path]:
    """``(index directory, its source images, another model's checkpoint)`` of a fresh small index."""
    checkpoint = make_checkpoint(root / "model.pt")
    images = make_folder(root / "images")
    build_index(checkpoint, str(images), root / "built")
    directory = Path(shutil.copytree(root / "built", root / "index"))
    return directory, images, make_checkpoint(root / "other.pt", seed=1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory, images, other = make_index(tmp_path_factory.mktemp("service"))
    app = create_app(directory, ServiceConfig(max_k=50, max_upload_bytes=MAX_UPLOAD, api_key=API_KEY))
    with serving(app) as url:
        yield Server(url, directory, images, other)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c
