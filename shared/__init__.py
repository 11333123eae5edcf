"""kamwatch common plumbing and contracts: event envelope, DB base, Kafka helpers, logging."""
