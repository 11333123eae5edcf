"""Database plumbing (issue 11 Medium #5): errors never carry statement parameters."""

from __future__ import annotations

import pytest
from sqlalchemy import exc, text

from shared.db import make_engine

SECRET = "dana.secret@example.com"


def test_a_failing_statement_does_not_repeat_its_parameters(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with pytest.raises(exc.DBAPIError) as raised, engine.begin() as connection:
            connection.execute(text("INSERT INTO no_such_table (email) VALUES (:email)"), {"email": SECRET})
    finally:
        engine.dispose()
    assert SECRET not in str(raised.value)
    assert "hidden due to hide_parameters" in str(raised.value)
