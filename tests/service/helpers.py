"""What the service tests share: the test server's settings and address."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

API_KEY = "test-key"
MAX_UPLOAD = 20_000


@dataclass(frozen=True)
class Server:
    """A running test server: its base URL, index directory, source images, another model's checkpoint."""

    url: str
    directory: Path
    images: Path
    other_checkpoint: Path
