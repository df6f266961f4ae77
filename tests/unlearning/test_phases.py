"""Hand-computed checks of the four QPAudioEraser phases in qpae.unlearning.phases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F_nn

from qpae.unlearning.phases import (
    destructive_interference,
    entanglement_matrix,
    entanglement_mixing,
    prediction_entropy,
    superposition_targets,
    uncertainty_loss,
)

LOG2 = math.log(2.0)


@pytest.fixture
def head() -> tuple[torch.Tensor, torch.Tensor]:
    """K=4 classes, d=3 features: rows [0,1,2], [3,4,5], [6,7,8], [9,10,11]; bias [1,2,3,4]."""
    weight = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    bias = torch.tensor([1.0, 2.0, 3.0, 4.0])
    return weight, bias


# --- phase 1: destructive interference -------------------------------------------------------


def test_destructive_interference_changes_only_forget_row(head):
    weight, bias = head
    w_in, b_in = weight.clone(), bias.clone()
    new_w, new_b = destructive_interference(weight, bias, [1])

    s = 1 / math.sqrt(2)
    assert torch.allclose(new_w[1], torch.tensor([-3 * s, -4 * s, -5 * s]))
    assert torch.allclose(new_w[1], torch.tensor([-2.1213203, -2.8284271, -3.5355339]))
    for row in (0, 2, 3):  # every other row bit-identical, including column 1 outside row 1
        assert torch.equal(new_w[row], weight[row])
    assert new_w[0, 1] == 1.0 and new_w[2, 1] == 7.0 and new_w[3, 1] == 10.0  # not W[:, f]
    assert torch.equal(new_b, torch.tensor([1.0, -2.0, 3.0, 4.0]))
    # inputs untouched, outputs are new tensors
    assert torch.equal(weight, w_in) and torch.equal(bias, b_in)
    assert new_w.data_ptr() != weight.data_ptr() and new_b.data_ptr() != bias.data_ptr()


def test_destructive_interference_several_classes_no_bias_and_phi(head):
    weight, _ = head
    new_w, new_b = destructive_interference(weight, None, (0, 2))
    assert new_b is None
    s = 1 / math.sqrt(2)
    assert torch.allclose(new_w[0], torch.tensor([0.0, -1 * s, -2 * s]))
    assert torch.allclose(new_w[2], torch.tensor([-6 * s, -7 * s, -8 * s]))
    assert torch.equal(new_w[1], weight[1]) and torch.equal(new_w[3], weight[3])

    # phi = 0: cos = 1, the row is only damped by 1/sqrt(2) and the bias is kept
    new_w, new_b = destructive_interference(weight, head[1], [3], phi=0.0)
    assert torch.allclose(new_w[3], torch.tensor([9 * s, 10 * s, 11 * s]))
    assert torch.equal(new_b, head[1])


def test_destructive_interference_duplicates_apply_once(head):
    weight, bias = head
    once = destructive_interference(weight, bias, [1])
    twice = destructive_interference(weight, bias, [1, 1])
    assert torch.equal(once[0], twice[0]) and torch.equal(once[1], twice[1])


def test_destructive_interference_keeps_autograd():
    weight = torch.randn(4, 3, requires_grad=True)
    new_w, _ = destructive_interference(weight, None, [2])
    new_w.sum().backward()
    expected = torch.ones(4, 3)
    expected[2] = -1 / math.sqrt(2)
    assert torch.allclose(weight.grad, expected)


# --- phase 2: superposition targets -----------------------------------------------------------


def test_superposition_targets_rows():
    labels = torch.tensor([0, 1, 2, 1])
    targets = superposition_targets(labels, [1], num_classes=4)
    expected = torch.tensor(
        [
            [1.0, 0.0, 0.0, 0.0],
            [0.25, 0.25, 0.25, 0.25],
            [0.0, 0.0, 1.0, 0.0],
            [0.25, 0.25, 0.25, 0.25],
        ]
    )
    assert torch.equal(targets, expected)
    assert torch.allclose(targets.sum(dim=1), torch.ones(4))


def test_superposition_targets_validation():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        superposition_targets(torch.tensor([0, 4]), [1], num_classes=4)
    with pytest.raises(ValueError, match="1-D integer"):
        superposition_targets(torch.tensor([0.0, 1.0]), [1], num_classes=4)
    with pytest.raises(ValueError, match="empty"):
        superposition_targets(torch.tensor([0, 1]), [], num_classes=4)


# --- phase 3: uncertainty loss ----------------------------------------------------------------


def test_prediction_entropy_values():
    logits = torch.log(torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.5, 0.25, 0.125, 0.125]]))
    # uniform: log 4 = 2 log 2; second: .5 log 2 + .25 * 2 log 2 + 2 * .125 * 3 log 2 = 1.75 log 2
    assert torch.allclose(prediction_entropy(logits), torch.tensor([2 * LOG2, 1.75 * LOG2]))


def test_uncertainty_loss_two_sample_hand_value():
    # sample 0: forget class 1, uniform logits -> CE(uniform) = log 4, H = log 4, term = 0 (lambda 1)
    # sample 1: retained class 0, p = (.5, .25, .125, .125) -> CE = -log .5 = log 2
    logits = torch.stack([torch.zeros(4), torch.log(torch.tensor([0.5, 0.25, 0.125, 0.125]))])
    labels = torch.tensor([1, 0])
    loss = uncertainty_loss(logits, labels, [1], lambda_=1.0)
    assert loss.dim() == 0
    assert torch.allclose(loss, torch.tensor(LOG2 / 2))
    # lambda 0.5: forget term = log 4 - 0.5 log 4 = log 2 -> mean (log 2 + log 2) / 2 = log 2
    assert torch.allclose(uncertainty_loss(logits, labels, [1], lambda_=0.5), torch.tensor(LOG2))


def test_uncertainty_loss_nonuniform_forget_sample():
    # p = (.5, .25, .125, .125), label 1 is forgotten:
    # CE to uniform = (1 + 2 + 3 + 3) / 4 log 2 = 2.25 log 2, H = 1.75 log 2 -> 0.5 log 2
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.125, 0.125]]))
    loss = uncertainty_loss(logits, torch.tensor([1]), [1])
    assert torch.allclose(loss, torch.tensor(0.5 * LOG2))


def test_uncertainty_loss_without_forget_samples_is_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, 2, 3, 0, 2])
    loss = uncertainty_loss(logits, labels, [1])
    assert torch.allclose(loss, F_nn.cross_entropy(logits, labels))


def test_uncertainty_loss_only_forget_samples():
    logits = torch.zeros(3, 5)
    loss = uncertainty_loss(logits, torch.tensor([1, 4, 1]), [1, 4])
    assert torch.allclose(loss, torch.tensor(0.0), atol=1e-6)
    assert torch.isfinite(uncertainty_loss(torch.randn(3, 5), torch.tensor([1, 4, 1]), [1, 4]))


def test_uncertainty_loss_step_raises_forget_entropy():
    logits = torch.tensor([[4.0, 0.0, 1.0, 0.0], [0.0, 3.0, 0.0, 0.0]], requires_grad=True)
    labels = torch.tensor([1, 0])  # sample 0 is a forget sample (class 1), sample 1 retained
    before = prediction_entropy(logits.detach())[0]
    retained_ce_before = F_nn.cross_entropy(logits.detach()[1:], labels[1:])
    uncertainty_loss(logits, labels, [1]).backward()
    with torch.no_grad():
        stepped = logits - 0.5 * logits.grad
    assert prediction_entropy(stepped)[0] > before
    assert F_nn.cross_entropy(stepped[1:], labels[1:]) < retained_ce_before


def test_uncertainty_loss_validation():
    with pytest.raises(ValueError, match="N > 0"):
        uncertainty_loss(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), [1])
    with pytest.raises(ValueError, match="labels"):
        uncertainty_loss(torch.zeros(2, 4), torch.tensor([0, 1, 2]), [1])
    with pytest.raises(ValueError, match="lambda_"):
        uncertainty_loss(torch.zeros(2, 4), torch.tensor([0, 1]), [1], lambda_=-1.0)
    with pytest.raises(ValueError, match="range"):
        uncertainty_loss(torch.zeros(2, 4), torch.tensor([0, 1]), [7])


# --- phase 4: entanglement mixing -------------------------------------------------------------


def test_entanglement_matrix_single_class():
    expected = torch.tensor(
        [
            [1.0, 0.5, 0.0, 0.0],
            [0.5, 1.0, 0.5, 0.5],
            [0.0, 0.5, 1.0, 0.0],
            [0.0, 0.5, 0.0, 1.0],
        ]
    )
    assert torch.equal(entanglement_matrix(4, [1], alpha=0.5), expected)


def test_entanglement_matrix_two_classes_and_protected():
    expected = torch.tensor(
        [
            [1.0, 0.5, 0.5, 0.5],
            [0.5, 1.0, 0.5, 0.5],
            [0.5, 0.5, 1.0, 0.0],
            [0.5, 0.5, 0.0, 1.0],
        ]
    )
    assert torch.equal(entanglement_matrix(4, [0, 1], alpha=0.5), expected)
    protected = torch.tensor(
        [
            [1.0, 0.3, 0.0, 0.0],
            [0.3, 1.0, 0.3, 0.0],
            [0.0, 0.3, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    assert torch.equal(entanglement_matrix(4, [1], 0.3, protected_classes=[3]), protected)
    assert torch.equal(entanglement_matrix(4, [1], alpha=0.0), torch.eye(4))


def test_entanglement_mixing_by_hand(head):
    weight, bias = head
    w_in = weight.clone()
    mixed = entanglement_mixing(weight, [1], alpha=0.5)
    expected = torch.tensor(
        [
            [1.5, 3.0, 4.5],  # r0 + .5 r1
            [10.5, 13.0, 15.5],  # .5 r0 + r1 + .5 r2 + .5 r3
            [7.5, 9.0, 10.5],  # .5 r1 + r2
            [10.5, 12.0, 13.5],  # .5 r1 + r3
        ]
    )
    assert torch.equal(mixed, expected)
    assert torch.equal(weight, w_in)

    mixed_w, mixed_b = entanglement_mixing(weight, [1], alpha=0.5, bias=bias)
    assert torch.equal(mixed_w, expected)
    # b: [1 + .5*2, .5*1 + 2 + .5*3 + .5*4, .5*2 + 3, .5*2 + 4]
    assert torch.equal(mixed_b, torch.tensor([2.0, 6.0, 4.0, 5.0]))


def test_centred_mixing_by_hand(head):
    weight, _ = (
        head  # mean row μ = [4.5, 5.5, 6.5]; centred rows r - μ = [-4.5]*3, [-1.5]*3, [1.5]*3, [4.5]*3
    )
    mixed = entanglement_mixing(weight, [1], alpha=0.5, form="centred")
    centred = torch.tensor([-4.5, -1.5, 1.5, 4.5]).unsqueeze(1).expand(4, 3)
    # the centred rows sum to zero, so the forget row gets (1 - α) of itself: -0.75; row j gets + α·(-1.5)
    expected = torch.tensor([-5.25, -0.75, 0.75, 3.75]).unsqueeze(1) + weight.mean(0)
    assert torch.allclose(mixed, expected)
    assert torch.allclose(
        entanglement_mixing(centred, [1], alpha=0.5, form="centred"),
        entanglement_mixing(centred, [1], alpha=0.5),
    )  # same on a centred head


def test_centred_mixing_is_blind_to_an_offset_that_the_softmax_cannot_see(head):
    weight, _ = head
    offset = torch.tensor([3.0, -2.0, 7.0])  # added to every row: every logit moves by the same amount
    z = torch.randn(5, 3)
    for centre, invariant in ((True, True), (False, False)):
        p = F_nn.softmax(
            z @ entanglement_mixing(weight, [1], 0.5, form="centred" if centre else "paper").T, dim=1
        )
        q = F_nn.softmax(
            z @ entanglement_mixing(weight + offset, [1], 0.5, form="centred" if centre else "paper").T, dim=1
        )
        assert torch.allclose(p, q, atol=1e-5) == invariant


def test_anchored_mixing_by_hand(head):
    weight, bias = (
        head  # active mean row μ = [4.5, 5.5, 6.5]; centred rows [-4.5]*3, [-1.5]*3, [1.5]*3, [4.5]*3
    )
    mixed = entanglement_mixing(weight, [1], alpha=0.25, form="anchored")
    # only the forget row moves: μ + (1 - 2α)·C_1 = μ + 0.5·(-1.5)
    expected = weight.clone()
    expected[1] = weight.mean(0) - 0.75
    assert torch.allclose(mixed, expected)
    assert torch.equal(mixed[[0, 2, 3]], weight[[0, 2, 3]])
    # α = 0.5: the forget row becomes the mean active row
    assert torch.allclose(entanglement_mixing(weight, [1], 0.5, form="anchored")[1], weight.mean(0))
    # protected rows take no part in μ and are anchored again on their own (α = 0.5: to μ);
    # retained rows stay bit-identical; the bias follows the same rule
    w, b = entanglement_mixing(weight, [1], 0.5, protected_classes=[3], bias=bias, form="anchored")
    assert torch.allclose(w[1], weight[:3].mean(0)) and torch.allclose(w[3], weight[:3].mean(0))
    assert torch.equal(w[[0, 2]], weight[[0, 2]])
    assert b[1] == pytest.approx(bias[:3].mean().item()) and b[3] == pytest.approx(bias[:3].mean().item())
    assert torch.equal(b[[0, 2]], bias[[0, 2]])
    # α = 0.25: a protected row keeps half of its centred self, never anything of the forget row
    w = entanglement_mixing(weight, [1], 0.25, protected_classes=[3], form="anchored")
    assert torch.allclose(w[3], weight[:3].mean(0) + 0.5 * (weight[3] - weight[:3].mean(0)))
    other = weight.clone()
    other[1] += 100.0  # a different forget row moves μ, and only through μ
    w_other = entanglement_mixing(other, [1], 0.25, protected_classes=[3], form="anchored")
    assert torch.allclose(w_other[3] - w[3], 0.5 * (other[:3].mean(0) - weight[:3].mean(0)))


@pytest.mark.parametrize("forget", [[1], [0, 2]])
def test_anchored_predicts_as_centred_among_the_active_classes_without_moving_the_others(forget):
    torch.manual_seed(0)
    weight, z = torch.randn(7, 5), torch.randn(30, 5)
    active = [c for c in range(6)]  # class 6 protected
    a = entanglement_mixing(weight, forget, 0.3, protected_classes=[6], form="anchored")
    c = entanglement_mixing(weight[:6], forget, 0.3, form="centred")  # centred over the active rows
    # one vector added to every active row: the same softmax over the active classes
    assert torch.allclose(F_nn.softmax(z @ a[active].T, 1), F_nn.softmax(z @ c.T, 1), atol=1e-5)
    kept = [r for r in range(6) if r not in forget]  # the retained rows (6 is protected)
    assert torch.equal(a[kept], weight[kept])
    offset = torch.randn(5)  # blind to the softmax-invisible offset, like centred
    shifted = entanglement_mixing(weight + offset, forget, 0.3, protected_classes=[6], form="anchored")
    assert torch.allclose(shifted - offset, a, atol=1e-5)


def test_an_unknown_mixing_form_is_refused(head):
    with pytest.raises(ValueError, match="form must be one of paper, centred, anchored"):
        entanglement_mixing(head[0], [1], form="centered")


def test_entanglement_mixing_protected_rows_and_columns(head):
    weight, bias = head
    mixed_w, mixed_b = entanglement_mixing(weight, [1], 0.5, protected_classes=[3], bias=bias)
    expected = torch.tensor(
        [
            [1.5, 3.0, 4.5],
            [6.0, 8.0, 10.0],  # .5 r0 + r1 + .5 r2, nothing from the protected row 3
            [7.5, 9.0, 10.5],
            [9.0, 10.0, 11.0],  # protected row unchanged
        ]
    )
    assert torch.equal(mixed_w, expected)
    assert torch.equal(mixed_b, torch.tensor([2.0, 4.0, 4.0, 4.0]))  # b1 = .5*1 + 2 + .5*3

    # the protected row gives nothing: changing it leaves every other row as it was
    other = weight.clone()
    other[3] = torch.tensor([-100.0, 55.0, 7.0])
    mixed_other = entanglement_mixing(other, [1], 0.5, protected_classes=[3])
    assert torch.equal(mixed_other[:3], expected[:3])
    assert torch.equal(mixed_other[3], other[3])


def _forget_request(weight, bias, forget, protected, alpha=0.5):
    weight, bias = destructive_interference(weight, bias, forget)
    return entanglement_mixing(weight, forget, alpha, protected_classes=protected, bias=bias)


def test_sequential_requests_leave_earlier_rows_bit_identical():
    torch.manual_seed(0)
    weight, bias = torch.randn(10, 8), torch.randn(10)
    requests = [[2], [5, 7], [0]]
    forgotten: list[int] = []
    snapshots: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for forget in requests:
        weight, bias = _forget_request(weight, bias, forget, protected=forgotten)
        for earlier, (row, b) in snapshots.items():
            assert torch.equal(weight[earlier], row), f"row {earlier} changed by request {forget}"
            assert torch.equal(bias[earlier], b)
        for f in forget:
            snapshots[f] = (weight[f].clone(), bias[f].clone())
        forgotten += forget
    assert sorted(snapshots) == [0, 2, 5, 7]

    # without protection the earlier rows would be mixed again (what the protection prevents)
    torch.manual_seed(0)
    weight, bias = torch.randn(10, 8), torch.randn(10)
    weight, bias = _forget_request(weight, bias, [2], protected=[])
    row2 = weight[2].clone()
    weight, bias = _forget_request(weight, bias, [5, 7], protected=[])
    assert not torch.equal(weight[2], row2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"forget_classes": [4]}, "class 4 is out of range"),
        ({"forget_classes": [-1]}, "class -1 is out of range"),
        ({"forget_classes": []}, "empty"),
        ({"forget_classes": [0, 1, 2, 3]}, "all 4 classes"),
        ({"forget_classes": [1], "alpha": -0.1}, "alpha"),
        ({"forget_classes": [1], "alpha": 1.5}, "alpha"),
        ({"forget_classes": [1], "alpha": float("nan")}, "alpha"),
        ({"forget_classes": [1], "protected_classes": [1, 2]}, "both forget and protected"),
        ({"forget_classes": [1], "protected_classes": [0, 2, 3]}, "cover every class"),
        ({"forget_classes": [1], "protected_classes": [9]}, "out of range"),
    ],
)
def test_entanglement_errors(head, kwargs, match):
    with pytest.raises(ValueError, match=match):
        entanglement_mixing(head[0], **kwargs)
    with pytest.raises(ValueError, match=match):
        entanglement_matrix(4, **kwargs)


def test_phase_input_errors(head):
    weight, bias = head
    with pytest.raises(ValueError, match="out of range"):
        destructive_interference(weight, bias, [4])
    with pytest.raises(ValueError, match="empty"):
        destructive_interference(weight, bias, [])
    with pytest.raises(ValueError, match="all 4 classes"):
        destructive_interference(weight, bias, [0, 1, 2, 3])
    with pytest.raises(TypeError, match="ints"):
        destructive_interference(weight, bias, [1.5])
    with pytest.raises(ValueError, match="2-D"):
        destructive_interference(weight[0], None, [1])
    with pytest.raises(ValueError, match="bias"):
        destructive_interference(weight, bias[:3], [1])
    with pytest.raises(ValueError, match="bias"):
        entanglement_mixing(weight, [1], bias=bias[:3])
