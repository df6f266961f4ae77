"""The operations of the erasure service: start a deployment, receive a request (and mask it at
once), answer status and history, verify a model file, roll back.

Every change is one ledger transaction taken under the registry's lock, with its files (model,
receipt record) written first: a process killed at any point leaves either the whole change or
none of it (files it wrote without committing are removed by the next change).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from qpae.checkpoints import ModelFile, build_net, model_bytes, read_model
from qpae.service.chain import chain_problem, make_record, record_bytes
from qpae.service.ledger import VERSION_LABELS, Ledger, LedgerError, Request, Version, now
from qpae.service.masking import masked_model
from qpae.service.registry import Registry
from qpae.unlearning.request import ClassSelection, RequestError

LIVE = ("queued", "running")


class RefusedError(ValueError):
    """A request or command the service refuses, with the reason (nothing was changed)."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


class ErasureService:
    """One service folder: ``ledger.sqlite``, ``models/``, ``receipts/``, ``work/``."""

    def __init__(self, root: str | Path, ledger: str | Path | None = None, create: bool = False) -> None:
        self.root = Path(root)
        ledger_path = Path(ledger or self.root / "ledger.sqlite")
        if not create and not ledger_path.is_file():  # a mistyped folder creates nothing
            raise LedgerError(
                f"no ledger at {ledger_path}: start a deployment there with `qpae-erase init MODEL_FILE …` "
                "(or point service.root= / service.ledger= at an existing one)"
            )
        self.registry = Registry(self.root)
        self.ledger = Ledger(ledger_path)
        # one ledger, one folder: two ledgers in one folder would delete each other's files as
        # orphans, and one ledger over two folders would split its models and its worker locks
        root_id = str(self.root.resolve())
        with self.ledger.transaction() as db:
            row = db.execute("SELECT value FROM service WHERE key = 'root'").fetchone()
            if row is None:
                # a ledger from before the folder was recorded: adopted where its receipts are
                if (
                    db.execute("SELECT COUNT(*) FROM chain").fetchone()[0]
                    and not self.registry.record_path(1).is_file()
                ):
                    raise LedgerError(
                        f"{ledger_path} has receipts, but not in {self.root}: point service.root at its folder"
                    )
                db.execute("INSERT INTO service (key, value) VALUES ('root', ?)", (root_id,))
            elif row[0] != root_id:
                raise LedgerError(
                    f"{ledger_path} belongs to the service folder {row[0]}, not {root_id}: one ledger per "
                    "folder (set service.root to its folder, or service.ledger to this folder's ledger)"
                )
        if any(
            p.name.endswith(".sqlite") and p.resolve() != ledger_path.resolve()
            for p in self.root.glob("*.sqlite")
        ):
            raise LedgerError(f"{self.root} holds another ledger: one ledger per service folder")

    # changes ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def change(self) -> Iterator[sqlite3.Connection]:
        """The registry lock and one ledger transaction; leftovers of killed changes go first."""
        with self.registry.lock(), self.ledger.transaction() as db:
            head = db.execute("SELECT MAX(seq) FROM chain").fetchone()[0] or 0
            models = {r[0] for r in db.execute("SELECT sha256 FROM versions")}
            self.registry.remove_orphans(models, head)
            yield db

    def append_record(
        self,
        db: sqlite3.Connection,
        kind: str,
        deployment: str,
        body: dict,
        version: str | None = None,
        request_id: int | None = None,
    ) -> int:
        """Write the next receipt record and add it to the chain; returns its seq."""
        head = db.execute("SELECT seq, sha256 FROM chain ORDER BY seq DESC LIMIT 1").fetchone()
        seq, previous = (head[0] + 1, head[1]) if head else (1, None)
        created = now()
        record = make_record(seq, previous, kind, {"time_utc": created, "deployment": deployment, **body})
        data = record_bytes(record)
        self.registry.write_record(seq, data)
        db.execute(
            "INSERT INTO chain (seq, sha256, previous, kind, deployment, version, request_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, hashlib.sha256(data).hexdigest(), previous, kind, deployment, version, request_id, created),
        )
        return seq

    def add_version(
        self,
        db: sqlite3.Connection,
        data: bytes,
        deployment: str,
        kind: str,
        parent: str | None,
        request: Request | None,
        forgotten: Sequence[str],
        masked: Sequence[str],
        extra: dict | None = None,
        metrics: dict | None = None,
    ) -> str:
        """Register a model version: its file, its receipt record, its ledger row."""
        sha = self.registry.write_model(data)
        if db.execute("SELECT 1 FROM versions WHERE sha256 = ?", (sha,)).fetchone():
            return sha  # the same bytes again (e.g. an erasure re-run to identical weights)
        body = {
            "version": {
                "sha256": sha,
                "kind": kind,
                "label": VERSION_LABELS[kind],
                "parent": parent,
                "forgotten": list(forgotten),
                "masked": list(masked),
            },
            **({"request": _request_summary(request)} if request else {}),
            **(extra or {}),
        }
        seq = self.append_record(db, kind, deployment, body, sha, request.id if request else None)
        db.execute(
            "INSERT INTO versions (sha256, deployment, kind, parent, request_id, forgotten, masked, metrics, "
            "certificate, receipt_seq, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sha,
                deployment,
                kind,
                parent,
                request.id if request else None,
                json.dumps(list(forgotten), ensure_ascii=False),
                json.dumps(list(masked), ensure_ascii=False),
                json.dumps(metrics) if metrics else None,
                None,
                seq,
                now(),
            ),
        )
        return sha

    def set_current(
        self, db: sqlite3.Connection, deployment: str, sha: str, why: str, request_id=None
    ) -> None:
        old = db.execute("SELECT current FROM deployments WHERE name = ?", (deployment,)).fetchone()[0]
        db.execute("UPDATE deployments SET current = ? WHERE name = ?", (sha, deployment))
        Ledger.add_event(db, deployment, "current", request_id, sha, previous=old, why=why)

    # operations -------------------------------------------------------------------------------
    def init(
        self,
        deployment: str,
        model_path: str | Path,
        run_overrides: Sequence[str],
        method: str,
        purge: bool | None,
        certify: Sequence[str] = (),
    ) -> Version:
        """Start ``deployment`` from a model file (copied into the registry as its original)."""
        model = check_initial(deployment, model_path)
        names = model.meta["data"]["class_names"]
        forgotten = [names[c] for c in model.meta.get("forgotten_classes", [])]
        # the deployment's name goes into the file, and from it into every version made from it:
        # two deployments of one model never share a version (nor a masked one, for one request)
        meta = {**model.meta, "service_deployment": deployment}
        net = build_net(meta)
        net.load_state_dict(model.state_dict)
        data = model_bytes(net, meta)
        with self.change() as db:
            if db.execute("SELECT 1 FROM deployments WHERE name = ?", (deployment,)).fetchone():
                raise RefusedError(f"deployment {deployment!r} exists already in {self.ledger.path}")
            # a deployment row must name its current version: insert both, the row second
            db.execute("PRAGMA defer_foreign_keys = ON")
            db.execute(
                "INSERT INTO deployments (name, current, run_overrides, purge, created_at) VALUES (?, ?, ?, ?, ?)",
                (
                    deployment,
                    "",
                    json.dumps(
                        {
                            "overrides": list(run_overrides),
                            "method": method,
                            "purge": purge,
                            "certify": list(certify),
                        }
                    ),
                    -1 if purge is None else int(purge),
                    now(),
                ),
            )
            sha = self.add_version(
                db,
                data,
                deployment,
                "original",
                None,
                None,
                forgotten,
                [],
                extra={
                    "started_from": {"path": str(Path(model_path).resolve()), "sha256": model.sha256},
                    "run_overrides": list(run_overrides),
                    "method": method,
                    "purge": purge,
                    "certify": list(certify),
                },
            )
            db.execute("UPDATE deployments SET current = ? WHERE name = ?", (sha, deployment))
            Ledger.add_event(db, deployment, "init", None, sha, source=str(Path(model_path).resolve()))
        version = self.ledger.version(sha)
        assert version is not None
        return version

    def submit(self, deployment: str, speakers: Sequence[object], requester: str | None = None) -> Request:
        """Receive a request to forget ``speakers`` (class names: a number is a name, never an
        index) and mask them in a new current version at once. Refusals change nothing."""
        received = now()
        if isinstance(speakers, str | bytes) or not speakers:
            raise RefusedError("a request names at least one speaker, as a list of names")
        bad = [s for s in speakers if not isinstance(s, str)]
        if bad:
            raise RefusedError(
                f"speaker names are text; got {bad!r} (numbers are never read as class indices)"
            )
        if requester is not None and (not isinstance(requester, str) or len(requester) > 200):
            raise RefusedError("requester is a reference of at most 200 characters")
        with self.change() as db:
            settings = json.loads(self.ledger.deployment(deployment, db)["run_overrides"])
            current = self.ledger.current(deployment, db)
            model = read_model(self.registry.model_path(current.sha256))
            class_names = list(model.meta["data"]["class_names"])
            try:
                indices = ClassSelection(names=tuple(speakers)).resolve(class_names)
            except RequestError as err:
                # qpae-unlearn's hint (forget_index=) does not apply: the service takes names only
                raise RefusedError(str(err).split(" A number in forget=")[0]) from None
            names = [class_names[i] for i in indices]
            self._check_new(db, deployment, current, names, len(class_names))
            cur = db.execute(
                "INSERT INTO requests (deployment, class_names, class_indices, requester, status, method, settings, "
                "received_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
                (
                    deployment,
                    json.dumps(names, ensure_ascii=False),
                    json.dumps(list(indices)),
                    requester,
                    settings["method"],
                    json.dumps(settings),
                    received,
                ),
            )
            request = self.ledger.request(cur.lastrowid, db)
            Ledger.add_event(
                db, deployment, "received", request.id, None, speakers=names, requester=requester
            )
            new = [i for i, n in zip(indices, names, strict=True) if n not in current.masked]
            masked_sha = current.sha256
            if new:
                masked_sha = self.add_version(
                    db,
                    masked_model(model, new),
                    deployment,
                    "masked",
                    current.sha256,
                    request,
                    current.forgotten,
                    [*current.masked, *(class_names[i] for i in new)],
                    extra={
                        "notice": "masked, not erased: this version stops predicting the request's speakers; "
                        "their erasure follows as a new version"
                    },
                )
                self.set_current(db, deployment, masked_sha, "masked on arrival", request.id)
            Ledger.update_request(db, request.id, masked_version=masked_sha, masked_at=now())
        return self.ledger.request(request.id)

    def _check_new(
        self, db: sqlite3.Connection, deployment: str, current: Version, names: list[str], num_classes: int
    ) -> None:
        live = {n: r for r in self.ledger.requests(deployment, LIVE, db) for n in r.class_names}
        for name in names:
            if name in current.forgotten:
                raise RefusedError(f"{name!r} is already forgotten by the current version")
            if name in live:
                raise RefusedError(
                    f"{name!r} is already requested (request {live[name].id}, {live[name].status})"
                )
        if len(set(current.forgotten) | set(current.masked) | set(names)) >= num_classes:
            raise RefusedError("this request would forget every class: nothing would be left to recognise")

    def rollback(self, deployment: str, target: str) -> Version:
        """Point ``current`` at an earlier version (recorded; nothing is deleted). Refused when
        that version would recognise someone whose request was received."""
        with self.change() as db:
            version = self.resolve_version(target, db)
            if version.deployment != deployment:
                raise RefusedError(
                    f"version {version.sha256[:16]}… belongs to deployment {version.deployment!r}"
                )
            blocked = set(version.forgotten) | set(version.masked)
            requeue = []
            for r in self.ledger.requests(deployment, db=db):
                exposed = [n for n in r.class_names if n not in blocked]
                if exposed:
                    raise RefusedError(
                        f"version {version.sha256[:16]}… recognises {exposed}, who asked to be forgotten "
                        f"(request {r.id}, {r.status}): rolling back to it would undo their request"
                    )
                if r.status == "erased" and not set(r.class_names) <= set(version.forgotten):
                    # only masked there: the request is erased again from that version's base,
                    # which needs the speaker's clips
                    if r.purge == "done":
                        raise RefusedError(
                            f"version {version.sha256[:16]}… only masks {list(r.class_names)} (request {r.id}), "
                            "whose features were purged after their erasure: they could not be erased again"
                        )
                    requeue.append(r)
            current = self.ledger.current(deployment, db)
            if current.sha256 == version.sha256:
                raise RefusedError(f"version {version.sha256[:16]}… is already current")
            self.append_record(
                db,
                "rollback",
                deployment,
                {"rollback": {"from": current.sha256, "to": version.sha256}},
                version.sha256,
            )
            self.set_current(db, deployment, version.sha256, "rollback")
            for r in requeue:
                Ledger.update_request(
                    db, r.id, status="queued", parent=None, erased_version=None, finished_at=None
                )
                Ledger.add_event(
                    db,
                    deployment,
                    "requeued",
                    r.id,
                    version.sha256,
                    why="rolled back to a version that only masks the request's speakers",
                )
        return version

    # reads ------------------------------------------------------------------------------------
    def resolve_version(self, target: str, db: sqlite3.Connection | None = None) -> Version:
        """A version by its sha256 or a unique prefix of at least 8 hex digits."""
        target = target.strip().lower()
        if len(target) < 8 or any(c not in "0123456789abcdef" for c in target):
            raise RefusedError(
                f"a version is its sha256 (or at least 8 of its first hex digits), got {target!r}"
            )
        with contextlib.ExitStack() as stack:
            c = db or stack.enter_context(self.ledger.connect())
            rows = c.execute("SELECT sha256 FROM versions WHERE sha256 LIKE ?", (target + "%",)).fetchall()
            if len(rows) != 1:
                raise RefusedError(
                    f"no registered version starts with {target}" if not rows else f"{target} is ambiguous"
                )
            version = self.ledger.version(rows[0][0], c)
        assert version is not None
        return version

    def chain_head(self) -> str | None:
        rows = self.ledger.chain()
        return rows[-1]["sha256"] if rows else None

    def chain_problem(self) -> str | None:
        rows = [(r["seq"], r["sha256"], r["previous"]) for r in self.ledger.chain()]
        return chain_problem(rows, self.registry.read_record)

    def receipt(self, version: Version) -> dict:
        data = self.registry.read_record(version.receipt_seq)
        if data is None:
            raise LedgerError(f"the receipt record of version {version.sha256[:16]}… was removed")
        return json.loads(data)

    def verify(self, model_file: str | Path) -> Verdict:
        """Is ``model_file`` a registered version, which requests does it reflect, and is the
        receipt chain intact? One line either way."""
        path = Path(model_file)
        if not path.is_file():
            return Verdict(False, f"no file at {path}")
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        problem = self.chain_problem()
        if problem:
            return Verdict(False, f"the receipt chain is broken: {problem}")
        version = self.ledger.version(sha)
        if version is None:
            reason = f"{path} (sha256 {sha[:16]}…) is not a registered version of {self.ledger.path}"
            for name in self.ledger.deployments():  # the file a deployment was started from?
                original = self.ledger.versions(name)[0]
                if (self.receipt(original).get("started_from") or {}).get("sha256") == sha:
                    reason += (
                        f" (deployment {name!r} was started from it: its original is {original.sha256[:16]}…)"
                    )
            return Verdict(False, reason)
        current = self.ledger.current(version.deployment)
        requests = self.ledger.requests(version.deployment)
        erased = [r.id for r in requests if set(r.class_names) <= set(version.forgotten)]
        masked = [r.id for r in requests if r.id not in erased and set(r.class_names) <= set(version.masked)]
        parts = [
            f"{path} is version {sha[:16]}… of deployment {version.deployment!r} ({version.kind}"
            + (", current" if current.sha256 == sha else ", not current")
            + ")",
            f"erases requests {erased or 'none'}",
            f"masks (not erased) requests {masked or 'none'}",
            f"receipt chain intact ({len(self.ledger.chain())} records, head {self.chain_head()[:16]}…)",
        ]
        return Verdict(True, "; ".join(parts))

    def load_current(self, deployment: str) -> tuple[Version, ModelFile]:
        current = self.ledger.current(deployment)
        return current, read_model(self.registry.model_path(current.sha256))


def check_initial(deployment: str, model_path: str | Path) -> ModelFile:
    """The checks of ``init`` that need no ledger: a usable deployment name and a model file that
    can start one (read, not masked, with class names)."""
    if not deployment or not deployment.replace("-", "").replace("_", "").isalnum():
        raise RefusedError(f"a deployment name is letters, digits, - and _, got {deployment!r}")
    model = read_model(model_path)  # FileNotFoundError / ValueError: not a model file
    if model.meta.get("masked_classes"):
        raise RefusedError(
            f"{model_path} is a masked version; start a deployment from an erased or pretrained model"
        )
    if not (model.meta.get("data") or {}).get("class_names"):
        raise RefusedError(f"{model_path} records no class names: the service resolves requests by name")
    return model


def _request_summary(request: Request) -> dict:
    return {
        "id": request.id,
        "speakers": list(request.class_names),
        "class_indices": list(request.class_indices),
        "requester": request.requester,
        "received_at": request.received_at,
        "method": request.method,
    }
