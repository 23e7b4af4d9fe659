"""The service's FastAPI structure: the API key is a dependency of exactly the write routes, endpoints get
the index through overridable dependencies, and a missing ``[serve]`` extra is named on import.

The app here is driven in process (httpx's ASGI transport), not through the uvicorn server of conftest.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from tests.index.helpers import make_checkpoint, make_folder
from tests.service.helpers import API_KEY, MAX_UPLOAD

from pairsim._optional import MissingExtraError
from pairsim.index import build_index
from pairsim.service import ServiceConfig, create_app, require_serve_extra
from pairsim.service.dependencies import get_store, require_api_key

WRITE_ROUTES = {("POST", "/items"), ("DELETE", "/items/{item_id}")}
NOT_AN_IMAGE = {"image": ("notes.txt", b"this is not an image", "text/plain")}
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    root = tmp_path_factory.mktemp("structure")
    images = make_folder(root / "images", num_classes=2, per_class=3)
    build_index(make_checkpoint(root / "model.pt"), str(images), root / "index")
    return create_app(root / "index", ServiceConfig(max_upload_bytes=MAX_UPLOAD, api_key=API_KEY))


def call(app: FastAPI, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(send())


def dependency_calls(dependant: Dependant) -> set[Callable[..., Any]]:
    """Every dependency callable of ``dependant``, sub-dependencies included."""
    calls: set[Callable[..., Any]] = set()
    for sub in dependant.dependencies:
        if sub.call is not None:
            calls.add(sub.call)
        calls |= dependency_calls(sub)
    return calls


def endpoint_dependencies(app: FastAPI) -> dict[tuple[str, str], set[Callable[..., Any]]]:
    """``(method, path)`` of each endpoint of ``app`` -> its dependency callables, as the app resolves them."""
    try:  # newer FastAPI keeps an included router whole in app.routes; this walks into it
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI copies the included routes into app.routes
        contexts: Iterable[Any] = app.routes
    else:
        contexts = iter_route_contexts(app.routes)
    found: dict[tuple[str, str], set[Callable[..., Any]]] = {}
    for context in contexts:
        dependant = getattr(context, "dependant", None)
        if isinstance(dependant, Dependant):
            calls = dependency_calls(dependant)
            found.update({(method, context.path): calls for method in context.methods})
    return found


def test_the_api_key_guards_exactly_the_write_routes(app: FastAPI) -> None:
    endpoints = endpoint_dependencies(app)
    assert {("GET", "/healthz"), ("POST", "/search"), ("GET", "/items/{item_id}")} | WRITE_ROUTES <= set(endpoints)
    assert {endpoint for endpoint, calls in endpoints.items() if require_api_key in calls} == WRITE_ROUTES


def test_overriding_the_key_dependency_lets_writes_through(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    assert call(app, "DELETE", "/items/999999").status_code == 401
    assert call(app, "POST", "/items", files=NOT_AN_IMAGE).status_code == 401
    monkeypatch.setitem(app.dependency_overrides, require_api_key, lambda: None)
    deleted = call(app, "DELETE", "/items/999999")
    assert (deleted.status_code, deleted.json()) == (404, {"error": "no item with id 999999"})
    added = call(app, "POST", "/items", files=NOT_AN_IMAGE)
    assert added.status_code == 400 and "not a decodable image" in added.json()["error"]


def test_the_key_is_checked_before_the_request_is_validated(app: FastAPI) -> None:
    for method, url, kwargs in [("POST", "/items", {"data": {"label": "x"}}), ("DELETE", "/items/abc", {})]:
        refused = call(app, method, url, **kwargs)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "X-API-Key"
        assert refused.json() == {"error": "missing or wrong API key (header X-API-Key)"}
        invalid = call(app, method, url, headers={"X-API-Key": API_KEY}, **kwargs)
        assert invalid.status_code == 422 and invalid.json()["error"].startswith("invalid request:")


def test_the_key_header_is_a_parameter_of_the_write_operations_and_the_item_record(app: FastAPI) -> None:
    paths = call(app, "GET", "/openapi.json").json()["paths"]
    key_header = {"name": "x-api-key", "in": "header", "required": False}
    with_header = {
        (method.upper(), path)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if any(key_header.items() <= p.items() for p in operation.get("parameters", []))
    }
    assert with_header == WRITE_ROUTES | {("GET", "/items/{item_id}")}  # the record shows `source` with the key
    assert "securitySchemes" not in call(app, "GET", "/openapi.json").json().get("components", {})


def test_endpoints_read_the_index_through_the_store_dependency(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeStore:
        def info(self) -> dict[str, Any]:
            return {"items": 12345, "generation": 7, "index_kind": "fake"}

    assert call(app, "GET", "/healthz").json()["items"] == 6
    monkeypatch.setitem(app.dependency_overrides, get_store, FakeStore)
    assert call(app, "GET", "/healthz").json() == {"status": "ok", "items": 12345, "generation": 7, "kind": "fake"}


def test_the_app_state_holds_the_config_and_the_searcher(app: FastAPI) -> None:
    assert app.state.config == ServiceConfig(max_upload_bytes=MAX_UPLOAD, api_key=API_KEY)
    assert app.state.searcher.store.info()["items"] == 6


@pytest.mark.parametrize("missing", ["fastapi", "python_multipart"])
def test_importing_the_service_without_the_extra_names_it(missing: str) -> None:
    code = f"import sys; sys.modules[{missing!r}] = None; import pairsim.service"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("pairsim._optional.MissingExtraError: the pairsim web service needs " + missing), last
    assert "pip install 'pairsim[serve]'" in last


def test_require_serve_extra_returns_uvicorn_or_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    assert require_serve_extra() is uvicorn
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'pairsim\[serve\]'") as raised:
        require_serve_extra()
    assert isinstance(raised.value, ImportError)
