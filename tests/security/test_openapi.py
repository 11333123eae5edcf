"""OpenAPI: every service declares the bearer scheme on its keyed routes (Swagger's Authorize
works), documents the error shape it really sends, and POST /v1/events has a real body schema
whose examples the service accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared.config import CommonSettings
from tests.security.apps import SERVICES, make_key, running

UNAUTHENTICATED = ("/v1/webhooks/", "/v1/alert-links/")


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with the document's components available to $ref."""
    return {**schema, "components": document["components"]}


@pytest.mark.parametrize("service", SERVICES)
def test_keyed_routes_declare_bearer_and_the_real_error_shape(
    service: str, common_settings: CommonSettings, tmp_path: Path
) -> None:
    with running(service, common_settings, tmp_path) as client:
        document = client.get("/openapi.json").json()
        assert document["components"]["securitySchemes"]["bearer"] == {
            **document["components"]["securitySchemes"]["bearer"],
            "type": "http",
            "scheme": "bearer",
        }
        keyed = []
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                if path.startswith(UNAUTHENTICATED):
                    assert "security" not in operation, path
                    continue
                keyed.append((method, path))
                assert operation["security"] == [{"bearer": []}], path
                for code in ("401", "403", "422", "500"):
                    ref = operation["responses"][code]["content"]["application/json"]["schema"]
                    assert ref == {"$ref": "#/components/schemas/Error"}, (path, code)
        assert keyed
        error_schema = _resolve(document, {"$ref": "#/components/schemas/Error"})
        method, path = keyed[0]
        concrete = path.replace("{account_id}", "acme").replace("{alert_id}", "1")
        answer = client.request(method.upper(), concrete)
        assert answer.status_code == 401
        jsonschema.validate(answer.json(), error_schema)  # the documented shape is the one sent


def test_post_events_body_comes_from_the_contract_and_its_examples_are_accepted(
    common_settings: CommonSettings, tmp_path: Path
) -> None:
    with running("ingest", common_settings, tmp_path) as client:
        document = client.get("/openapi.json").json()
        body = document["paths"]["/v1/events"]["post"]["requestBody"]
        content = body["content"]["application/json"]
        schema = _resolve(document, content["schema"])
        assert "TicketChanged" in document["components"]["schemas"] and "ticket.opened" in body["description"]
        key = make_key(common_settings.database_url, ["events:write"])
        for name, example in content["examples"].items():
            jsonschema.validate(example["value"], schema)
            response = client.post(
                "/v1/events", json=example["value"], headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 202, (name, response.text)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"specversion": "0.3"}, schema)
