"""The audit's measures on hand-sized inputs."""

import math

import pytest
import torch

from qpae.audit import measures
from qpae.audit.probe import few_shot_probe, nearest_centroid_logits
from qpae.audit.relearn import relearn_curve, steps_to


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
