"""schemathesis against each service's OpenAPI, in-process (ASGI) with an admin key: no generated
request, valid or deliberately invalid, may get a 500."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from shared.config import CommonSettings
from tests.reliability.conftest import report
from tests.reliability.stack import fresh_database
from tests.security.apps import SERVICES, build_app, make_key

EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure here is reproducible, never flaky
    suppress_health_check=list(HealthCheck),
    database=None,
)


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    return fresh_database(request, "postgres")  # the production database, stricter than SQLite


@pytest.mark.parametrize("service", SERVICES)
def test_no_generated_request_gets_a_500(
    service: str, common_settings: CommonSettings, tmp_path: Path
) -> None:
    app = build_app(service, common_settings, tmp_path)
    headers = {"Authorization": f"Bearer {make_key(common_settings.database_url, ['admin'])}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, f"{service} publishes no operations"
    for operation in operations:
        for mode in schemathesis.GenerationMode:

            @EXAMPLES
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                response = case.call(headers={**(case.headers or {}), **headers})
                statuses[response.status_code] += 1
                if response.status_code >= 500:
                    where = f"{case.method} {case.formatted_path}"
                    failures.append(f"{where} -> {response.status_code}: {response.text[:200]}")
                assert response.status_code < 500

            try:
                run()
            except Unsatisfiable:
                # An operation without parameters or a declared body has nothing to make invalid.
                assert mode is schemathesis.GenerationMode.NEGATIVE
    total = sum(statuses.values())
    report(f"schemathesis {service}: {len(operations)} operations, {total} requests, {dict(statuses)}")
    assert failures == []
