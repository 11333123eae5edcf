"""The scoring service starts without scikit-learn: importing it costs about 100 MB of resident
memory per replica, which only training and the peer reference's fit need (they import it when
they run). A module-level import slipped in once and raised the service's memory at start from
about 100 MB to about 210 MB."""

from __future__ import annotations

import subprocess
import sys


def test_the_signals_service_imports_no_scikit_learn_until_it_fits_something() -> None:
    probe = (
        "import sys, services.signals.app, services.alerts.app, services.ingest.app;"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(('sklearn', 'scipy'))}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
