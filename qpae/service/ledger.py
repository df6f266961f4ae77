"""The ledger: every deletion request, every model version and every event, in one SQLite file.

SQLite (the standard library's ``sqlite3``) because a ledger is a few thousand rows written by
two processes (the API and its worker) on one machine: WAL mode lets the API answer while the
worker writes, ``BEGIN IMMEDIATE`` serialises writers, and a killed process loses nothing that
was committed. A ledger written by a newer qpae (a higher schema version) is refused, never
silently downgraded.

Rows hold class names and indices, times, hashes and settings — never audio or features.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1

# a request's life: queued (masked at once) → running → erased, or failed (its mask stays)
REQUEST_STATUSES = ("queued", "running", "erased", "failed")
VERSION_KINDS = ("original", "masked", "erased")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS deployments (
    name TEXT PRIMARY KEY,
    current TEXT NOT NULL REFERENCES versions(sha256),
    run_overrides TEXT NOT NULL,   -- the Hydra overrides of this deployment's unlearning runs
    purge INTEGER NOT NULL,        -- delete an erased speaker's features after the erasure
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    sha256 TEXT PRIMARY KEY,       -- of the file models/<sha256>.pt
    deployment TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ({", ".join(repr(k) for k in VERSION_KINDS)})),
    parent TEXT REFERENCES versions(sha256),
    request_id INTEGER,            -- the request that produced it (none for the original)
    forgotten TEXT NOT NULL,       -- JSON: class names erased in it
    masked TEXT NOT NULL,          -- JSON: class names only masked in it (phase 1), not erased
    metrics TEXT,                  -- JSON: the erasure's before/after metrics
    certificate TEXT,              -- JSON, when a certificate was made
    receipt_seq INTEGER NOT NULL,  -- its record in the receipt chain
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment TEXT NOT NULL,
    class_names TEXT NOT NULL,     -- JSON, as resolved against the deployed model
    class_indices TEXT NOT NULL,   -- JSON, the same classes' indices in that model
    requester TEXT,                -- the operator's reference (a ticket id), never the person
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in REQUEST_STATUSES)})),
    attempts INTEGER NOT NULL DEFAULT 0,
    method TEXT NOT NULL,
    settings TEXT NOT NULL,        -- JSON: the run overrides it was received under
    parent TEXT,                   -- the version its erasure starts from (set when it starts)
    masked_version TEXT,
    erased_version TEXT,
    purge TEXT,                    -- null, pending, done or failed
    certificate TEXT,              -- null, pending, done or failed
    error TEXT,
    received_at TEXT NOT NULL,
    masked_at TEXT,
    started_at TEXT,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS chain (
    seq INTEGER PRIMARY KEY,       -- 1, 2, 3, …: a gap is a removed record
    sha256 TEXT NOT NULL UNIQUE,   -- of the record file's bytes
    previous TEXT,                 -- the previous record's sha256 (also inside the record)
    kind TEXT NOT NULL,            -- original, masked, erased, rollback, purge
    deployment TEXT NOT NULL,
    version TEXT,
    request_id INTEGER,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS service (
    key TEXT PRIMARY KEY,          -- 'root': the service folder this ledger's files live in
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    deployment TEXT NOT NULL,
    kind TEXT NOT NULL,
    request_id INTEGER,
    version TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_by_status ON requests(deployment, status, id);
PRAGMA user_version = {SCHEMA_VERSION};
"""


class LedgerError(RuntimeError):
    """The ledger cannot be used as asked (unknown deployment, unknown request, newer schema)."""


