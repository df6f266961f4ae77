"""The queue worker: erase each received request in order, as sequential requests on the
deployment's model, and register the erased version.

One worker per deployment (a lock; a second refuses). A request interrupted by a crash (it is
``running`` when a worker starts) is re-run from the parent version it started from; its
unfinished outputs lie in a work folder of that attempt, which is discarded. The erasure starts
from the newest *unmasked* version (a masked one only negates head rows); after it, every
request received but not yet erased is masked again on top, so that the current version never
recognises anyone who asked.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from qpae.checkpoints import read_model
from qpae.pipeline.certify import hydra_value
from qpae.service.ledger import Ledger, Request, Version, now
from qpae.service.masking import masked_model
from qpae.service.registry import Timeout
from qpae.service.service import ErasureService, RefusedError

log = logging.getLogger(__name__)

# a request whose run killed the worker this many times is failed, not re-run forever
MAX_ATTEMPTS = 3


def erasure_base(service: ErasureService, version: Version) -> Version:
    """The newest version in ``version``'s lineage that is not only masked."""
    while version.kind == "masked":
        parent = service.ledger.version(version.parent) if version.parent else None
        if parent is None:
            raise RuntimeError(f"masked version {version.sha256[:16]}… has no registered parent")
        version = parent
    return version


def run_overrides(service: ErasureService, request: Request, parent: Version, work: Path) -> list[str]:
    """The ``qpae-unlearn`` config of one erasure: the deployment's settings, the parent model as
    input, this attempt's work folder as output, the request's speakers by name, no purge (the
    worker purges after registering)."""
    settings = json.loads(service.ledger.deployment(request.deployment)["run_overrides"])
    return [
        "logger=none",
        *settings["overrides"],
        f"method={settings['method']}",
        f"input={hydra_value(str(service.registry.model_path(parent.sha256)))}",
        f"paths.output_dir={hydra_value(str(work))}",
        f"output_dir={hydra_value(str(work))}",
        f"paths.runs={hydra_value(str(service.registry.work / 'runs'))}",
        # the indices the names were resolved to at submission, against this deployment's classes
        # (every version of a deployment has the same classes in the same order; the run's receipt
        # is checked against the names before it is registered): no name passes through Hydra's
        # parser, whatever characters it holds
        "forget_index=[" + ",".join(str(i) for i in request.class_indices) + "]",
        "record_latest=false",
        "purge=false",
    ]


def default_erase(overrides: list[str]) -> None:
    """Run ``qpae-unlearn`` with ``overrides`` in this process."""
    from qpae.pipeline.config import compose
    from qpae.pipeline.unlearn import unlearn

    unlearn(compose("unlearn", overrides))


def default_purge(overrides: list[str], parent_meta: dict, speakers: list[str], reason: str) -> dict | None:
    """Delete ``speakers``' features from the dataset's feature stores (the run's and the original
    model's); None when the deployment's classes are not speakers and purge was left unset."""
    import hydra

    from qpae.data.store import purge_everywhere
    from qpae.pipeline.config import compose
    from qpae.unlearning.runner import purge_caches

    cfg = compose("unlearn", overrides)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if not datamodule.label_is_speaker:
        return None
    already = set(datamodule.store().purged())
    todo = [s for s in speakers if s not in already]
    if not todo:
        return {"speakers": [], "already_purged": speakers}
    record = purge_everywhere(
        purge_caches(parent_meta, datamodule), datamodule.name, datamodule.store_folder, todo, reason
    )
    datamodule.store().release()
    return record


def default_certify(overrides: list[str]) -> dict:
    """Certify one erasure with ``qpae-certify``'s pipeline; the certificate's body."""
    from qpae.pipeline.certify import certify
    from qpae.pipeline.config import compose

    return certify(compose("certify", overrides))


