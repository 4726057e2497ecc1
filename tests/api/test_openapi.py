"""OpenAPI describes what the API really answers: problem+json errors, typed faces."""

from __future__ import annotations

import pytest

from api.errors import PROBLEM_CODES, ApiError
from api.problems import PROBLEM_JSON


@pytest.fixture
async def openapi(client) -> dict:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def error_statuses(operation: dict) -> set[int]:
    return {int(status) for status in operation["responses"] if int(status) >= 400}


async def test_upload_errors_are_documented_as_problem_json(openapi) -> None:
    operation = openapi["paths"]["/v1/generations"]["post"]
    assert error_statuses(operation) >= {401, 409, 413, 415, 422, 429, 503, 504}
    for status in error_statuses(operation):
        response = operation["responses"][str(status)]
        assert list(response["content"]) == [PROBLEM_JSON], status
        assert response["content"][PROBLEM_JSON]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
    for status in ("429", "503"):
        assert "Retry-After" in operation["responses"][status]["headers"]


async def test_no_route_documents_fastapis_validation_error_schema(openapi) -> None:
    assert "HTTPValidationError" not in openapi["components"]["schemas"]
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert list(response.get("content", {})) == [PROBLEM_JSON], (path, method)


async def test_only_the_statuses_a_route_can_answer(openapi) -> None:
    assert error_statuses(openapi["paths"]["/v1/users/me"]["get"]) == {401, 503}
    assert 403 in error_statuses(openapi["paths"]["/v1/users"]["get"])
    assert 403 not in error_statuses(openapi["paths"]["/v1/generations"]["get"])
    assert error_statuses(openapi["paths"]["/v1/animals"]["get"]) == set()


async def test_problem_code_is_an_enum_of_the_spec_codes(openapi) -> None:
    problem = openapi["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    codes = set(problem["properties"]["code"]["enum"])
    assert {"rate_limited", "upstream_timeout", "no_face_detected"} <= codes
    assert set(ApiError.registry) <= codes  # every code the API can answer is in the enum
    assert codes == set(PROBLEM_CODES) == {*ApiError.registry, "internal_error"}


async def test_faces_are_typed(openapi) -> None:
    schemas = openapi["components"]["schemas"]
    faces = schemas["GenerationPublic"]["properties"]["faces"]
    assert faces["items"] == {"$ref": "#/components/schemas/Face"}
    face = schemas["Face"]["properties"]
    assert face["box"] == {"$ref": "#/components/schemas/Box"}
    assert face["landmarks"]["additionalProperties"] == {"$ref": "#/components/schemas/Point"}
    assert set(schemas["Box"]["properties"]) == {"x", "y", "width", "height"}
    assert set(schemas["Point"]["properties"]) == {"x", "y"}
    error = schemas["GenerationError"]["properties"]["code"]
    assert "no_face_detected" in error["enum"]
