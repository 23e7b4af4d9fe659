"""The HTTP API on a real uvicorn server: search, add, delete, images, and a 4xx JSON answer to bad input."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.service.helpers import API_KEY, MAX_UPLOAD, Server

from pairsim.index import Searcher


def upload(path: Path | bytes, name: str = "q.png") -> dict[str, tuple[str, bytes, str]]:
    data = path if isinstance(path, bytes) else path.read_bytes()
    return {"image": (name, data, "image/png")}


def assert_error(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert words in response.json()["error"]


def test_search_returns_the_library_results(server: Server, client: httpx.Client) -> None:
    query = server.images / "c2" / "3.png"
    response = client.post("/search", params={"k": 7, "label": "c2"}, files=upload(query))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    expected = Searcher(server.directory).search_bytes(query.read_bytes(), 7)
    assert [r["id"] for r in results] == [h.item.id for h in expected]
    np.testing.assert_allclose([r["score"] for r in results], [h.score for h in expected], atol=1e-5)
    assert set(results[0]) == {"id", "label", "score", "image_url", "match"}
    assert [r["match"] for r in results] == [r["label"] == "c2" for r in results]
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-5)
    image = client.get(results[0]["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == query.read_bytes()


def test_default_k_is_10(client: httpx.Client, server: Server) -> None:
    response = client.post("/search", files=upload(server.images / "c0" / "0.png"))
    assert len(response.json()["results"]) == 10 and "match" not in response.json()["results"][0]


def test_add_and_delete_need_the_api_key(server: Server, client: httpx.Client) -> None:
    new = Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24), dtype=np.uint8))
    buffer = io.BytesIO()
    new.save(buffer, format="PNG")
    data = buffer.getvalue()
    assert_error(client.post("/items", files=upload(data), data={"label": "new"}), 401, "API key")
    wrong = {"X-API-Key": "nope"}
    assert_error(client.post("/items", files=upload(data), data={"label": "new"}, headers=wrong), 401, "API key")
    key = {"X-API-Key": API_KEY}
    added = client.post("/items", files=upload(data, "new.png"), data={"label": "new"}, headers=key)
    assert added.status_code == 201, added.text
    item_id = added.json()["id"]
    top = client.post("/search", params={"k": 1}, files=upload(data)).json()["results"][0]
    assert (top["id"], top["label"]) == (item_id, "new")
    assert client.get(f"/items/{item_id}", headers=key).json()["source"] == "new.png"
    assert "source" not in client.get(f"/items/{item_id}").json()  # the uploader's file name: the key's only
    assert_error(client.delete(f"/items/{item_id}"), 401, "API key")
    assert client.delete(f"/items/{item_id}", headers=key).json() == {"deleted": item_id}
    assert_error(client.get(f"/items/{item_id}"), 404, f"no item with id {item_id}")
    assert_error(client.get(f"/items/{item_id}/image"), 404, f"no item with id {item_id}")
    assert_error(client.delete(f"/items/{item_id}", headers=key), 404, f"no item with id {item_id}")
    top = client.post("/search", params={"k": 1}, files=upload(data)).json()["results"][0]
    assert top["id"] != item_id


def png_bytes(side: int, noise: bool) -> bytes:
    rng = np.random.default_rng(1)
    array = rng.integers(0, 255, (side, side, 3), dtype=np.uint8) if noise else np.zeros((side, side, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("request_args", "status", "words"),
    [
        ({"files": upload(b"this is not an image", "notes.txt")}, 400, "not a decodable image"),
        ({"files": upload(png_bytes(64, noise=True)[:5000])}, 400, "not a decodable image"),  # truncated
        ({"files": upload(b"")}, 400, "empty"),
        ({"files": upload(png_bytes(100, noise=True))}, 413, "byte limit"),  # ~30 kB > MAX_UPLOAD
        ({"files": upload(png_bytes(8, False)), "params": {"k": 0}}, 422, "k must be between 1 and 50, got 0"),
        ({"files": upload(png_bytes(8, False)), "params": {"k": -3}}, 422, "k must be between 1 and 50"),
        ({"files": upload(png_bytes(8, False)), "params": {"k": 51}}, 422, "k must be between 1 and 50, got 51"),
        ({"files": upload(png_bytes(8, False)), "params": {"k": "ten"}}, 422, "k"),
        ({"data": {"nothing": "here"}}, 422, "image"),
    ],
    ids=["not-image", "truncated", "empty", "too-large", "k-zero", "k-negative", "k-over-limit", "k-text", "no-file"],
)
def test_bad_searches_get_a_4xx_json_error(
    client: httpx.Client, request_args: dict[str, object], status: int, words: str
) -> None:
    assert_error(client.post("/search", **request_args), status, words)  # type: ignore[arg-type]
    assert client.get("/healthz").json()["status"] == "ok"  # still serving


def test_huge_announced_body_is_refused_unread(client: httpx.Client) -> None:
    body = b"x" * (MAX_UPLOAD + 100_000)
    response = client.post("/search", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert_error(response, 413, "byte limit")


@pytest.mark.parametrize(
    "path",
    ["/images/..%2F..%2Fmanifest.json", "/images/%2e%2e/manifest.json", "/images/..%2F..%2F..%2F..%2Fetc%2Fpasswd"],
)
def test_paths_leaving_the_image_store_are_refused(client: httpx.Client, path: str) -> None:
    assert_error(client.get(path), 400, "leaves the image store")


def test_store_files_and_unknown_ids(client: httpx.Client, server: Server) -> None:
    item = client.get("/items/1").json()
    stored = client.get("/images/" + item["checksum"][:2] + "/" + item["checksum"] + ".png")
    assert stored.status_code == 200
    assert_error(client.get("/images/00/missing.png"), 404, "no image")
    assert_error(client.get("/items/999999"), 404, "no item with id 999999")
    assert_error(client.get("/items/abc/image"), 422, "item_id")
    assert_error(client.delete("/items/999999", headers={"X-API-Key": API_KEY}), 404, "no item with id 999999")


def test_health_docs_and_page(client: httpx.Client) -> None:
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["items"] >= 20 and health["kind"] == "flat"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/search", "/items", "/items/{item_id}", "/items/{item_id}/image", "/healthz"} <= set(paths)
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="results"' in page.text
    assert client.get("/static/app.js").status_code == 200
