"""The service under an attacker's and a careless client's requests (issue 17, faults 2, 3, 5, 6 and 8).

Most requests go to the app in process (httpx's ASGI transport, or a hand-driven ASGI ``receive`` where
the test must see how much of a body the server read); the connection-level ones go to uvicorn.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.index.test_image_guard import gif_screen, png_declaring
from tests.service.conftest import make_index, serving
from tests.service.helpers import API_KEY, MAX_UPLOAD, call, png_bytes

from pairsim.index import IndexStore, StorageError
from pairsim.service import ServiceConfig, create_app
from pairsim.service.dependencies import get_searcher
from pairsim.service.routes_items import image_file

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_index(tmp_path_factory.mktemp("hardening"))[0]


@pytest.fixture(scope="module")
def app(directory: Path) -> FastAPI:
    return create_app(directory, ServiceConfig(max_k=50, max_upload_bytes=MAX_UPLOAD, api_key=API_KEY))


def upload(data: bytes, name: str = "q.png") -> dict[str, tuple[str, bytes, str]]:
    return {"image": (name, data, "image/png")}


def assert_error(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert words in response.json()["error"], response.json()


class FakeSearcher:
    """Stands in for the app's Searcher: ``action`` runs for each search or add."""

    def __init__(self, store: IndexStore, action: Callable[[], None]) -> None:
        self.store = store
        self.action = action

    def search_bytes(self, data: bytes, k: int = 10) -> list[Any]:
        self.action()
        return []

    def add_bytes(self, data: bytes, suffix: str, label: str | None, source: str | None) -> int:
        self.action()
        return 1


@pytest.fixture
def fake_searcher(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], None]], None]:
    def install(action: Callable[[], None]) -> None:
        fake = FakeSearcher(app.state.searcher.store, action)
        monkeypatch.setitem(app.dependency_overrides, get_searcher, lambda: fake)

    return install


# Fault 2: a 35-byte GIF declaring a 6000x6000 screen; N of them at once.


def test_a_tiny_gif_declaring_a_huge_screen_is_a_400_naming_its_size(app: FastAPI) -> None:
    assert_error(call(app, "POST", "/search", files=upload(gif_screen(6000, 6000), "bomb.gif")), 400, "6000x6000")


def test_concurrent_searches_decode_a_bounded_number_at_a_time(directory: Path) -> None:
    app = create_app(directory, ServiceConfig(max_upload_bytes=MAX_UPLOAD, decode_workers=2))
    lock, running, most = threading.Lock(), [0], [0]

    def decode() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)  # long enough for the other requests to arrive while this one decodes
        with lock:
            running[0] -= 1

    fake = FakeSearcher(app.state.searcher.store, decode)
    app.dependency_overrides[get_searcher] = lambda: fake

    async def six() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            posts = [client.post("/search", files=upload(png_bytes(8))) for _ in range(6)]
            return await asyncio.gather(*posts)

    assert [r.status_code for r in asyncio.run(six())] == [200] * 6
    assert most[0] == 2


# Fault 3: body limits while streaming; the number and the size of form fields.