def certify_overrides(
    service: ErasureService, request: Request, parent: Version, run: Path, out: Path
) -> list[str]:
    """The ``qpae-certify`` config of one erasure: the deployment's data and method settings (those
    a certification has: no logger, purge or bookkeeping keys), its ``certify.*`` settings, the
    parent model as input and the erased model (in ``run``, beside its receipt) as the one
    certified."""
    settings = json.loads(service.ledger.deployment(request.deployment)["run_overrides"])
    skip = ("logger", "record_latest", "purge")
    kept = [o for o in settings["overrides"] if o.partition("=")[0].lstrip("+~") not in skip]
    return [
        *kept,
        *settings["certify"],
        f"method={settings['method']}",
        f"input={hydra_value(str(service.registry.model_path(parent.sha256)))}",
        f"certify.model={hydra_value(str(run / 'model.pt'))}",
        "forget_index=[" + ",".join(str(i) for i in request.class_indices) + "]",
        "wandb=false",
        f"paths.output_dir={hydra_value(str(out))}",
    ]


class Worker:
    def __init__(
        self,
        service: ErasureService,
        deployment: str,
        erase: Callable[[list[str]], None] = default_erase,
        purge: Callable[..., dict | None] = default_purge,
        certify: Callable[[list[str]], dict] = default_certify,
    ) -> None:
        self.service, self.deployment = service, deployment
        self.erase, self.purge, self.certify = erase, purge, certify
        self.service.ledger.deployment(deployment)  # an unknown deployment fails now

    def run(self, follow: bool = False, poll_s: float = 0.5, max_requests: int | None = None) -> list[int]:
        """Process the queue in order; with ``follow``, keep waiting for new requests."""
        lock = self.service.registry.exclusive(f"worker-{self.deployment}")
        try:
            lock.acquire()
        except Timeout:
            raise RefusedError(
                f"another worker is processing deployment {self.deployment!r} of {self.service.root} "
                f"(it holds {lock.lock_file})"
            ) from None
        done: list[int] = []
        try:
            self.recover()
            while max_requests is None or len(done) < max_requests:
                queued = self.service.ledger.requests(self.deployment, ("queued",))
                if not queued:
                    if not follow:
                        break
                    time.sleep(poll_s)
                    continue
                self.process(queued[0])
                done.append(queued[0].id)
        finally:
            lock.release()
        return done

    def recover(self) -> None:
        """Requests a killed worker left running go back to the queue (re-run from their parent);
        purges a killed worker left pending are finished."""
        with self.service.change() as db:
            for r in self.service.ledger.requests(self.deployment, ("running",), db):
                self.discard_work(r.id)
                if r.attempts >= MAX_ATTEMPTS:  # a run that kills its worker every time (OOM…)
                    message = f"interrupted {r.attempts} times (the worker died during each run)"
                    Ledger.update_request(db, r.id, status="failed", error=message, finished_at=now())
                    Ledger.add_event(db, self.deployment, "failed", r.id, r.parent, error=message)
                    log.error("request %d failed (its speakers stay masked): %s", r.id, message)
                    continue
                Ledger.update_request(db, r.id, status="queued")
                Ledger.add_event(db, self.deployment, "recovered", r.id, r.parent, attempt=r.attempts)
                log.warning(
                    "request %d was interrupted (attempt %d): re-running it from its parent", r.id, r.attempts
                )
        for r in self.service.ledger.requests(self.deployment, ("erased",)):
            if r.certificate == "pending":
                self.finish_certificate(r)
            if self.service.ledger.request(r.id).purge == "pending":
                self.finish_purge(r)

    def discard_work(self, request_id: int) -> None:
        """Remove the work folders of a request's earlier attempts (partly unlearned models)."""
        for folder in self.service.registry.work.glob(f"request-{request_id}-attempt-*"):
            shutil.rmtree(folder, ignore_errors=True)

    def fail(self, request: Request, parent: Version, err: BaseException) -> None:
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        with self.service.change() as db:
            Ledger.update_request(db, request.id, status="failed", error=message, finished_at=now())
            Ledger.add_event(db, self.deployment, "failed", request.id, parent.sha256, error=message)
        self.discard_work(request.id)
        log.error("request %d failed (its speakers stay masked): %s", request.id, message)

    def process(self, request: Request) -> None:
        service = self.service
        with service.change() as db:
            current = service.ledger.current(self.deployment, db)
            parent = (
                service.ledger.version(request.parent, db)
                if request.parent
                else erasure_base(service, current)
            )
            attempt = request.attempts + 1
            Ledger.update_request(
                db, request.id, status="running", started_at=now(), attempts=attempt, parent=parent.sha256
            )
            Ledger.add_event(
                db,
                self.deployment,
                "started",
                request.id,
                parent.sha256,
                attempt=attempt,
                worker_pid=os.getpid(),
            )
        request = service.ledger.request(request.id)
        work = service.registry.work / f"request-{request.id}-attempt-{attempt}"
        shutil.rmtree(work, ignore_errors=True)
        overrides = run_overrides(service, request, parent, work)
        log.info("request %d: erasing %s from %s…", request.id, list(request.class_names), parent.sha256[:16])
        try:
            self.erase(overrides)
            registered = self.register(request, parent, work / "request-01")
        except Exception as err:  # the run refused or failed: recorded, the mask stays
            self.fail(request, parent, err)
            return
        shutil.rmtree(work, ignore_errors=True)
        if not registered:
            return
        # the certificate needs the speaker's clips: before the purge deletes them
        if service.ledger.request(request.id).certificate == "pending":
            self.finish_certificate(service.ledger.request(request.id))
        request = service.ledger.request(request.id)
        if request.purge == "pending":
            self.finish_purge(request)

    def register(self, request: Request, parent: Version, out: Path) -> bool:
        """Register the erased version, mask every request still waiting on top of it, and make
        the result current — one change."""
        service = self.service
        data = (out / "model.pt").read_bytes()
        receipt = json.loads((out / "receipt.json").read_text(encoding="utf-8"))
        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        erased = read_model(out / "model.pt")
        names = list(erased.meta["data"]["class_names"])
        forgotten = [names[c] for c in erased.meta.get("forgotten_classes", [])]
        if receipt["request"]["forget_class_names"] != list(request.class_names):
            raise RuntimeError(
                f"the run forgot {receipt['request']['forget_class_names']}, not the request's "
                f"{list(request.class_names)}: nothing was registered"
            )
        deployment = service.ledger.deployment(self.deployment)
        purge = deployment["purge"]
        certify = json.loads(deployment["run_overrides"]).get("certify")
        with service.change() as db:
            if erasure_base(service, service.ledger.current(self.deployment, db)).sha256 != parent.sha256:
                # rolled back during the run: this erasure starts from a version no longer deployed
                Ledger.update_request(db, request.id, status="queued", parent=None)
                Ledger.add_event(
                    db,
                    self.deployment,
                    "replanned",
                    request.id,
                    parent.sha256,
                    why="the deployment was rolled back while the request ran; it runs again from the new base",
                )
                log.warning("request %d: rolled back during its run; queued again", request.id)
                return False
            sha = service.add_version(
                db,
                data,
                self.deployment,
                "erased",
                parent.sha256,
                request,
                forgotten,
                [],
                extra={"erasure_receipt": receipt, "schedule": metrics.get("schedule")},
                metrics={"before": metrics.get("before"), "after": metrics.get("after")},
            )
            finished = now()
            Ledger.update_request(
                db,
                request.id,
                status="erased",
                erased_version=sha,
                finished_at=finished,
                purge=None if purge == 0 else "pending",
                certificate="pending" if certify else None,
                error=None,
            )
            Ledger.add_event(db, self.deployment, "erased", request.id, sha)
            # everyone who asked and is not erased in this version stays masked
            waiting = [
                n
                for r in service.ledger.requests(self.deployment, db=db)
                for n in r.class_names
                if n not in forgotten
            ]
            waiting = list(dict.fromkeys(waiting))
            current = sha
            if waiting:
                current = service.add_version(
                    db,
                    masked_model(erased, [names.index(n) for n in waiting]),
                    self.deployment,
                    "masked",
                    sha,
                    None,
                    forgotten,
                    waiting,
                    extra={
                        "notice": "masked, not erased: the erased version above, with the speakers of "
                        "requests not yet erased masked on top"
                    },
                )
            service.set_current(db, self.deployment, current, f"request {request.id} erased", request.id)
        log.info("request %d erased: version %s", request.id, sha[:16])
        return True

    def finish_purge(self, request: Request) -> None:
        service = self.service
        parent = service.ledger.version(request.parent) if request.parent else None
        parent_meta = read_model(service.registry.model_path(parent.sha256)).meta if parent else {}
        work = service.registry.work / f"purge-{request.id}"
        try:
            record = self.purge(
                run_overrides(service, request, parent, work) if parent else [],
                parent_meta,
                list(request.class_names),
                f"qpae-erase request {request.id}",
            )
        except Exception as err:  # recorded (qpae-store … store.action=purge finishes it by hand)
            message = f"{type(err).__name__}: {err}".splitlines()[0]
            with service.change() as db:
                Ledger.update_request(db, request.id, purge="failed")
                Ledger.add_event(db, self.deployment, "purge-failed", request.id, error=message)
            log.error("request %d: the purge failed: %s", request.id, message)
            shutil.rmtree(work, ignore_errors=True)
            return
        with service.change() as db:
            if record is None:
                Ledger.update_request(db, request.id, purge=None)
                Ledger.add_event(
                    db, self.deployment, "purge-skipped", request.id, reason="classes are not speakers"
                )
                return
            service.append_record(
                db,
                "purge",
                self.deployment,
                {"purge": record, "request_id": request.id},
                request.erased_version,
                request.id,
            )
            Ledger.update_request(db, request.id, purge="done")
            Ledger.add_event(
                db,
                self.deployment,
                "purged",
                request.id,
                request.erased_version,
                speakers=record.get("speakers"),
            )
        shutil.rmtree(work, ignore_errors=True)

    def finish_certificate(self, request: Request) -> None:
        """Certify the request's erased version against its parent (qpae-certify's ensembles, cached
        by content and shared by later requests); the certificate becomes a record of the chain and
        its summary part of the version. A failed certification is recorded; the erasure stands."""
        from qpae.pipeline.certify import summary

        service = self.service
        version = service.ledger.version(request.erased_version)
        parent = service.ledger.version(request.parent)
        folder = service.registry.work / f"certify-{request.id}"
        shutil.rmtree(folder, ignore_errors=True)
        run = folder / "run"
        try:
            run.mkdir(parents=True)
            shutil.copyfile(service.registry.model_path(version.sha256), run / "model.pt")
            receipt = service.receipt(version)["erasure_receipt"]
            (run / "receipt.json").write_text(json.dumps(receipt, indent=2), encoding="utf-8")
            body = self.certify(certify_overrides(service, request, parent, run, folder / "out"))
            brief = json.dumps(summary(body))
        except Exception as err:  # recorded; the purge still follows
            message = f"{type(err).__name__}: {err}".splitlines()[0]
            with service.change() as db:
                Ledger.update_request(db, request.id, certificate="failed")
                Ledger.add_event(
                    db, self.deployment, "certificate-failed", request.id, version.sha256, error=message
                )
            log.error("request %d: certification failed: %s", request.id, message)
            shutil.rmtree(folder, ignore_errors=True)
            return
        with service.change() as db:
            service.append_record(
                db,
                "certificate",
                self.deployment,
                {"request_id": request.id, "certificate": body},
                version.sha256,
                request.id,
            )
            db.execute("UPDATE versions SET certificate = ? WHERE sha256 = ?", (brief, version.sha256))
            Ledger.update_request(db, request.id, certificate="done")
            Ledger.add_event(
                db, self.deployment, "certified", request.id, version.sha256, valid=body.get("valid")
            )
        shutil.rmtree(folder, ignore_errors=True)
