"""QPAudioEraser's hooks on real networks: only the head rows they should touch change."""

import pytest
import torch

from qpae.models.factory import classifier_head, create_model
from qpae.unlearning.methods.qpae import QPAudioEraser
from qpae.unlearning.request import ClassSelection, ForgetRequest, plan_requests


def snapshot(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def changed(before, net):
    return sorted(k for k, v in net.state_dict().items() if not torch.equal(v, before[k]))


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny_patch16_224", "qpae_small_cnn"])
def test_phase1_changes_only_the_forget_row_of_the_real_head(name):
    torch.manual_seed(0)
    net = create_model(name, num_classes=5, img_size=(64, 101))
    head = classifier_head(net)
    with torch.no_grad():
        head.bias.normal_()  # timm's ViT starts with a zero bias, whose negation is invisible
    before = snapshot(net)
    w0, b0 = head.weight.detach().clone(), head.bias.detach().clone()
    QPAudioEraser().on_fit_start(net, ForgetRequest((2,), 5))
    head_names = {n for n, p in net.named_parameters() if p is head.weight or p is head.bias}
    assert set(changed(before, net)) == head_names
    rows = (head.weight != w0).any(dim=1).nonzero().flatten().tolist()
    assert rows == [2]  # a row, not the column W[:, 2] that a public implementation scales
    assert torch.allclose(head.weight[2], -w0[2] / 2**0.5)
    assert head.bias[2] == -b0[2] and torch.equal(head.bias[[0, 1, 3, 4]], b0[[0, 1, 3, 4]])


def test_phase4_mixes_the_head_and_spares_earlier_forgotten_rows():
    torch.manual_seed(0)
    net = create_model("qpae_small_cnn", num_classes=6)
    head = classifier_head(net)
    w0, b0 = head.weight.detach().clone(), head.bias.detach().clone()
    request = ForgetRequest((3,), 6, previously_forgotten=(1,))
    QPAudioEraser(alpha=0.5, mixing_form="paper").on_fit_end(net, request)
    assert torch.equal(head.weight[1], w0[1]) and torch.equal(head.bias, b0)  # bias not mixed
    expected_row3 = w0[3] + 0.5 * (w0[0] + w0[2] + w0[4] + w0[5])
    assert torch.allclose(head.weight[3], expected_row3, atol=1e-6)
    assert torch.allclose(head.weight[0], w0[0] + 0.5 * w0[3], atol=1e-6)

    # qpae's default, anchored: the forget row and the earlier-forgotten row 1 go to the mean of
    # the active rows (α = 0.5), the retained rows do not move
    with torch.no_grad():
        head.weight.copy_(w0)
    QPAudioEraser(alpha=0.5).on_fit_end(net, request)
    mean = w0[[0, 2, 3, 4, 5]].mean(0)
    assert torch.allclose(head.weight[3], mean, atol=1e-6) and torch.allclose(head.weight[1], mean, atol=1e-6)
    assert torch.equal(head.weight[[0, 2, 4, 5]], w0[[0, 2, 4, 5]]) and torch.equal(head.bias, b0)


def test_ablation_switches_turn_phases_off():
    net = create_model("qpae_small_cnn", num_classes=4)
    before = snapshot(net)
    method = QPAudioEraser(weight_transform=False, mixing=False)
    method.on_fit_start(net, ForgetRequest((0,), 4))
    method.on_fit_end(net, ForgetRequest((0,), 4))
    assert changed(before, net) == []


def test_uncertainty_switch_drops_only_the_entropy_term():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1])
    request = ForgetRequest((0,), 4)
    full = QPAudioEraser(lambda_rule="fixed").loss(logits, labels, request)
    plain = QPAudioEraser(uncertainty=False).loss(logits, labels, request)
    p = torch.softmax(logits[0], 0)
    entropy = -(p * p.log()).sum()
    assert torch.allclose(plain - full, entropy / 2)  # λ·H on the one forget sample, batch mean


def test_request_validation():
    with pytest.raises(ValueError, match="out of range"):
        ForgetRequest((6,), 6)
    with pytest.raises(ValueError, match="every class"):
        ForgetRequest((0, 1), 3, previously_forgotten=(2,))
    with pytest.raises(ValueError, match="already forgotten"):
        ForgetRequest((1,), 3, previously_forgotten=(1,))
    with pytest.raises(ValueError, match="empty"):
        ForgetRequest((), 3)
    # names and indices are resolved by qpae.unlearning.request (tests/unlearning/test_request.py)
    [named] = plan_requests([ClassSelection(names=("theo", "george"))], ["george", "jackson", "theo"])
    assert named.forget_classes == (0, 2)
    with pytest.raises(ValueError, match="unknown class 'bob'"):
        plan_requests([ClassSelection(names=("bob",))], ["george", "theo"])