def drive(app: FastAPI, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: Iterator[bytes]) -> Any:
    """Send ``chunks`` as a body with no Content-Length (chunked); ``(status, JSON body, bytes the app read)``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
    }
    read, sent = [0], []

    async def receive() -> dict[str, Any]:
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        read[0] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=60))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), read[0]


def endless_upload(chunk: int = 64 * 1024, count: int = 160) -> Iterator[bytes]:
    """A multipart upload of one file that goes on for ``count`` chunks (10 MB), never closing."""
    yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n'
    for _ in range(count):
        yield b"\0" * chunk


@pytest.mark.parametrize("path", ["/items", "/search"])
def test_a_chunked_body_is_refused_at_the_limit_before_the_key_is_checked(app: FastAPI, path: str) -> None:
    headers = [(b"content-type", b"multipart/form-data; boundary=b"), (b"transfer-encoding", b"chunked")]
    status, body, read = drive(app, "POST", path, headers, endless_upload())
    assert (status, "byte limit" in body["error"]) == (413, True), body
    limit = app.state.config.max_body_bytes
    assert read <= limit + 64 * 1024  # stopped at the chunk that crossed the limit, not at 10 MB


def test_a_chunked_body_over_the_limit_is_a_413_on_the_live_server(app: FastAPI) -> None:
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        response = client.post(
            "/items",
            content=endless_upload(count=40),  # an iterator: httpx sends it chunked
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert_error(response, 413, "byte limit")


def test_many_form_fields_are_refused(app: FastAPI) -> None:
    fields = {f"field{i}": "x" for i in range(900)}
    assert_error(call(app, "POST", "/items", files=upload(png_bytes(8)), data=fields, headers=KEY), 400, "fields")


def test_a_long_text_field_is_refused(app: FastAPI) -> None:
    long_label = {"label": "x" * 50_000}  # under the body limit, over the size of a text field
    assert_error(call(app, "POST", "/items", files=upload(png_bytes(8)), data=long_label, headers=KEY), 400, "size")


def test_a_body_that_stops_arriving_is_a_408(directory: Path) -> None:
    app = create_app(directory, ServiceConfig(max_upload_bytes=MAX_UPLOAD, body_timeout_s=0.5))
    stalled = threading.Event()

    def first_part_then_nothing() -> Iterator[bytes]:
        yield next(endless_upload())
        stalled.set()
        while True:  # the next part never comes: each receive waits on an un-set future
            yield None  # type: ignore[misc]

    scope_headers = [(b"content-type", b"multipart/form-data; boundary=b")]

    async def run() -> Any:
        chunks = first_part_then_nothing()
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            chunk = next(chunks)
            if chunk is None:
                await never
            return {"type": "http.request", "body": chunk, "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/search",
            "raw_path": b"/search",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"localhost"), *scope_headers],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000),
        }
        await asyncio.wait_for(app(scope, receive, send), timeout=30)
        return sent

    sent = asyncio.run(run())
    assert stalled.is_set()
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 408
    assert b"not received within 0.5 s" in b"".join(m.get("body", b"") for m in sent if "body" in m)


# Fault 5: 500s from client input.


@pytest.mark.parametrize("item_id", [2**63, 2**64, -(2**70)])
def test_ids_outside_int64_are_a_422(app: FastAPI, item_id: int) -> None:
    for method, url, headers in [
        ("GET", f"/items/{item_id}", {}),
        ("GET", f"/items/{item_id}/image", {}),
        ("DELETE", f"/items/{item_id}", KEY),
    ]:
        assert_error(call(app, method, url, headers=headers), 422, "item_id")


def test_a_path_component_over_255_bytes_is_a_4xx(app: FastAPI) -> None:
    folder = call(app, "GET", "/items/1").json()["checksum"][:2]  # an existing folder: the name is looked up
    response = call(app, "GET", f"/images/{folder}/" + "x" * 300 + ".png")
    assert response.status_code in (400, 404) and "error" in response.json(), response.text


def test_a_symbolic_link_loop_in_the_store_is_a_404(app: FastAPI, directory: Path) -> None:
    images = directory / "images"
    (images / "loop-a").symlink_to("loop-b")
    (images / "loop-b").symlink_to("loop-a")
    try:
        for path in ("/images/loop-a", "/images/loop-a/x.png"):
            response = call(app, "GET", path)
            assert response.status_code in (400, 404) and "error" in response.json(), response.text
    finally:
        (images / "loop-a").unlink()
        (images / "loop-b").unlink()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHD", "truncated PNG header"),
        (png_declaring(100_000, 100_000), "100000x100000"),  # a decompression bomb
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not a decodable image"),
    ],
    ids=["truncated-header", "bomb", "garbage-after-signature"],
)
def test_undecodable_uploads_to_items_are_a_400_json(app: FastAPI, data: bytes, words: str) -> None:
    assert_error(call(app, "POST", "/items", files=upload(data), headers=KEY), 400, words)
    assert_error(call(app, "POST", "/search", files=upload(data)), 400, words)


@pytest.mark.parametrize(("code", "status"), [(errno.ENOSPC, 507), (errno.EDQUOT, 507), (errno.EIO, 503)])
def test_storage_failures_are_a_5xx_naming_the_cause(
    app: FastAPI, fake_searcher: Callable[[Callable[[], None]], None], code: int, status: int
) -> None:
    def refuse() -> None:
        raise StorageError(code, f"{errno.errorcode[code]} while writing the image store", "/srv/secret/images/ab")

    fake_searcher(refuse)
    response = call(app, "POST", "/items", files=upload(png_bytes(8)), headers=KEY)
    assert_error(response, status, "storage")
    assert "/srv/secret" not in response.text  # no server path in an answer


def test_an_unexpected_error_is_a_json_500(app: FastAPI, fake_searcher: Callable[[Callable[[], None]], None]) -> None:
    def bug() -> None:
        raise RuntimeError("a bug")

    fake_searcher(bug)
    response = call(app, "POST", "/search", files=upload(png_bytes(8)), raise_app_exceptions=False)
    assert_error(response, 500, "internal server error")


# Fault 6: secure defaults.


def test_a_foreign_host_is_refused_and_deletes_nothing(app: FastAPI) -> None:
    for method, url in [("DELETE", "/items/1"), ("GET", "/items/1"), ("GET", "/healthz")]:
        assert_error(call(app, method, url, headers={**KEY, "Host": "rebind.attacker.example"}), 400, "host")
    assert call(app, "GET", "/items/1").status_code == 200
    assert call(app, "GET", "/items/1", headers={"Host": "127.0.0.1:8000"}).status_code == 200


def test_cross_origin_writes_are_refused(directory: Path) -> None:
    config = ServiceConfig(
        max_upload_bytes=MAX_UPLOAD, allow_anonymous_writes=True, allowed_origins=("https://ok.example",)
    )
    app = create_app(directory, config)
    bad = {"image": ("x.txt", b"not an image", "text/plain")}  # gets as far as decoding, then a 400
    for origin in ("http://evil.example", "null", "http://localhost:9999"):
        assert_error(call(app, "POST", "/items", files=bad, headers={"Origin": origin}), 403, "cross-origin")
        assert_error(call(app, "DELETE", "/items/999999", headers={"Origin": origin}), 403, "cross-origin")
    assert call(app, "POST", "/items", files=bad, headers={"Origin": "http://localhost"}).status_code == 400
    allowed = call(app, "POST", "/search", files=bad, headers={"Origin": "https://ok.example"})
    assert allowed.status_code == 400 and allowed.headers["access-control-allow-origin"] == "https://ok.example"
    assert call(app, "GET", "/healthz", headers={"Origin": "http://evil.example"}).status_code == 200  # reads pass


def test_writes_need_a_key_by_default(directory: Path) -> None:
    app = create_app(directory, ServiceConfig(max_upload_bytes=MAX_UPLOAD))
    assert_error(call(app, "POST", "/items", files=upload(png_bytes(8, seed=5))), 403, "writes are disabled")
    assert_error(call(app, "DELETE", "/items/1"), 403, "writes are disabled")
    assert call(app, "GET", "/items/1").status_code == 200


def test_an_empty_key_is_an_error() -> None:
    for empty in ("", "  "):
        with pytest.raises(ValueError, match="API key is empty"):
            ServiceConfig(api_key=empty)


def test_the_uploaders_file_name_needs_the_key(app: FastAPI) -> None:
    assert "source" not in call(app, "GET", "/items/1").json()
    assert "source" not in call(app, "GET", "/items/1", headers={"X-API-Key": "wrong"}).json()
    assert call(app, "GET", "/items/1", headers=KEY).json()["source"]


def test_the_openapi_document_names_no_server_path_and_every_error_status(app: FastAPI, directory: Path) -> None:
    document = call(app, "GET", "/openapi.json")
    assert str(directory) not in document.text and str(directory.parent) not in document.text
    paths = document.json()["paths"]
    declared = {(m.upper(), p): set(op["responses"]) for p, ops in paths.items() for m, op in ops.items()}
    assert {"400", "401", "403", "408", "413", "422", "503", "507"} <= declared[("POST", "/items")]
    assert {"400", "401", "403", "404", "422"} <= declared[("DELETE", "/items/{item_id}")]
    assert {"400", "408", "413", "422", "503"} <= declared[("POST", "/search")]
    assert {"404", "422"} <= declared[("GET", "/items/{item_id}")]
    error = paths["/items"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}


def test_the_access_log_has_method_path_status_and_no_secrets(app: FastAPI, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pairsim.service.access"):
        call(app, "POST", "/search", params={"label": "secret-label"}, files=upload(png_bytes(8)), headers=KEY)
        call(app, "DELETE", "/items/999999", headers={"X-API-Key": "guessed-key"})
    lines = [r.getMessage() for r in caplog.records if r.name == "pairsim.service.access"]
    assert len(lines) == 2
    assert " POST /search 200 " in lines[0] and lines[0].endswith(" ms")
    assert " DELETE /items/999999 401 " in lines[1]
    assert not any(secret in " ".join(lines) for secret in ("secret-label", API_KEY, "guessed-key"))


# Fault 8: slow clients, bounded connections, an image deleted while it is sent.


def test_an_image_deleted_while_it_is_sent_is_sent_whole(app: FastAPI) -> None:
    store: IndexStore = app.state.searcher.store
    item = store.get(1)
    path = store.images_dir / item.path
    original = path.read_bytes()
    response = image_file(store, item.path)  # what GET /items/1/image answers, before it is sent
    path.unlink()  # the racing DELETE
    try:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "asgi": {"version": "3.0"}}
        asyncio.run(response(scope, receive, send))
    finally:
        path.write_bytes(original)
    headers = dict(sent[0]["headers"])
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert body == original and int(headers[b"content-length"]) == len(original)


def test_a_connection_trickling_its_headers_is_closed(app: FastAPI) -> None:
    with (
        serving(app, header_timeout_s=1.0) as url,
        socket.create_connection(("127.0.0.1", int(url.rsplit(":")[-1]))) as s,
    ):
        s.settimeout(20)  # far past the server's 1 s: a server without a header deadline fails here
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")  # the headers' end never comes
        assert s.recv(1024) == b""  # closed by the server


def test_connections_past_the_limit_get_a_503(app: FastAPI) -> None:
    with serving(app, limit_concurrency=3) as url:
        port = int(url.rsplit(":")[-1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            time.sleep(0.2)  # let the server accept them
            assert httpx.get(url + "/healthz", timeout=30).status_code == 503
        finally:
            for s in idle:
                s.close()
