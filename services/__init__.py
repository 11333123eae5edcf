"""The kamwatch services: ingest, signals, alerts (each its own process)."""
