"""Enrolment stores for verification mode: make them from a model (``action=enrol``), or forget
people from them alone (``action=remove``: for people the encoder never trained on, whose only
trace is their voiceprint). Forgetting people the encoder *was* trained on is one ``qpae-unlearn``
request with ``verification.enrolment=…``: encoder unlearning and these store edits together."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from qpae.audit.inputs import read_checked
from qpae.audit.run import net_of
from qpae.checkpoints import save_json
from qpae.publish import OutputExistsError
from qpae.verification.enrolment import EnrolmentError
from qpae.verification.erasure import apply_store_edits, plan_store_edits
from qpae.verification.evaluate import enrol_people

log = logging.getLogger(__name__)

ACTIONS = ("enrol", "remove")


def names_list(value, key: str) -> list[str] | None:
    """A list of people's names from the config: ``theo`` and ``[theo]`` alike (never the
    characters of a string); numbers only as whole numbers, named as written."""
    if value is None:
        return None
    items = [value] if isinstance(value, str | int | float | bool) else list(value)
    for item in items:
        if isinstance(item, bool | float) or not isinstance(item, str | int):
            raise EnrolmentError(f"{key} holds names, e.g. {key}=[theo,lucas]; got {item!r}")
    return [str(item) for item in items]


def store_meta(dataset: str, encoder_sha256: str, enrol_clips, seed: int, data_seed: int, kind: str) -> dict:
    """What a store records about how it was made (checked by later edits; used to re-enrol)."""
    return {
        "kind": kind,
        "dataset": dataset,
        "encoder_sha256": encoder_sha256,
        "enrol_clips": enrol_clips,
        "seed": seed,
        "data_seed": data_seed,
    }


def make_stores(cfg: DictConfig, out: Path) -> dict:
    enrol_clips = None if cfg.enrol_clips is None else int(cfg.enrol_clips)
    if enrol_clips is not None and enrol_clips < int(cfg.min_clips):
        raise EnrolmentError(f"enrol_clips={enrol_clips} is below min_clips={cfg.min_clips}")
    cohort = names_list(cfg.cohort, "cohort") or []
    if len(cohort) == 1:  # before any data is read
        raise EnrolmentError(
            "a cohort needs at least two people (AS-norm takes its top scores); give none or more"
        )
    L.seed_everything(cfg.seed, verbose=False)
    datamodule = hydra.utils.instantiate(cfg.dataset)
    datamodule.prepare_data()
    datamodule.setup()
    names = list(datamodule.class_names)
    enrolled = names_list(cfg.enrolled, "enrolled")
    enrolled = enrolled if enrolled is not None else [n for n in names if n not in cohort]
    unknown = sorted((set(enrolled) | set(cohort)) - set(names))
    if unknown:
        raise EnrolmentError(f"{unknown} are not classes of {datamodule.name} (classes: {names})")
    overlap = sorted(set(enrolled) & set(cohort))
    if overlap:
        raise EnrolmentError(f"{overlap} are both enrolled and in the cohort: a cohort holds other people")
    model = read_checked({"input": cfg.input}, datamodule)["input"]
    net = net_of(model)
    train = datamodule.dataset("train")
    stores = {}
    for kind, people, seed in (("enrolment", enrolled, int(cfg.seed)), ("cohort", cohort, int(cfg.seed) + 1)):
        if not people:
            continue
        meta = store_meta(datamodule.name, model.sha256, enrol_clips, seed, int(cfg.data_seed), kind)
        stores[kind] = enrol_people(net, train, names, people, enrol_clips, seed, meta)
        short = {
            n: c
            for n, c in zip(stores[kind].names, stores[kind].clips, strict=True)
            if c < int(cfg.min_clips)
        }
        if short:
            raise EnrolmentError(
                f"enrolment needs at least {cfg.min_clips} clips per person; too few for {short}"
            )
    written = {}  # both stores checked: now written, each whole
    for kind, store in stores.items():
        path = out / f"{kind}.npz"
        written[kind] = {"store": str(path), "sha256": store.save(path), "people": list(store.names)}
        log.info("%s store: %d people → %s", kind, len(store.names), path)
    return {
        "action": "enrol",
        "dataset": datamodule.name,
        "model": str(cfg.input),
        "model_sha256": model.sha256,
        "enrol_clips": enrol_clips,
        "stores": written,
    }


def remove_people(cfg: DictConfig) -> dict:
    names = names_list(cfg.forget, "forget") or []
    edits = plan_store_edits(names, cfg.verification.enrolment, cfg.verification.cohort)
    records = apply_store_edits(edits)
    for r in records:
        log.info(
            "%s store %s: removed %s (sha256 %s… → %s…)",
            r["kind"],
            r["store"],
            r["removed"] or "nobody",
            r["sha256_before"][:12],
            r["sha256_after"][:12],
        )
    return {"action": "remove", "forgotten": sorted(names), "stores": records}


def run_enrol(cfg: DictConfig) -> dict:
    """``action=enrol``: enrolment.npz (+ cohort.npz) and enrolment.json in ``output_dir``;
    ``action=remove``: the named people leave the stores, and receipt.json says so with hashes."""
    action = cfg.action
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    out = Path(cfg.output_dir)
    record_name = "enrolment.json" if action == "enrol" else "receipt.json"
    if (out / record_name).exists():
        raise OutputExistsError(f"{out} already holds {record_name}; choose a new output folder")
    if action == "remove" and not cfg.forget:
        raise EnrolmentError("action=remove needs forget=[names]")
    if action == "enrol" and cfg.forget:
        raise EnrolmentError(
            "forget=… is for action=remove (or for qpae-unlearn with verification.enrolment=…)"
        )
    out.mkdir(parents=True, exist_ok=True)
    record = make_stores(cfg, out) if action == "enrol" else remove_people(cfg)
    save_json(out / record_name, record)
    return record


# --- one qpae-unlearn request in verification mode ------------------------------------------------
def verification_stores(cfg: DictConfig) -> tuple[str | None, str | None]:
    """``verification.enrolment`` / ``.cohort`` of a qpae-unlearn config (both None: not asked)."""
    section = cfg.get("verification") or {}
    enrolment, cohort = section.get("enrolment"), section.get("cohort")
    if cohort is not None and enrolment is None:
        raise EnrolmentError("verification.cohort needs verification.enrolment: the person leaves both")
    for kind, path in (("enrolment", enrolment), ("cohort", cohort)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"no {kind} store at {path}; make one with qpae-enrol")
    return enrolment, cohort


def plan_verification_erasure(enrolment, cohort, data_seed: int, datamodule, names, source_sha256: str):
    """The store edits of this request, checked before any training: every forgotten person is
    enrolled; both stores were made for this dataset, split and input model."""
    edits = plan_store_edits(names, enrolment, cohort, dataset=datamodule.name, encoder_sha256=source_sha256)
    for edit in edits:
        made_on = edit.store.meta.get("data_seed")
        if made_on is not None and int(made_on) != int(data_seed):
            raise EnrolmentError(
                f"the {edit.kind} store {edit.path} was made on split data_seed={made_on}, this run uses {data_seed}"
            )
    return edits


def erase_from_stores(edits, datamodule, model_path: Path) -> dict:
    """After the new encoder is published: the people who stay are re-enrolled with it (from the
    same clips: the stores' enrol_clips and seed), the forgotten leave; what the receipt records."""
    from qpae.checkpoints import read_model

    new = read_model(model_path)
    net = net_of(new)
    train, names = datamodule.dataset("train"), list(datamodule.class_names)

    def reenrol_with_new_encoder(store):
        meta = store.meta
        if "seed" not in meta or not store.names:
            return store
        return enrol_people(net, train, names, store.names, meta.get("enrol_clips"), int(meta["seed"]), meta)

    records = apply_store_edits(edits, reenrol_with_new_encoder, encoder_sha256=new.sha256)
    for r in records:
        log.info(
            "%s store %s: removed %s, re-enrolled %d with the new encoder (sha256 %s… → %s…)",
            r["kind"],
            r["store"],
            r["removed"] or "nobody",
            r["people_after"],
            r["sha256_before"][:12],
            r["sha256_after"][:12],
        )
    return {"status": "done", "encoder_sha256": new.sha256, "stores": records}
