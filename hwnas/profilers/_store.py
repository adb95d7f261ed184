"""The profile store: SQLite, one commit per measurement, refuses files it does not own.

Contract:
- a measurement is durable once ``record_*`` returns (WAL journal; survives SIGKILL);
- an op measurement is unique per (device fingerprint, op configuration); ``replace=True`` overwrites;
- a file that is not an SQLite database, belongs to something else, is corrupted, or has another
  schema version is refused with :class:`StoreError` and never written to.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from hwnas.devices._fingerprint import Fingerprint
from hwnas.errors import FingerprintMismatchError, StoreError
from hwnas.profilers._ops import OpConfig
from hwnas.profilers._records import ModelMeasurement, OpMeasurement
from hwnas.profilers._timing import LatencyStats

__all__ = ["ProfileStore", "SCHEMA_VERSION", "default_db_path"]

SCHEMA_VERSION = 1
_MAGIC = b"SQLite format 3\x00"
_STAT_COLS = [f for f in LatencyStats.__dataclass_fields__]

#: when an op's measurement began and ended (Unix seconds), added to stores when opened
_TIME_COLS = ("started_unix_s", "finished_unix_s")

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE fingerprints (
    id TEXT PRIMARY KEY, device_name TEXT NOT NULL, json TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE op_configs (key TEXT PRIMARY KEY, op_type TEXT NOT NULL, json TEXT NOT NULL);
CREATE TABLE op_measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint_id TEXT NOT NULL REFERENCES fingerprints(id),
    device_name TEXT NOT NULL,
    config_key TEXT NOT NULL REFERENCES op_configs(key),
    status TEXT NOT NULL CHECK (status IN ('ok', 'unsupported')),
    reason TEXT NOT NULL DEFAULT '',
    {", ".join(f"{c} {'INTEGER' if c in ('n_runs', 'n_warmup', 'converged') else 'REAL'}" for c in _STAT_COLS)},
    samples_json TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (fingerprint_id, config_key));
CREATE TABLE model_measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint_id TEXT NOT NULL REFERENCES fingerprints(id),
    device_name TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    {", ".join(f"{c} {'INTEGER' if c in ('n_runs', 'n_warmup', 'converged') else 'REAL'}" for c in _STAT_COLS)},
    samples_json TEXT,
    breakdown_json TEXT,
    created_at TEXT NOT NULL);
CREATE INDEX op_meas_fp ON op_measurements (fingerprint_id);
CREATE INDEX model_meas_fp ON model_measurements (fingerprint_id, model_sha256);
"""

#: added without a schema change: stores of the same version gain it when opened
_SPEED_CHECKS = """
CREATE TABLE IF NOT EXISTS speed_checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint_id TEXT NOT NULL,
    reference TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    context TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS repeat_checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint_id TEXT NOT NULL,
    config_key TEXT NOT NULL,
    stored_ms REAL NOT NULL,
    again_ms REAL NOT NULL,
    created_at TEXT NOT NULL);
"""


