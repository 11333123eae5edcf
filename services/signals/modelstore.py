"""Versioned model artifacts in a directory, the `current` pointer, promotion and rollback.

Layout: <model_dir>/<version>/{model.joblib (deployed: fitted on every observed row),
validated.joblib (fitted on the training rows only, for backtests), metadata.json, report.json,
report.md},
<model_dir>/current (the promoted version, or absent = scorecard) and
<model_dir>/promotions.log (one decision per line, newest last: `promoted <version> {figures}`,
`rejected <version> {figures}`, `rolled-back <version>`; a bare version is an old-style promotion).
Workers read `current` in their tick and load a newly promoted model without a restart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib

from services.signals.peers import PeerReference
from services.signals.scoring import ModelScorer, Scorecard, Scorer
from shared.errors import ConfigError
from shared.logging import get_logger

log = get_logger(__name__)
SCORECARD = "scorecard"


@dataclass
class ModelStore:
    root: Path

    def version_dir(self, version: str) -> Path:
        return self.root / version

    def new_version(self, now: datetime) -> str:
        base = f"m{now.astimezone(UTC):%Y%m%d-%H%M%S}"
        version, n = base, 1
        while self.version_dir(version).exists():
            n += 1
            version = f"{base}-{n}"
        return version

    def versions(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "metadata.json").exists())

    def metadata(self, version: str) -> dict[str, Any]:
        path = self.version_dir(version) / "metadata.json"
        if not path.exists():
            known = ", ".join(self.versions()) or "none yet; run `kamwatch train`"
            raise ConfigError(f"no model version {version!r} in {self.root} (known: {known})")
        return dict(json.loads(path.read_text()))

    def current(self) -> str | None:
        try:
            text = (self.root / "current").read_text().strip()
        except FileNotFoundError:
            return None
        return text if text and text != SCORECARD else None

    def _write_current(self, version: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "current.tmp"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / "current")  # atomic: a worker never reads half a name

    def _lines(self) -> list[str]:
        path = self.root / "promotions.log"
        return [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

    def _log(self) -> list[str]:
        """Promoted versions, oldest first. A line is `<version>` (a promotion by hand),
        `promoted <version> {figures}`, `rejected <version> {figures}` or `rolled-back <version>`."""
        promoted: list[str] = []
        for line in self._lines():
            words = line.split(maxsplit=2)
            if len(words) == 1:
                promoted.append(words[0])
            elif words[0] == "promoted":
                promoted.append(words[1])
            elif words[0] == "rolled-back" and promoted and promoted[-1] == words[1]:
                promoted.pop()
        return promoted

    def record(self, decision: str, version: str, figures: dict[str, Any] | None = None) -> None:
        """Append a decision (promoted, rejected, rolled-back) with its figures to promotions.log."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = f"{decision} {version}" + (f" {json.dumps(figures, sort_keys=True)}" if figures else "")
        with (self.root / "promotions.log").open("a") as handle:
            handle.write(line + "\n")

    def promote(self, version: str, figures: dict[str, Any] | None = None) -> None:
        self.metadata(version)  # refuses unknown versions
        self.record("promoted", version, figures)
        self._write_current(version)

    def rollback(self) -> str:
        """Back to the previously promoted version (or the scorecard); returns what is current."""
        history = self._log()
        if not history:
            raise ConfigError("nothing to roll back: no model was ever promoted (the scorecard is in use)")
        self.record("rolled-back", history.pop())
        target = history[-1] if history else SCORECARD
        self._write_current(target)
        return target

    def load(self, version: str, validated: bool = False) -> ModelScorer:
        """The deployed fit; `validated`: the fit on the training rows only (older artifacts have
        only the one fit)."""
        meta = self.metadata(version)
        fit = self.version_dir(version) / "validated.joblib"
        if not (validated and fit.exists()):
            fit = self.version_dir(version) / "model.joblib"
            validated = False
        pipeline = joblib.load(fit)
        bands = (meta.get("validated_thresholds") if validated else None) or meta.get("thresholds")
        thresholds = (float(bands["amber"]), float(bands["red"])) if bands else None
        scorer = ModelScorer(version, pipeline, list(meta["features"]), dict(meta["medians"]), thresholds)
        if validated:
            scorer.fit = "validated"
        elif meta.get("fitted_through"):
            scorer.fitted_through = datetime.fromisoformat(meta["fitted_through"])
        return scorer


