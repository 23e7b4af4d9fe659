"""Schemathesis against the live server: generated requests to every operation of ``/openapi.json``.

Bounded (20 examples per operation, positive and negative data) so it stays well under a minute; it
asserts what the service promises: no 5xx, and every answer's status, content type, headers and body
as the OpenAPI document declares them. The server has its own index copy: the writes (sent with the
key) change it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks
from tests.service.conftest import make_index, serving
from tests.service.helpers import API_KEY, MAX_UPLOAD

from pairsim.service import ServiceConfig, create_app

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    directory = make_index(tmp_path_factory.mktemp("schemathesis"))[0]
    app = create_app(directory, ServiceConfig(max_k=50, max_upload_bytes=MAX_UPLOAD, api_key=API_KEY))
    with serving(app) as url:
        yield schemathesis.openapi.from_url(url + "/openapi.json")


#: Every operation of the document (a test below checks the list is complete), each run on its own.
OPERATIONS = [
    ("GET", "/healthz"),
    ("POST", "/search"),
    ("POST", "/items"),
    ("GET", "/items/{item_id}"),
    ("DELETE", "/items/{item_id}"),
    ("GET", "/items/{item_id}/image"),
    ("GET", "/images/{path}"),
]


def test_every_operation_is_tested(api_schema: schemathesis.BaseSchema) -> None:
    document = api_schema.raw_schema["paths"]
    assert sorted((m.upper(), p) for p, ops in document.items() for m in ops) == sorted(OPERATIONS)


#: Operations with a parameter that can be made invalid; negative data for the others cannot be generated.
TYPED = {("POST", "/search"), ("POST", "/items"), ("GET", "/items/{item_id}")} | {
    ("DELETE", "/items/{item_id}"),
    ("GET", "/items/{item_id}/image"),
}
RUNS = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if (m, p) in TYPED
]


@pytest.mark.parametrize(("method", "path", "mode"), RUNS, ids=[f"{m} {p} {g.value}" for m, p, g in RUNS])
def test_the_live_server_answers_as_its_openapi_document_says(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    def answers_as_declared(case: schemathesis.Case) -> None:
        case.call_and_validate(headers={"X-API-Key": API_KEY}, checks=CHECKS, timeout=30)

    answers_as_declared()
