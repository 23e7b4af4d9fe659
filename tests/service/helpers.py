"""What the service tests share: the test server's settings and address, an in-process request, images."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

API_KEY = "test-key"
MAX_UPLOAD = 20_000


@dataclass(frozen=True)
class Server:
    """A running test server: its base URL, index directory, source images, another model's checkpoint."""

    url: str
    directory: Path
    images: Path
    other_checkpoint: Path


def call(app: Any, method: str, url: str, raise_app_exceptions: bool = True, **kwargs: Any) -> httpx.Response:
    """One request to ``app`` in process (httpx's ASGI transport), as a client on ``http://localhost``."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(send())


def png_bytes(side: int, seed: int = 0) -> bytes:
    """A ``side`` x ``side`` noise PNG (different seeds, different images)."""
    array = np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
