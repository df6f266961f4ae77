"""The audit's measures on hand-sized inputs."""

import math

import pytest
import torch

from qpae.audit import measures
from qpae.audit.probe import few_shot_probe, nearest_centroid_logits
from qpae.audit.relearn import relearn_curve, steps_to
from qpae.audit.run import AuditSettings, audit_model
from qpae.metrics import unlearning_metrics


def test_loss_auc_orders_members_by_low_loss():
    members, nonmembers = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.25, 1.0, 2.0])
    # pairs (member lower than non-member): 0.1<all 3, 0.2<all 3, 0.3<2 of 3 → 8/9
    assert measures.loss_auc(members, nonmembers) == pytest.approx(8 / 9)
    assert measures.loss_auc(nonmembers, members) == pytest.approx(1 / 9)


def test_margin_and_agreement():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    labels = torch.tensor([0, 1])
    assert measures.forget_margin(logits, labels) == pytest.approx(((3 - 1) + (2 - 5)) / 2)
    assert measures.label_agreement(logits, logits.flip(0)) == 0.0
    assert measures.label_agreement(logits, logits * 2) == 1.0


def test_js_divergence_bounds():
    a = torch.tensor([[10.0, -10.0]])
    b = torch.tensor([[-10.0, 10.0]])
    assert measures.js_divergence(a, a) == pytest.approx(0.0, abs=1e-9)
    assert measures.js_divergence(a, b) == pytest.approx(math.log(2), abs=1e-6)
    uniform, sure = torch.zeros(1, 2), torch.tensor([[100.0, -100.0]])
    # JS(u, δ) = ½ KL(u‖m) + ½ KL(δ‖m), m = (¾, ¼)
    expected = 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)) + 0.5 * math.log(1 / 0.75)
    assert measures.js_divergence(uniform, sure) == pytest.approx(expected, abs=1e-6)


def test_attack_learns_the_loss_gap_and_applies_it():
    torch.manual_seed(0)
    # members: confident correct logits; non-members: flat logits
    members = measures.ThresholdAttack.features(
        torch.randn(200, 4) + torch.tensor([6.0, 0, 0, 0]), torch.zeros(200, dtype=torch.long)
    )
    nonmembers = measures.ThresholdAttack.features(torch.randn(60, 4), torch.zeros(60, dtype=torch.long))
    attack = measures.ThresholdAttack().fit(members, nonmembers)
    p_in, p_out = attack.member_probability(members), attack.member_probability(nonmembers)
    assert measures.auc(p_in, p_out) > 0.95
    assert float((p_in > 0.5).float().mean()) > 0.9 and float((p_out > 0.5).float().mean()) < 0.2


def test_nearest_centroid_and_probe_separate_clusters():
    torch.manual_seed(0)
    centers = torch.eye(3) * 5
    x = torch.cat([centers[c] + 0.3 * torch.randn(20, 3) for c in range(3)])
    y = torch.arange(3).repeat_interleave(20)
    sims = nearest_centroid_logits(x, y, centers, 3)
    assert sims.argmax(1).tolist() == [0, 1, 2]
    retain = y != 2
    res = few_shot_probe(
        x[retain],
        y[retain],
        x[~retain][:10],
        y[~retain][:10],
        x[~retain][10:],
        y[~retain][10:],
        num_classes=3,
        k=3,
        draws=2,
    )
    assert res["probe_acc"] == 1.0 and res["centroid_acc"] == 1.0 and res["probe_p_forget"] > 0.8


def test_relearn_curve_and_steps_to():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    net.get_classifier = lambda: net[0]
    with torch.no_grad():  # start by never predicting class 1
        net[0].weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
        net[0].bias.copy_(torch.tensor([5.0, -5.0]))
    forget = (torch.tensor([[0.0, 1.0]] * 4), torch.ones(4, dtype=torch.long))
    retain = (torch.tensor([[1.0, 0.0]] * 8), torch.zeros(8, dtype=torch.long))
    curve = relearn_curve(net, forget, retain, forget, lr=0.1, max_steps=150)
    assert curve[0] == 0.0 and curve[-1] == 100.0
    assert steps_to(curve, 50.0) == next(i for i, v in enumerate(curve) if v >= 50)
    assert steps_to([0.0, 10.0], 50.0) is None
    assert net[0].bias[0] == 5.0  # the audited model itself is never changed