def default_db_path() -> Path:
    """``<user cache dir>/hwnas/profiles.sqlite``."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("hwnas")) / "profiles.sqlite"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ProfileStore:
    """SQLite-backed store of fingerprints and op / model measurements.

    >>> import tempfile, os
    >>> with ProfileStore(os.path.join(tempfile.mkdtemp(), "p.sqlite")) as store:
    ...     len(store.op_measurements())
    0
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = self._open()

    # ---- opening: refuse anything we do not own -------------------------------------------
    def _open(self) -> sqlite3.Connection:
        p = self.path
        if p.is_dir():
            raise StoreError(f"profile store {p} is a directory, not a database file")
        fresh = not p.exists() or p.stat().st_size == 0
        if not fresh:
            with open(p, "rb") as f:
                if f.read(16) != _MAGIC:
                    raise StoreError(
                        f"{p} is not an SQLite database (corrupted or another kind of file); "
                        "refusing to use or overwrite it. Pass another --db path."
                    )
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(p), timeout=30)
            conn.row_factory = sqlite3.Row
            if not fresh:
                ok = conn.execute("PRAGMA quick_check").fetchone()[0]
                if ok != "ok":
                    conn.close()
                    raise StoreError(f"{p} is corrupted (sqlite quick_check: {ok}); refusing to use it")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{p} is not a usable SQLite database ({exc}); refusing to use it") from None
        if not tables:
            conn.executescript(_SCHEMA)
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("app", "hwnas"), ("schema_version", str(SCHEMA_VERSION)), ("created_at", _now())],
            )
            conn.commit()
        elif "meta" not in tables:
            conn.close()
            raise StoreError(f"{p} is an SQLite database of another application (no hwnas meta table); refusing to use it")
        else:
            try:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            except (sqlite3.DatabaseError, ValueError, TypeError):
                meta = {}
            if meta.get("app") != "hwnas":
                conn.close()
                raise StoreError(f"{p} is not an hwnas profile store; refusing to use it")
            if meta.get("schema_version") != str(SCHEMA_VERSION):
                conn.close()
                raise StoreError(
                    f"{p} has profile store schema version {meta.get('schema_version')}, this hwnas "
                    f"reads version {SCHEMA_VERSION}; refusing to use it (upgrade hwnas or use another --db)"
                )
            # a development build may have written the same version number with other columns
            want = sqlite3.connect(":memory:")
            want.executescript(_SCHEMA)
            for table in ("op_measurements", "model_measurements"):
                cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                need = {r[1] for r in want.execute(f"PRAGMA table_info({table})")}
                if need - cols:
                    conn.close()
                    raise StoreError(f"{p} was written by an older development build of hwnas (table {table} lacks "
                                     f"{', '.join(sorted(need - cols))}); refusing to use it (use another --db)")
            want.close()
        conn.executescript(_SPEED_CHECKS)
        if "model_graph_sha256" not in {r[1] for r in conn.execute("PRAGMA table_info(model_measurements)")}:
            # added without a schema change: rows measured before have none (they match by file hash)
            conn.execute("ALTER TABLE model_measurements ADD COLUMN model_graph_sha256 TEXT")
        if "kernel_ms" not in {r[1] for r in conn.execute("PRAGMA table_info(op_measurements)")}:
            # added without a schema change: ops measured before have none (``hwnas profile --stored`` adds it)
            conn.execute("ALTER TABLE op_measurements ADD COLUMN kernel_ms REAL")
        have = {r[1] for r in conn.execute("PRAGMA table_info(op_measurements)")}
        for col in _TIME_COLS:  # added without a schema change: when each measurement ran (None before)
            if col not in have:
                conn.execute(f"ALTER TABLE op_measurements ADD COLUMN {col} REAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ProfileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])

    # ---- writing ----------------------------------------------------------------------------
    def add_fingerprint(self, fp: Fingerprint) -> None:
        with self._conn:
            self._conn.execute(
                "INSERT OR IGNORE INTO fingerprints VALUES (?, ?, ?, ?)",
                (fp.id, fp.device_name, json.dumps(fp.to_dict(), sort_keys=True), _now()),
            )

    def record_op(self, m: OpMeasurement, replace: bool = False) -> None:
        """Store one op measurement, committed before returning."""
        key = str(m.config)
        stats = m.stats.to_dict() if m.stats else dict.fromkeys(_STAT_COLS)
        cols = ["fingerprint_id", "device_name", "config_key", "status", "reason", *_STAT_COLS, "samples_json", "created_at",
                "kernel_ms", *_TIME_COLS]
        vals = [m.fingerprint_id, m.device_name, key, m.status, m.reason, *(stats[c] for c in _STAT_COLS),
                json.dumps([round(s, 6) for s in m.samples_ms]) if m.samples_ms else None, _now(), m.kernel_ms,
                m.started_unix_s, m.finished_unix_s]
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with self._conn:
            self._conn.execute(
                "INSERT OR IGNORE INTO op_configs VALUES (?, ?, ?)",
                (key, m.config.op.value, json.dumps(m.config.to_dict(), sort_keys=True)),
            )
            try:
                self._conn.execute(
                    f"{verb} INTO op_measurements ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"{key} is already measured for fingerprint {m.fingerprint_id}; use replace=True") from None

    def set_kernel_ms(self, fingerprint_id: str, config: OpConfig, kernel_ms: float | None) -> None:
        """Complete a stored op measurement with its kernel time (``OpMeasurement.kernel_ms``)."""
        with self._conn:
            self._conn.execute("UPDATE op_measurements SET kernel_ms = ? WHERE fingerprint_id = ? AND config_key = ?",
                               (kernel_ms, fingerprint_id, str(config)))

    def keys_without_kernel_ms(self, fingerprint_id: str) -> set[str]:
        """Op configurations measured ok under this fingerprint without a kernel time."""
        rows = self._conn.execute("SELECT config_key FROM op_measurements WHERE fingerprint_id = ? AND status = 'ok' "
                                  "AND kernel_ms IS NULL", (fingerprint_id,))
        return {r[0] for r in rows}

    def record_model(self, m: ModelMeasurement) -> None:
        cols = ["fingerprint_id", "device_name", "model_name", "model_sha256", *_STAT_COLS,
                "samples_json", "breakdown_json", "created_at", "model_graph_sha256"]
        s = m.stats.to_dict()
        vals = [m.fingerprint_id, m.device_name, m.model_name, m.model_sha256, *(s[c] for c in _STAT_COLS),
                json.dumps([round(x, 6) for x in m.samples_ms]),
                json.dumps([b.to_dict() for b in m.breakdown]), _now(), m.graph_sha256 or None]
        with self._conn:
            self._conn.execute(
                f"INSERT INTO model_measurements ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals
            )

    def record_speed_check(self, fingerprint_id: str, reference: str, latency_ms: float, context: str) -> None:
        """One reading of the speed-drift reference op (see :mod:`hwnas.profilers._drift`)."""
        with self._conn:
            self._conn.execute(
                "INSERT INTO speed_checks (fingerprint_id, reference, latency_ms, context, created_at) "
                "VALUES (?, ?, ?, ?, ?)", (fingerprint_id, reference, float(latency_ms), context, _now()))

    def record_repeat_check(self, fingerprint_id: str, config_key: str, stored_ms: float, again_ms: float) -> None:
        """One stored op measured again (see ``Profiler.recheck``); the stored measurement stays."""
        with self._conn:
            self._conn.execute(
                "INSERT INTO repeat_checks (fingerprint_id, config_key, stored_ms, again_ms, created_at) "
                "VALUES (?, ?, ?, ?, ?)", (fingerprint_id, config_key, float(stored_ms), float(again_ms), _now()))

    # ---- reading ----------------------------------------------------------------------------
    def speed_readings(self, fingerprint_id: str, reference: str) -> list[float]:
        """The reference op's stored readings, oldest first."""
        rows = self._conn.execute(
            "SELECT latency_ms FROM speed_checks WHERE fingerprint_id = ? AND reference = ? ORDER BY id",
            (fingerprint_id, reference))
        return [float(r[0]) for r in rows]

    def speed_checks(self, fingerprint_id: str | None = None) -> pd.DataFrame:
        return self._frame("speed_checks", fingerprint_id, None)

    def repeat_checks(self, fingerprint_id: str | None = None) -> pd.DataFrame:
        """Stored ops measured again later (``Profiler.recheck``), oldest first."""
        return self._frame("repeat_checks", fingerprint_id, None)

    def done_keys(self, fingerprint_id: str) -> set[str]:
        """Op configurations already measured (or found unsupported) under this fingerprint."""
        rows = self._conn.execute(
            "SELECT config_key FROM op_measurements WHERE fingerprint_id = ?", (fingerprint_id,)
        )
        return {r[0] for r in rows}

    def fingerprints(self) -> list[Fingerprint]:
        rows = self._conn.execute("SELECT json FROM fingerprints ORDER BY created_at")
        return [Fingerprint.from_dict(json.loads(r[0])) for r in rows]

    def get_op(self, fingerprint_id: str, config: OpConfig) -> OpMeasurement | None:
        row = self._conn.execute(
            "SELECT * FROM op_measurements WHERE fingerprint_id = ? AND config_key = ?",
            (fingerprint_id, str(config)),
        ).fetchone()
        if row is None:
            return None
        stats = LatencyStats(**{c: row[c] for c in _STAT_COLS}) if row["status"] == "ok" else None
        if stats is not None:
            stats = LatencyStats(**{**stats.to_dict(), "converged": bool(stats.converged)})
        samples = tuple(json.loads(row["samples_json"])) if row["samples_json"] else ()
        return OpMeasurement(config, row["device_name"], fingerprint_id, row["status"], stats, row["reason"], samples,
                             row["kernel_ms"], row["started_unix_s"], row["finished_unix_s"])

    def _frame(self, table: str, fingerprint_id: str | None, device_name: str | None) -> pd.DataFrame:
        where, args = [], []
        if fingerprint_id:
            where.append("fingerprint_id = ?")
            args.append(fingerprint_id)
        if device_name:
            where.append("device_name = ?")
            args.append(device_name)
        sql = f"SELECT * FROM {table}" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        df = pd.read_sql_query(sql, self._conn, params=args)
        if "converged" in df:
            df["converged"] = df["converged"].astype("boolean")
        return df

    def op_measurements(self, fingerprint_id: str | None = None, device_name: str | None = None) -> pd.DataFrame:
        """Op measurements as a DataFrame with the op configuration's fields as columns."""
        df = self._frame("op_measurements", fingerprint_id, device_name)
        if df.empty:
            return df
        cfgs = pd.DataFrame([OpConfig.parse(k).to_dict() for k in df["config_key"]])
        cfgs = cfgs.rename(columns={"op": "op_type"})
        return pd.concat([df.reset_index(drop=True), cfgs.reset_index(drop=True)], axis=1)

    def model_measurements(self, fingerprint_id: str | None = None, device_name: str | None = None) -> pd.DataFrame:
        return self._frame("model_measurements", fingerprint_id, device_name)

    def check_fingerprint(self, fp: Fingerprint) -> None:
        """Refuse to mix: raise when the store holds data for ``fp.device_name`` only under other
        fingerprints (another machine or runtime version), naming the fields that differ."""
        known = [f for f in self.fingerprints() if f.device_name == fp.device_name]
        if not known or any(f.id == fp.id for f in known):
            return
        diffs = "; ".join(
            f"{k}: stored {a!r} vs now {b!r}" for k, (a, b) in known[-1].diff(fp).items()
        )
        raise FingerprintMismatchError(
            f"the store's measurements for device {fp.device_name!r} come from another machine or "
            f"runtime ({diffs}). Profile this device again, or select the stored fingerprint explicitly."
        )

    def export(self, out_dir: str | Path, fmt: str = "parquet") -> list[Path]:
        """Write every table as Parquet or CSV files into ``out_dir``."""
        if fmt not in ("parquet", "csv"):
            raise StoreError(f"unknown export format {fmt!r}; known formats: csv, parquet")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        frames: dict[str, pd.DataFrame] = {
            "fingerprints": pd.DataFrame([f.to_dict() for f in self.fingerprints()]),
            "op_measurements": self.op_measurements(),
            "model_measurements": self.model_measurements(),
        }
        paths = []
        for name, df in frames.items():
            path = out / f"{name}.{fmt}"
            if fmt == "parquet":
                df.to_parquet(path, index=False)
            else:
                df.to_csv(path, index=False)
            paths.append(path)
        return paths

    def summary(self) -> dict[str, Any]:
        q = self._conn.execute
        return {
            "path": str(self.path),
            "schema_version": self.schema_version,
            "fingerprints": q("SELECT COUNT(*) FROM fingerprints").fetchone()[0],
            "op_measurements": q("SELECT COUNT(*) FROM op_measurements").fetchone()[0],
            "unsupported_ops": q("SELECT COUNT(*) FROM op_measurements WHERE status='unsupported'").fetchone()[0],
            "model_measurements": q("SELECT COUNT(*) FROM model_measurements").fetchone()[0],
        }
