"""Portfolio simulator: a deterministic generator of key accounts and their events, sinks that
send them to kamwatch (raw topics, webhooks, events API, file), and the `make demo` story.

A tool, not a service: it talks to kamwatch only through its public contracts.
"""
