"""Ingest: raw events and webhooks in; validated, resolved, deduplicated canonical events out."""
