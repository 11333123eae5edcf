"""HTTP response shapes of the ingest API."""

from __future__ import annotations

from pydantic import BaseModel


class Accepted(BaseModel):
    """The events were acknowledged by the broker (durable) and will be processed."""

    accepted: int
    ids: list[str]


class Ignored(BaseModel):
    """A webhook whose event type kamwatch does not use; acknowledged so it is not retried."""

    accepted: int = 0
    ignored: str