class ModelHolder:
    """The scorer a worker uses now: the promoted model, else the scorecard; `refresh()` is cheap
    (reads one small file) and is called from the consumer's tick."""

    def __init__(self, store: ModelStore, scorecard: Scorecard) -> None:
        self.store = store
        self.base_scorecard = scorecard  # the YAML's, without a peer reference
        self.scorecard = scorecard
        self.scorer: Scorer = scorecard
        self._loaded: str | None = None
        self._bands: dict[str, Any] = {}
        self._bands_mtime: float | None = None
        self._peers_mtime: float | None = None

    @property
    def bands_path(self) -> Path:
        return self.store.root / "bands.json"

    @property
    def peers_path(self) -> Path:
        return self.store.root / "peers.json"

    def budget_bands(self) -> tuple[float, float] | None:
        """Amber/red thresholds fitted to the live portfolio for the scorer in use, if any (the
        previous scorer's are kept beside them, for workers that have not switched yet)."""
        for bands in (self._bands, self._bands.get("previous") or {}):
            if bands.get("scorer") == self.scorer.version:
                return float(bands["amber"]), float(bands["red"])
        return None

    def save_bands(self, bands: dict[str, Any]) -> None:
        self._read_bands()
        old = {k: v for k, v in self._bands.items() if k != "previous"}
        previous = old if old.get("scorer") != bands["scorer"] else self._bands.get("previous")
        _write_json(self.bands_path, {**bands, "previous": previous} if previous else bands)
        self._read_bands()

    def save_peers(self, peers: PeerReference) -> None:
        """Make this the scorecard's peer reference, for every worker (read in refresh)."""
        _write_json(self.peers_path, peers.to_json())
        self._read_peers()

    def _read_peers(self) -> bool:
        """Pick up a changed <model_dir>/peers.json; True when the scorecard changed."""
        try:
            mtime: float | None = self.peers_path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._peers_mtime:
            return False
        self._peers_mtime = mtime
        peers = None
        if mtime is not None:
            try:
                peers = PeerReference.from_json(json.loads(self.peers_path.read_text()))
            except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
                log.error("signals.peers_unreadable", path=str(self.peers_path), error=str(exc)[:300])
        before = self.scorecard.version
        self.scorecard = self.base_scorecard.with_peers(peers)
        if self._loaded is None:
            self.scorer = self.scorecard
        if self.scorecard.version == before:
            return False
        log.info("signals.peers_loaded", scorecard=self.scorecard.version)
        return self._loaded is None

    def _read_bands(self) -> None:
        try:
            mtime = self.bands_path.stat().st_mtime
            if mtime != self._bands_mtime:
                self._bands, self._bands_mtime = json.loads(self.bands_path.read_text()), mtime
        except (FileNotFoundError, ValueError):
            self._bands, self._bands_mtime = {}, None

    def refresh(self) -> bool:
        """Load a newly promoted version (or peer reference); return True when the scorer changed."""
        self._read_bands()
        peers_changed = self._read_peers()
        wanted = self.store.current()
        if wanted == self._loaded:
            return peers_changed
        try:
            self.scorer = self.store.load(wanted) if wanted else self.scorecard
        except (ConfigError, OSError, ValueError, KeyError) as exc:
            log.error("model.load_failed", version=wanted, error=str(exc)[:300])
            return False
        self._loaded = wanted
        log.info("model.loaded", version=self.scorer.version)
        return True


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Write atomically: a worker never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, sort_keys=True) + "\n")
    os.replace(tmp, path)
