"""What ``qpae-store`` does: the feature store of one dataset, inspected, built, purged, copied,
migrated from the old whole-corpus cache, or rebuilt."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import hydra
from omegaconf import DictConfig

from qpae.data import legacy_cache
from qpae.data.store import purge_everywhere, stores_of

log = logging.getLogger(__name__)

ACTIONS = ("status", "build", "purge", "copy", "migrate", "rebuild")


def _speakers(value) -> list[str]:
    """Speaker names exactly as given: a list of strings (a number is refused, never read as an index)."""
    if value is None or isinstance(value, str) or not all(isinstance(v, str) for v in value) or not value:
        raise ValueError(
            f"store.speakers must be a list of speaker names, e.g. 'store.speakers=[theo]' (quote names made of "
            f"digits: \"store.speakers=['01']\"), got {value!r}"
        )
    return list(value)


def status(datamodule) -> dict:
    """Every store of the dataset under its cache folder, and old whole-corpus caches."""
    out = {"cache_dir": str(datamodule.cache_dir), "stores": [], "legacy_caches": []}
    for store in stores_of(datamodule.cache_dir, datamodule.name, datamodule.store_folder):
        rows = store.recordings(None)
        shards = store.shards()
        out["stores"].append(
            {
                "store": str(store.root),
                "settings": store.settings,
                "speakers": len({r["speaker"] for r in rows}),
                "recordings": sum(r["status"] == "ok" for r in rows),
                "unusable": sum(r["status"] != "ok" for r in rows),
                "shards": len(shards),
                "bytes": sum(s["bytes"] for s in shards.values()),
                "purged": {
                    k: {"purged_at": v["purged_at"], "reason": v["reason"]} for k, v in store.purged().items()
                },
            }
        )
    out["legacy_caches"] = [p.name for p in legacy_cache.find(datamodule.cache_dir, datamodule.name)]
    return out


def build(datamodule) -> dict:
    datamodule.prepare_data()
    datamodule.setup()
    return status(datamodule)


def run(cfg: DictConfig) -> dict:
    """The action of ``cfg.store`` on ``cfg.dataset``; what it did (for the console)."""
    action = cfg.store.action
    if action not in ACTIONS:
        raise ValueError(f"store.action must be one of {ACTIONS}, got {action!r}")
    speakers = _speakers(cfg.store.speakers) if action == "purge" else None
    if action == "copy" and not cfg.store.to:
        raise ValueError("store.action=copy needs store.to=FOLDER (later: dataset.cache_dir=FOLDER)")
    datamodule = hydra.utils.instantiate(cfg.dataset)
    if action == "status":
        return status(datamodule)
    if action == "purge":
        return purge_everywhere(
            [datamodule.cache_dir], datamodule.name, datamodule.store_folder, speakers, str(cfg.store.reason)
        )
    if action == "migrate":
        removed = legacy_cache.remove(datamodule.cache_dir, datamodule.name)
        return {"legacy_caches_removed": removed, **build(datamodule)}
    if action == "rebuild":
        legacy_cache.refuse(datamodule.cache_dir, datamodule.name)
        old = datamodule.store()
        purged = old.purged()  # the rebuilt store must still refuse them
        with old.building():
            for path in sorted(old.root.iterdir()):
                if path.name != ".lock":
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        datamodule._store = None  # opened afresh: an empty store of these settings
        datamodule.store().record_purges(purged)
        return build(datamodule)
    if action == "copy":
        store = datamodule.store()
        target = Path(cfg.store.to).expanduser().resolve() / "store" / store.root.name
        if target.exists():
            raise FileExistsError(
                f"{target} exists: choose another store.to (a copy is never merged into another)"
            )
        store.copy_to(target)
        log.warning("%s is a copy of every speaker's features: keep it guarded, delete it when done", target)
        return {
            "copied": str(store.root),
            "to": str(target),
            "use": f"dataset.cache_dir={Path(cfg.store.to)}",
        }
    return build(datamodule)


__all__ = ["ACTIONS", "run", "status"]