@pytest.mark.parametrize("seed", (0, 1, 2))
def test_audit_fa_ra_are_the_unlearning_metrics(seed):
    g = torch.Generator().manual_seed(seed)
    num_classes, forget = 6, [1, 4]
    labels = torch.randint(num_classes, (150,), generator=g)
    logits = torch.randn(150, num_classes, generator=g) + 1.5 * torch.nn.functional.one_hot(
        labels, num_classes
    )
    is_forget = torch.isin(labels, torch.tensor(forget))
    audited = measures.forget_and_retain_accuracy(
        logits[is_forget], labels[is_forget], logits[~is_forget], labels[~is_forget], forget
    )
    metrics = unlearning_metrics(forget)
    for batch in torch.arange(150).split(40):  # qpae-unlearn sees the test split batch by batch
        metrics.update(logits[batch], labels[batch])
    values = metrics.compute()
    assert audited == {"FA": float(values["FA"]), "RA": float(values["RA"])}


class _LogitsAreFeatures(torch.nn.Module):
    """A timm-shaped network whose features are its input and whose head is the identity."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(num_classes, num_classes)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(num_classes))
            self.head.bias.zero_()

    def forward_features(self, x):
        return x

    def forward_head(self, x, pre_logits=False):
        return x if pre_logits else self.head(x)

    def get_classifier(self):
        return self.head

    def forward(self, x):
        return self.head(x)


def test_audit_model_reports_unlearning_metrics_and_finds_the_original_fa():
    g = torch.Generator().manual_seed(0)
    num_classes, forget = 4, [1]

    def clips(predicted: list[int], label: int | list[int]):
        labels = torch.tensor(label if isinstance(label, list) else [label] * len(predicted))
        x = 4.0 * torch.nn.functional.one_hot(torch.tensor(predicted), num_classes).float()
        return x + 0.1 * torch.randn(x.shape, generator=g), labels

    data = {
        "forget_train": clips([1] * 8 + [0] * 2, 1),
        "forget_test": clips([1] * 7 + [0] * 3, 1),  # 7 of 10: 70.0 as FA, 69.9999988 on a curve
        "retain_train": clips([0, 2, 3] * 6, [0, 2, 3] * 6),
        "retain_test": clips([0, 2, 3, 1, 2, 3], [0, 2, 3, 0, 2, 3]),
    }
    settings = AuditSettings(relearn_steps=0, relearn_draws=1, probe_shots=2, probe_draws=1)
    net = _LogitsAreFeatures(num_classes)
    res, _ = audit_model(net, data, forget, num_classes, settings, original_fa=None)
    metrics = unlearning_metrics(forget)
    for split in ("forget_test", "retain_test"):
        metrics.update(net(data[split][0]), data[split][1])
    values = metrics.compute()
    assert res["FA"] == float(values["FA"]) == 70.0 and res["RA"] == float(values["RA"])
    # the model itself is already back at the original's FA: 0 relearning steps, not "never"
    res, _ = audit_model(net, data, forget, num_classes, settings, original_fa=res["FA"])
    assert res["relearn_orig_whole"] == 0 and res["relearn_orig_head"] == 0


def test_outputs_of_an_empty_clip_set_keep_their_shapes():
    from qpae.audit.run import outputs

    net = _LogitsAreFeatures(3)
    found = outputs(net, (torch.empty(0, 3), torch.empty(0, dtype=torch.long)))
    assert found.logits.shape == (0, 3) and found.features.shape == (0, 3) and found.labels.shape == (0,)
