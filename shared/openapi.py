"""The OpenAPI document every service serves: the bearer scheme (Swagger's Authorize works), the
real error shape and status codes, and the POST /v1/events body from the committed JSON Schemas."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from shared.events import DATA_MODELS, schema_name
from shared.schema_files import SCHEMA_DIR

# Routes that authenticate otherwise (webhook signatures, signed action links).
UNAUTHENTICATED = ("/v1/webhooks/", "/v1/alert-links/")
ERROR = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object",
    "title": "Error",
    "required": ["error", "message"],
    "properties": {
        "error": {
            "type": "string",
            "description": "machine-readable code",
            "examples": ["validation_failed", "not_found", "unauthorized", "forbidden", "conflict"],
        },
        "message": {"type": "string", "description": "what is wrong and how to fix it, for a person"},
        "problems": {
            "type": "array",
            "description": "one entry per invalid field (validation errors only)",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "example": {
        "error": "validation_failed",
        "message": "the request is invalid: data.priority: Input should be 'low', 'normal', 'high' ...",
        "problems": [
            {"field": "data.priority", "message": "Input should be 'low', 'normal', 'high' or 'urgent'"}
        ],
    },
}
STATUS_WORDS = {
    "401": "missing, unknown or revoked API key (send 'Authorization: Bearer <key>')",
    "403": "the API key lacks the scope this route needs",
    "404": "no such resource (the message names the id)",
    "409": "conflict with the current state (the message says what to reload)",
    "413": "request body too large",
    "422": "invalid input; `problems` names each field and what was expected",
    "500": "internal error (never a stack trace; the service log has it)",
    "503": "a dependency (broker, database) is unavailable; retry after Retry-After seconds",
}
EVENT_EXAMPLES = {
    "usage": {
        "summary": "one usage event",
        "value": {
            "specversion": "1.0",
            "id": "usage-2026-10-25",
            "source": "product-analytics",
            "type": "usage.recorded",
            "time": "2026-10-25T00:00:00Z",
            "subject": "acme",
            "data": {"metric": "api_calls", "quantity": 18250, "active_users": 42},
        },
    },
    "batch": {
        "summary": "a batch: an urgent ticket and the champion leaving (subject may be an alias)",
        "value": [
            {
                "specversion": "1.0",
                "id": "zd-4711-opened",
                "source": "support-desk",
                "type": "ticket.opened",
                "time": "2026-10-25T09:30:00Z",
                "subject": "zendesk:9001",
                "data": {"ticket_id": "4711", "priority": "urgent", "status": "open"},
            },
            {
                "specversion": "1.0",
                "id": "crm-contact-17-left",
                "source": "crm",
                "type": "contact.left",
                "time": "2026-10-25T10:00:00Z",
                "subject": "acme",
                "data": {"contact_id": "17", "role": "champion", "executive": False},
            },
        ],
    },
}


@cache
def _contract_schemas() -> dict[str, Any]:
    """The committed JSON Schemas, as OpenAPI components ($defs hoisted, $ids dropped)."""
    components: dict[str, Any] = {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        text = path.read_text().replace('"#/$defs/', '"#/components/schemas/')
        schema = json.loads(text)
        for name, definition in schema.pop("$defs", {}).items():
            components.setdefault(name, definition)
        schema.pop("$schema", None)
        schema.pop("$id", None)
        components[path.stem] = schema
    return components


def _events_body() -> dict[str, Any]:
    types = ", ".join(
        f"`{t}` → [{schema_name(m)}](#/components/schemas/{schema_name(m)})" for t, m in DATA_MODELS.items()
    )
    event = {"$ref": "#/components/schemas/CloudEvent"}
    return {
        "required": True,
        "description": "One CloudEvent (structured mode) or a JSON array of them. `data` must match "
        f"the schema of its `type`: {types}. Schemas are committed under shared/schemas/v1/.",
        "content": {
            "application/json": {
                "schema": {"oneOf": [event, {"type": "array", "items": event, "minItems": 1}]},
                "examples": EVENT_EXAMPLES,
            }
        },
    }


def _responses(path: str, method: str, secured: bool) -> list[str]:
    codes = ["422", "500"]
    if secured:
        codes += ["401", "403"]
    if "{" in path:
        codes.append("404")
    if method in ("post", "put", "patch"):
        codes += ["413", "503"]
    if method == "put":
        codes.append("409")
    return codes


def _document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "an API key: `make run` prints a local one; `kamwatch keys create --scopes ...`",
        }
    }
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for path, operations in schema.get("paths", {}).items():
        secured = path.startswith("/v1/") and not path.startswith(UNAUTHENTICATED)
        for method, operation in operations.items():
            if secured:
                operation["security"] = [{"bearer": []}]
            responses = operation.setdefault("responses", {})
            for code in _responses(path, method, secured):
                body = {"application/json": {"schema": ERROR}}
                responses[code] = {"description": STATUS_WORDS[code], "content": body}
            if path == "/v1/events" and method == "post":
                schemas.update(_contract_schemas())
                operation["requestBody"] = _events_body()
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in schemas and f"#/components/schemas/{unused}" not in json.dumps(schema):
            del schemas[unused]
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the document above at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
