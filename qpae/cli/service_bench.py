"""``make service-bench``: the erasure service's latencies and API load test (qpae.bench.service)."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig

from qpae.bench import service as bench
from qpae.cli.entry import entry_point, friendly_errors
from qpae.pipeline.config import CONF_DIR, compose
from qpae.pipeline.pretrain import pretrain


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="service_bench")
@friendly_errors
def _main(cfg: DictConfig) -> None:
    work = Path(cfg.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = [
        f"paths.root={work}",
        "dataset=synthetic_speakers",
        f"dataset.n_speakers={cfg.speakers}",
        f"dataset.repetitions={cfg.repetitions}",
        "model=small_cnn",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]
    needed = max(cfg.queue, cfg.submissions + 1) + 1
    if cfg.speakers < needed:
        raise ValueError(
            f"speakers={cfg.speakers}: every request names a new speaker and one must stay; use >= {needed}"
        )
    pre = compose(
        "pretrain", [*data, f"trainer.max_epochs={cfg.pretrain_epochs}", f"paths.output_dir={work}/pretrain"]
    )
    metrics = pretrain(pre)
    model = Path(pre.output)
    names = [f"spk{k:02d}" for k in range(cfg.speakers)]
    out: dict = {
        "model_test_acc": metrics.get("test/acc"),
        "settings": {
            k: cfg[k]
            for k in (
                "speakers",
                "repetitions",
                "pretrain_epochs",
                "queue",
                "clients",
                "status_calls",
                "submissions",
            )
        },
    }
    if "one" in cfg.parts:
        out["one"] = bench.one_request(work, model, data, names[0], cfg.erase_timeout_s)
        print(json.dumps({"one": out["one"]}), flush=True)
    if "queue" in cfg.parts:
        out["queue"] = bench.queue(work, model, data, names[: cfg.queue], cfg.erase_timeout_s)
        print(json.dumps({"queue": out["queue"]}), flush=True)
    if "load" in cfg.parts:
        out["load"] = bench.load(
            work, model, data, names[: cfg.submissions + 1], cfg.clients, cfg.status_calls
        )
    (work / "service-bench.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    print(f"written: {work / 'service-bench.json'}")


main = entry_point(_main)

if __name__ == "__main__":
    main()
