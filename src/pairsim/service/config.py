"""The service's settings: :class:`ServiceConfig` (what the app enforces) and the body limit derived from it."""

from __future__ import annotations

from dataclasses import dataclass

#: Multipart framing allowed on top of the image itself before a request is refused.
MULTIPART_OVERHEAD = 64 * 1024
#: The host names a server bound to a loopback address answers to (DNS rebinding sends any other).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class ServiceConfig:
    """Limits and access of the service.

    Attributes:
        max_k: the largest ``k`` a search may ask for.
        max_upload_bytes: the largest image upload; the whole request body may be
            :data:`MULTIPART_OVERHEAD` more, counted as it arrives (chunked included).
        api_key: the key that ``POST /items`` and ``DELETE /items/{id}`` need in header ``X-API-Key``;
            also the key that shows an item's ``source`` (the uploader's file name).
        allow_anonymous_writes: let writes through without a key (refused with 403 otherwise when no
            key is configured).
        allowed_hosts: the ``Host`` header names (no port) the server answers; ``"*"`` accepts any.
        allowed_origins: origins (``https://app.example``) besides the server's own that may send
            POST/DELETE requests; they also get CORS headers, so their scripts can read the answers.
        max_form_fields: the most multipart fields (files included) a request may have.
        max_field_bytes: the largest text field (``label``).
        decode_workers: images decoded and embedded at the same time; others wait their turn, so N
            concurrent big images cost at most ``decode_workers`` decodes of memory.
        decode_wait_s: how long a request waits for a decoding slot before a 503.
        body_timeout_s: the longest wait for the next piece of a request body before a 408.

    Raises:
        ValueError: an empty key (it would silently mean "no key"), or a limit below 1.

    Example:
        >>> ServiceConfig(api_key="")
        Traceback (most recent call last):
        ...
        ValueError: the API key is empty: set a non-empty key, or none and allow_anonymous_writes
    """

    max_k: int = 100
    max_upload_bytes: int = 10_000_000
    api_key: str | None = None
    allow_anonymous_writes: bool = False
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    allowed_origins: tuple[str, ...] = ()
    max_form_fields: int = 4
    max_field_bytes: int = 4096
    decode_workers: int = 2
    decode_wait_s: float = 30.0
    body_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty: set a non-empty key, or none and allow_anonymous_writes")
        limits = ("max_k", "max_upload_bytes", "max_form_fields", "max_field_bytes", "decode_workers")
        for name in limits:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("decode_wait_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def max_body_bytes(self) -> int:
        """The largest request body: the upload limit plus the multipart framing around it."""
        return self.max_upload_bytes + MULTIPART_OVERHEAD
