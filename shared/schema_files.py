"""JSON Schemas of the contract, generated from the pydantic models and committed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared.contracts import AccountRecord, RiskChange
from shared.events import DATA_MODELS, SCHEMA_VERSION, CloudEvent, schema_name

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas" / SCHEMA_VERSION


def _models() -> dict[str, type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {
        "CloudEvent": CloudEvent,
        "AccountRecord": AccountRecord,
        "RiskChange": RiskChange,
    }
    for model in DATA_MODELS.values():
        models[schema_name(model)] = model
    return models


def render(model: type[BaseModel]) -> str:
    schema: dict[str, Any] = model.model_json_schema(mode="validation")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"kamwatch:schemas/{SCHEMA_VERSION}/{model.__name__}.json",
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in sorted(_models().items()):
        path = directory / f"{name}.json"
        path.write_text(render(model))
        written.append(path)
    return written


def check_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names whose committed schema differs from the model (or is missing or extra)."""
    models = _models()
    stale = [
        name
        for name, model in sorted(models.items())
        if not (directory / f"{name}.json").exists()
        or (directory / f"{name}.json").read_text() != render(model)
    ]
    extra = [p.stem for p in directory.glob("*.json") if p.stem not in models]
    return stale + extra
