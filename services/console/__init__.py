"""The KAM console: server-rendered pages over the public APIs of signals and alerts."""
