"""The privacy audit of a set of models (original, unlearned ones, retrain, random init).

Every measure is reported beside the retrained model's value, because that — not 0 or 0.5 — is
what an honest unlearning should match.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from qpae.audit import measures
from qpae.audit.probe import few_shot_probe
from qpae.audit.relearn import relearn_curve, steps_to
from qpae.checkpoints import ModelFile, build_net, load_model, read_model
from qpae.data.windows_dataset import WindowDataset, batches
from qpae.models.factory import features_and_logits

Clips = tuple[Tensor, Tensor] | WindowDataset


@dataclass(frozen=True)
class AuditSettings:
    """How hard the audit probes (relearning budget and steps, probe shots and draws) and how
    coarsely its figures aggregate the clips."""

    relearn_budget: float = 0.05  # share of forget-train clips the attacker relearns from
    relearn_draws: int = 3
    relearn_steps: int = 200
    relearn_lr: float = 1e-4
    relearn_eval_every: int = 1
    probe_shots: int = 3
    probe_draws: int = 5
    # the loss histograms merge bins until each bar holds this many clips (no single clip shown)
    min_clips_per_bin: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_clips_per_bin < 1:
            raise ValueError(f"min_clips_per_bin must be >= 1, got {self.min_clips_per_bin}")


def net_of(model: ModelFile) -> nn.Module:
    """The network of a model file already read, weights loaded, in eval mode."""
    net = build_net(model.meta)
    net.load_state_dict(model.state_dict)
    return net.eval()


def load_net(path) -> nn.Module:
    """A model file's network, weights loaded (weights-only, through qpae's factory)."""
    return net_of(read_model(path))


def random_init_like(path, seed: int) -> nn.Module:
    """The floor: a freshly initialised network of the same architecture."""
    _, meta = load_model(path)
    torch.manual_seed(seed)
    return build_net(meta).eval()


@dataclass
class Outputs:
    logits: Tensor
    features: Tensor
    labels: Tensor


@torch.no_grad()
def outputs(net: nn.Module, clips: Clips, batch_size: int = 256) -> Outputs:
    """Logits and penultimate (pre-logit) features in eval mode, one batch of clips at a time
    (from tensors, or read from the feature store)."""
    net.eval()
    feats, logits, labels = [], [], []
    for x, y in batches(clips, batch_size):
        f, z = features_and_logits(net, x)
        feats.append(f)
        logits.append(z)
        labels.append(y)
    return Outputs(torch.cat(logits), torch.cat(feats), torch.cat(labels))


def views(datamodule, forget_classes: Sequence[int]) -> dict[str, Clips]:
    """Forget/retain × train/test clips of the datamodule (the split the models were trained on).

    The forget sets (the forgotten classes' clips) are held as tensors; the retained ones stay in
    the feature store and are read a batch at a time, so that the audit's memory does not grow
    with the corpus."""
    out: dict[str, Clips] = {}
    for split in ("train", "test"):
        out[f"forget_{split}"] = tuple(datamodule.forget_set(forget_classes, split).tensors)
        out[f"retain_{split}"] = datamodule.retain_set(forget_classes, split)
    return out


def audit_model(
    net: nn.Module,
    data: dict,
    forget_classes: Sequence[int],
    num_classes: int,
    settings: AuditSettings,
    original_fa: float | None,
) -> tuple[dict, dict]:
    """All single-model measures; returns (numbers, raw curves/scores for plots)."""
    out = {name: outputs(net, clips) for name, clips in data.items()}
    ft, fs, rt, rs = out["forget_train"], out["forget_test"], out["retain_train"], out["retain_test"]
    res: dict = measures.forget_and_retain_accuracy(
        fs.logits, fs.labels, rs.logits, rs.labels, forget_classes
    )
    loss_ft = measures.per_sample_loss(ft.logits, ft.labels)
    loss_fs = measures.per_sample_loss(fs.logits, fs.labels)
    res["mia_loss_auc"] = measures.loss_auc(loss_ft, loss_fs)
    attack = measures.ThresholdAttack().fit(
        measures.ThresholdAttack.features(rt.logits, rt.labels),
        measures.ThresholdAttack.features(rs.logits, rs.labels),
    )
    p_train = attack.member_probability(measures.ThresholdAttack.features(ft.logits, ft.labels))
    p_test = attack.member_probability(measures.ThresholdAttack.features(fs.logits, fs.labels))
    res["mia_attack_auc"] = measures.auc(p_train, p_test)
    res["mia_member_rate_forget_train"] = float((p_train > 0.5).float().mean())
    res["mia_member_rate_forget_test"] = float((p_test > 0.5).float().mean())
    res["margin"] = measures.forget_margin(fs.logits, fs.labels)
    res.update(
        few_shot_probe(
            rt.features,
            rt.labels,
            ft.features,
            ft.labels,
            fs.features,
            fs.labels,
            num_classes,
            settings.probe_shots,
            settings.probe_draws,
            settings.seed,
        )
    )
    curves = {}
    for mode in ("whole", "head"):
        to_half, to_orig, runs = [], [], []
        for draw in range(settings.relearn_draws):
            g = torch.Generator().manual_seed(settings.seed * 1000 + draw)
            n = max(1, round(settings.relearn_budget * len(data["forget_train"][0])))
            pick = torch.randperm(len(data["forget_train"][0]), generator=g)[:n]
            relearn = (data["forget_train"][0][pick], data["forget_train"][1][pick])
            curve = relearn_curve(
                net,
                relearn,
                data["retain_train"],
                data["forget_test"],
                head_only=mode == "head",
                lr=settings.relearn_lr,
                max_steps=settings.relearn_steps,
                seed=settings.seed * 1000 + draw,
                eval_every=settings.relearn_eval_every,
            )
            runs.append(curve)
            to_half.append(steps_to(curve, 50.0))
            if original_fa is not None:
                # "back to the original's FA" means as many forget-test clips right; half a clip
                # of slack, because the curve's percentages and FA's round differently in float32
                # (7 of 10 clips: 69.9999988 on the curve, 70.0 as FA)
                half_clip = 50.0 / max(1, len(data["forget_test"][0]))
                to_orig.append(steps_to(curve, original_fa - half_clip))
        never = settings.relearn_steps + 1  # "not within the budget" counts as one more step
        res[f"relearn50_{mode}"] = statistics.fmean(never if s is None else s for s in to_half)
        if to_orig:
            res[f"relearn_orig_{mode}"] = statistics.fmean(never if s is None else s for s in to_orig)
        curves[f"relearn_{mode}"] = runs
    raw = {
        "loss_forget_train": loss_ft,
        "loss_forget_test": loss_fs,
        "loss_retain_test": measures.per_sample_loss(rs.logits, rs.labels),
        "attack_forget_train": p_train,
        "attack_forget_test": p_test,
        "logits_forget_test": fs.logits,
        "logits_retain_test": rs.logits,
        **curves,
    }
    return res, raw


def audit(
    models: dict[str, nn.Module],
    datamodule,
    forget_classes: Sequence[int],
    settings: AuditSettings = AuditSettings(),
    reference: str = "retrain",
    original: str = "original",
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Audit every model; add distances to ``reference`` (the retrained model)."""
    data = views(datamodule, forget_classes)
    results, raws = {}, {}
    original_fa = None
    if original in models:
        results[original], raws[original] = audit_model(
            models[original], data, forget_classes, datamodule.num_classes, settings, None
        )
        original_fa = results[original]["FA"]
    for name, net in models.items():
        if name != original:
            results[name], raws[name] = audit_model(
                net, data, forget_classes, datamodule.num_classes, settings, original_fa
            )
    if reference in raws:
        ref = raws[reference]
        for name, raw in raws.items():
            results[name]["js_forget_test"] = measures.js_divergence(
                raw["logits_forget_test"], ref["logits_forget_test"]
            )
            results[name]["js_retain_test"] = measures.js_divergence(
                raw["logits_retain_test"], ref["logits_retain_test"]
            )
            results[name]["agreement_forget_test"] = measures.label_agreement(
                raw["logits_forget_test"], ref["logits_forget_test"]
            )
    return results, raws
