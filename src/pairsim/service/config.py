"""The service's settings: :class:`ServiceConfig` and the body-size slack derived from it."""

from __future__ import annotations

from dataclasses import dataclass

#: Multipart framing allowed on top of the image itself before a request is refused unread.
MULTIPART_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class ServiceConfig:
    """Limits and access of the service.

    Attributes:
        max_k: the largest ``k`` a search may ask for.
        max_upload_bytes: the largest image upload.
        api_key: when set, ``POST /items`` and ``DELETE /items/{id}`` need header ``X-API-Key``.
    """

    max_k: int = 100
    max_upload_bytes: int = 10_000_000
    api_key: str | None = None
