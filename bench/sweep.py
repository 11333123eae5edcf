"""Times the signals time-driven sweep: `python -m bench.sweep HOURS_AHEAD [MAX_BATCHES]`.

Runs the service's own `SignalsProcessor.sweep` (one batch of `sweep_batch` accounts per call, as
one tick does) as of HOURS_AHEAD from now, until no account is due (or MAX_BATCHES); prints JSON.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.signals.config import SignalsSettings
from services.signals.handler import SignalsProcessor
from services.signals.modelstore import ModelHolder, ModelStore
from services.signals.scoring import load_scorecard
from shared.clock import SystemClock
from shared.db import make_engine, make_sessionmaker, transaction


def main(argv: list[str]) -> int:
    settings = SignalsSettings()
    engine = make_engine(settings.common.database_url)
    sessions = make_sessionmaker(engine)
    holder = ModelHolder(ModelStore(Path(settings.model_dir)), load_scorecard(settings.scorecard_path))
    holder.refresh()
    processor = SignalsProcessor(settings, sessions, SystemClock(), holder)
    now = datetime.now(UTC) + timedelta(hours=float(argv[0]))
    max_batches = int(argv[1]) if len(argv) > 1 else 0
    started, accounts, batches, slowest = time.perf_counter(), 0, 0, 0.0
    while not max_batches or batches < max_batches:
        batch_start = time.perf_counter()
        with transaction(sessions) as session:
            swept = processor.sweep(session, now)
        if not swept:
            break
        accounts, batches = accounts + swept, batches + 1
        slowest = max(slowest, time.perf_counter() - batch_start)
    seconds = time.perf_counter() - started
    engine.dispose()
    print(
        json.dumps(
            {
                "accounts": accounts,
                "batches": batches,
                "batch_size": settings.sweep_batch,
                "seconds": round(seconds, 2),
                "ms_per_account": round(seconds * 1000 / max(1, accounts), 3),
                "slowest_batch_s": round(slowest, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