def now() -> str:
    """UTC with microseconds: latencies are differences of these."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def seconds_between(start: str, end: str) -> float:
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


@dataclass(frozen=True)
class Version:
    sha256: str
    deployment: str
    kind: str
    parent: str | None
    request_id: int | None
    forgotten: tuple[str, ...]
    masked: tuple[str, ...]
    metrics: dict | None
    certificate: dict | None
    receipt_seq: int
    created_at: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Version:
        return cls(
            sha256=row["sha256"],
            deployment=row["deployment"],
            kind=row["kind"],
            parent=row["parent"],
            request_id=row["request_id"],
            forgotten=tuple(json.loads(row["forgotten"])),
            masked=tuple(json.loads(row["masked"])),
            metrics=json.loads(row["metrics"]) if row["metrics"] else None,
            certificate=json.loads(row["certificate"]) if row["certificate"] else None,
            receipt_seq=row["receipt_seq"],
            created_at=row["created_at"],
        )

    def public(self) -> dict:
        """What the API and ``history`` show of a version."""
        return {
            "sha256": self.sha256,
            "kind": self.kind,
            "label": VERSION_LABELS[self.kind],
            "parent": self.parent,
            "request_id": self.request_id,
            "forgotten": list(self.forgotten),
            "masked": list(self.masked),
            "created_at": self.created_at,
            "receipt_seq": self.receipt_seq,
            **({"metrics_after": self.metrics.get("after")} if self.metrics else {}),
            **({"certificate": self.certificate} if self.certificate else {}),
        }


VERSION_LABELS = {
    "original": "the model the deployment started from",
    "masked": "masked, not erased: the forget classes' head rows are negated (phase 1 only); "
    "the rest of the network still holds what it learned from them",
    "erased": "erased: unlearned by a full run",
}


@dataclass(frozen=True)
class Request:
    id: int
    deployment: str
    class_names: tuple[str, ...]
    class_indices: tuple[int, ...]
    requester: str | None
    status: str
    attempts: int
    method: str
    parent: str | None
    masked_version: str | None
    erased_version: str | None
    purge: str | None
    certificate: str | None
    error: str | None
    received_at: str
    masked_at: str | None
    started_at: str | None
    finished_at: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Request:
        return cls(
            id=row["id"],
            deployment=row["deployment"],
            class_names=tuple(json.loads(row["class_names"])),
            class_indices=tuple(json.loads(row["class_indices"])),
            requester=row["requester"],
            status=row["status"],
            attempts=row["attempts"],
            method=row["method"],
            parent=row["parent"],
            masked_version=row["masked_version"],
            erased_version=row["erased_version"],
            purge=row["purge"],
            certificate=row["certificate"],
            error=row["error"],
            received_at=row["received_at"],
            masked_at=row["masked_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )

    def public(self) -> dict:
        """What the API and ``status`` show of a request."""
        out = {
            "id": self.id,
            "deployment": self.deployment,
            "speakers": list(self.class_names),
            "class_indices": list(self.class_indices),
            "requester": self.requester,
            "status": self.status,
            "attempts": self.attempts,
            "method": self.method,
            "masked_version": self.masked_version,
            "erased_version": self.erased_version,
            "purge": self.purge,
            "certificate": self.certificate,
            "error": self.error,
            "received_at": self.received_at,
            "masked_at": self.masked_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if self.masked_at:
            out["seconds_to_masked"] = seconds_between(self.received_at, self.masked_at)
        if self.status == "erased" and self.finished_at:
            out["seconds_to_erased"] = seconds_between(self.received_at, self.finished_at)
        return out


class Ledger:
    """One SQLite ledger file. Every call opens its own connection, so that threads of the API
    and separate processes can share the file; :meth:`transaction` serialises writers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"{self.path} has ledger schema {version}, newer than this qpae's ({SCHEMA_VERSION}): "
                    "it was written by a newer qpae; upgrade qpae (nothing was changed)"
                )
            # a new ledger, or one this schema version adds tables to (IF NOT EXISTS: idempotent,
            # and two processes may open a new ledger at once)
            db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed request survives power loss
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is committed, or none of it."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # reads ---------------------------------------------------------------------------------
    def deployment(self, name: str, db: sqlite3.Connection | None = None) -> sqlite3.Row:
        with _maybe(self, db) as c:
            row = c.execute("SELECT * FROM deployments WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise LedgerError(
                f"no deployment {name!r} in {self.path}; start one with `qpae-erase init MODEL_FILE "
                f"service.deployment={name} dataset=… paths.data=…`"
            )
        return row

    def deployments(self) -> list[str]:
        with self.connect() as db:
            return [r[0] for r in db.execute("SELECT name FROM deployments ORDER BY name")]

    def version(self, sha256: str, db: sqlite3.Connection | None = None) -> Version | None:
        with _maybe(self, db) as c:
            row = c.execute("SELECT * FROM versions WHERE sha256 = ?", (sha256,)).fetchone()
        return Version.from_row(row) if row else None

    def current(self, deployment: str, db: sqlite3.Connection | None = None) -> Version:
        with _maybe(self, db) as c:
            version = self.version(self.deployment(deployment, c)["current"], c)
        assert version is not None  # a foreign key
        return version

    def versions(self, deployment: str) -> list[Version]:
        with self.connect() as db:
            rows = db.execute(
                "SELECT * FROM versions WHERE deployment = ? ORDER BY receipt_seq", (deployment,)
            ).fetchall()
        return [Version.from_row(r) for r in rows]

    def request(self, request_id: int, db: sqlite3.Connection | None = None) -> Request:
        with _maybe(self, db) as c:
            row = c.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no request {request_id} in {self.path}")
        return Request.from_row(row)

    def requests(
        self, deployment: str | None = None, statuses: tuple[str, ...] = REQUEST_STATUSES, db=None
    ) -> list[Request]:
        marks = ", ".join("?" * len(statuses))
        query = f"SELECT * FROM requests WHERE status IN ({marks})"
        args: list = list(statuses)
        if deployment is not None:
            query += " AND deployment = ?"
            args.append(deployment)
        with _maybe(self, db) as c:
            rows = c.execute(query + " ORDER BY id", args).fetchall()
        return [Request.from_row(r) for r in rows]

    def chain(self, db: sqlite3.Connection | None = None) -> list[sqlite3.Row]:
        with _maybe(self, db) as c:
            return c.execute("SELECT * FROM chain ORDER BY seq").fetchall()

    def events(self, deployment: str) -> list[dict]:
        with self.connect() as db:
            rows = db.execute(
                "SELECT * FROM events WHERE deployment = ? ORDER BY id", (deployment,)
            ).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    # writes (inside a transaction) -----------------------------------------------------------
    @staticmethod
    def add_event(
        db: sqlite3.Connection,
        deployment: str,
        kind: str,
        request_id: int | None = None,
        version: str | None = None,
        **detail,
    ) -> None:
        db.execute(
            "INSERT INTO events (time, deployment, kind, request_id, version, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (now(), deployment, kind, request_id, version, json.dumps(detail, ensure_ascii=False)),
        )

    @staticmethod
    def update_request(db: sqlite3.Connection, request_id: int, **fields) -> None:
        allowed = set(Request.__dataclass_fields__) - {"id", "class_names", "class_indices"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not request fields: {sorted(unknown)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        db.execute(f"UPDATE requests SET {sets} WHERE id = ?", (*fields.values(), request_id))


@contextlib.contextmanager
def _maybe(ledger: Ledger, db: sqlite3.Connection | None) -> Iterator[sqlite3.Connection]:
    if db is not None:
        yield db
    else:
        with ledger.connect() as c:
            yield c
