"""The baselines: their math on hand-sized examples, and every method through qpae-unlearn."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qpae.checkpoints import load_model
from qpae.models.factory import classifier_head, create_model
from qpae.pipeline.unlearn import unlearn
from qpae.unlearning.methods.base import split_cross_entropy
from qpae.unlearning.methods.fisher import FisherForgetting, fisher_diagonal, posterior_variance
from qpae.unlearning.methods.ssd import dampen, importances
from qpae.unlearning.request import ForgetRequest

from conftest import SYNTHETIC_8


def test_ssd_dampens_only_parameters_specialised_on_the_forget_set():
    param = torch.tensor([2.0, 2.0, 2.0, 2.0])
    i_all = torch.tensor([1.0, 1.0, 1.0, 0.0])
    i_forget = torch.tensor([5.0, 20.0, 0.5, 0.0])
    out = dampen(param, i_all, i_forget, alpha=10.0, lambda_=1.0)
    # only index 1 has I_f > 10·I_D; β = min(1·1/20, 1) = 0.05
    assert out.tolist() == pytest.approx([2.0, 0.1, 2.0, 2.0])


def test_ssd_importance_is_the_mean_squared_gradient_of_the_batch_mean_loss():
    torch.manual_seed(0)
    net = nn.Linear(3, 2, bias=False)
    batches = [(torch.randn(4, 3), torch.randint(0, 2, (4,))) for _ in range(2)]
    expected = torch.zeros(2, 3)
    for x, y in batches:
        g = torch.autograd.grad(F.cross_entropy(net(x), y), net.weight)[0]
        expected += g**2 / 2
    assert torch.allclose(importances(net, batches)["weight"], expected)


def test_fisher_diagonal_matches_the_per_sample_loop_of_the_authors_code():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(5, 3), torch.randint(0, 3, (5,))
    expected = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    for i in range(5):  # Golatkar et al.: batch size 1, every class weighted by its probability
        out = net(x[i : i + 1])
        prob = F.softmax(out, dim=1)[0].detach()
        for k in range(3):
            grads = torch.autograd.grad(
                F.cross_entropy(out, torch.tensor([k])), list(net.parameters()), retain_graph=True
            )
            for (n, _), g in zip(net.named_parameters(), grads, strict=True):
                expected[n] += prob[k] * g**2 / 5
    got = fisher_diagonal(net, [(x[:3], y[:3]), (x[3:], y[3:])], num_classes=3)
    for n in expected:
        assert torch.allclose(got[n], expected[n], atol=1e-6), n


def test_fisher_variance_averages_a_conv_weight_over_input_channels_only():
    # Golatkar et al.'s get_mean_var: var.mean(dim=1, keepdim=True) — for a conv weight
    # [out, in, kh, kw] the mean over input channels; kernel positions keep their own variance
    inverse = torch.tensor(  # 1 / F, chosen by hand: out=2, in=3, kh=1, kw=2
        [
            [[[1.0, 10.0]], [[2.0, 20.0]], [[3.0, 30.0]]],
            [[[4.0, 40.0]], [[5.0, 50.0]], [[6.0, 60.0]]],
        ]
    )
    var = posterior_variance(1.0 / inverse, alpha=2.0, is_head=False)
    expected = 2.0 * torch.tensor([[[[2.0, 20.0]]], [[[5.0, 50.0]]]]).expand(2, 3, 1, 2)
    assert torch.allclose(var, expected, rtol=1e-5)
    # the mean over every non-output dimension would give one value per output channel
    assert not torch.allclose(var[:, :, :, 0], var[:, :, :, 1])
    # clamped before averaging: 1/F = 1e5 counts as 1e3 (1e2 in the head)
    flat = posterior_variance(torch.tensor([[1e-5, 1.0]]), alpha=1.0, is_head=False)
    assert torch.allclose(flat, torch.full((1, 2), (1e3 + 1.0) / 2), rtol=1e-5)


def test_fisher_variance_of_the_head_and_of_1d_parameters():
    inverse = torch.tensor([[1.0, 3.0], [200.0, 400.0], [5.0, 7.0]])  # head [K=3, in=2]
    var = posterior_variance(1.0 / inverse, alpha=1.0, is_head=True, forget_rows=[1])
    # row 1 is a forget row: 1e-4, then ×10 like the whole head
    assert torch.allclose(var, torch.tensor([[20.0, 20.0], [1e-3, 1e-3], [60.0, 60.0]]), rtol=1e-5)
    clamped = posterior_variance(1.0 / inverse, alpha=1.0, is_head=True)
    assert torch.allclose(clamped[1], torch.tensor([1e3, 1e3]), rtol=1e-5)  # 1e2 cap, ×10
    bias = posterior_variance(1.0 / torch.tensor([1.0, 4.0]), alpha=0.5, is_head=False)
    assert torch.allclose(bias, torch.tensor([5.0, 20.0]), rtol=1e-5)  # not averaged, ×10


def test_fisher_forgetting_zeroes_the_forget_row_of_the_named_head():
    torch.manual_seed(0)
    net = create_model("qpae_small_cnn", num_classes=4)
    head = classifier_head(net)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}

    class Data:  # the retained training batches the method reads
        def retain(self, batch_size=None):
            return iter([(torch.randn(6, 1, 32, 32), torch.tensor([1, 2, 3, 1, 2, 3]))])

    FisherForgetting(alpha=1e-6).on_fit_start(net, ForgetRequest((0,), 4), Data())
    # μ = 0, σ² = 1e-4·10 for the forget row: |w| of order 0.03, far below the trained scale
    assert head.weight[0].abs().max() < 0.2 and head.weight[0].abs().mean() < 0.05
    assert not torch.allclose(head.weight[0], before["head.weight"][0])
    moved = (head.weight[1:] - before["head.weight"][1:]).abs().mean()
    assert 0 < moved < 0.5  # retained rows: the original plus noise


def test_split_cross_entropy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    retain, forget = split_cross_entropy(logits, labels, (1,))
    assert retain == pytest.approx(F.cross_entropy(logits[:1], labels[:1]).item())
    assert forget == pytest.approx(F.cross_entropy(logits[1:], labels[1:]).item())
    _, none = split_cross_entropy(logits[:1], labels[:1], (1,))
    assert none == 0


METHODS = {
    "qpae": ["unlearn.epochs=2"],
    "qpae_features": ["unlearn.epochs=2"],
    "qpae_centred": ["unlearn.epochs=2"],
    "qpae_plus": ["unlearn.epochs=2"],
    "qpae_paper": ["unlearn.epochs=2"],
    "retrain": ["unlearn.epochs=8"],
    "finetune": ["unlearn.epochs=2"],
    "gradient_ascent": ["unlearn.epochs=2"],
    "negative_gradient": [],
    "ssd": [],
    "fisher": [],
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_through_the_same_interface(make_config, pretrained, tmp_path, method):
    cfg = make_config(
        "unlearn",
        *SYNTHETIC_8,
        f"input={pretrained}",
        "forget_index=[2]",
        f"method={method}",
        *METHODS[method],
    )
    [report] = unlearn(cfg)
    _, original_meta = load_model(pretrained)
    # "before" always measures the original model, also for retrain (which starts afresh)
    assert report["before"]["RA"] == pytest.approx(100 * original_meta["test_metrics"]["test/acc"], abs=15)
    state, meta = load_model(tmp_path / "run" / "request-01" / "model.pt")
    assert meta["unlearned_by"]["name"] == ("qpae" if method.startswith("qpae") else method)
    assert meta["forgotten_classes"] == [2]
    assert meta["unlearned_by"].get("feature_erasure", False) == (method in ("qpae_features", "qpae_plus"))
    forms = {"qpae_centred": "centred", "qpae_paper": "paper"}
    assert meta["unlearned_by"].get("mixing_form") == (
        forms.get(method, "anchored") if method.startswith("qpae") else None
    )
    if method == "retrain":
        assert report["after"]["FA"] == 0.0 and report["after"]["RA"] > 50
        original, _ = load_model(pretrained)
        w0, w1 = original["head.weight"].flatten(), state["head.weight"].flatten()
        assert torch.corrcoef(torch.stack([w0, w1]))[0, 1].abs() < 0.5  # not a fine-tuned copy


def test_retrain_takes_the_recipe_and_an_override_keeps_the_schedules_shape():
    from qpae.unlearning.methods.retrain import Retrain

    recipe = {
        "optimizer": {"name": "AdamW", "lr": 1e-3, "weight_decay": 1e-4},
        "scheduler": {"name": "CosineAnnealingLR", "T_max": 50},
        "epochs": 12,
        "label_smoothing": 0.1,
    }
    method = Retrain()
    method.adopt_recipe(recipe)
    assert (method.epochs, method.scheduler["T_max"], method.label_smoothing) == (12, 50, 0.1)
    shorter = Retrain(epochs=5, lr=3e-4)
    shorter.adopt_recipe(recipe)
    assert shorter.epochs == shorter.scheduler["T_max"] == 5
    assert shorter.optimizer_settings == {"lr": 3e-4, "weight_decay": 1e-4}
    with pytest.raises(ValueError, match="records none"):
        Retrain().adopt_recipe(None)
    with pytest.raises(ValueError, match="not one of"):
        Retrain().adopt_recipe({**recipe, "optimizer": {"name": "os.system"}})
