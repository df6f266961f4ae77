"""Feature erasure (qpae's option to QPAudioEraser): its targets and loss on hand-sized tensors,
and what it does to a trained network's forget features."""

import pytest
import torch

from qpae.unlearning.feature_erasure import class_centroids, erasure_targets, feature_erasure_loss


def test_class_centroids_average_each_class_and_mark_absent_ones():
    feats = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]])
    labels = torch.tensor([0, 0, 2])
    c = class_centroids(feats, labels, num_classes=4)
    assert c[0].tolist() == [2.0, 1.0] and c[2].tolist() == [0.0, 4.0]
    assert c[1].isnan().all() and c[3].isnan().all()


def test_targets_are_the_top_ranked_retained_class_never_a_forgotten_or_absent_one():
    centroids = torch.tensor([[1.0, 0.0], [0.0, 1.0], [float("nan")] * 2, [2.0, 2.0]])
    logits = torch.tensor(
        [
            [9.0, 1.0, 8.0, 0.0],  # forgotten 0 first, absent 2 next → 1
            [9.0, 0.0, 1.0, 3.0],
        ]
    )  # → 3
    t = erasure_targets(logits, centroids, forgotten=[0])
    assert t.tolist() == [[0.0, 1.0], [2.0, 2.0]]
    with pytest.raises(ValueError, match="at least one retained class"):
        erasure_targets(logits, centroids[:1], forgotten=[0])


def test_loss_is_the_normalised_squared_distance_over_forget_samples_only():
    centroids = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    feats = torch.tensor([[1.0, 0.0], [0.0, 3.0], [5.0, 5.0]], requires_grad=True)
    logits = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])  # the third sample is retained: no term
    loss = feature_erasure_loss(feats, logits, labels, centroids, forgotten=[0])
    # sample 1 → centroid 1: |(1,0)-(2,0)|²/4 = 0.25; sample 2 → centroid 2: |(0,3)-(0,1)|²/1 = 4
    assert loss.item() == pytest.approx((0.25 + 4.0) / 2)
    loss.backward()
    assert feats.grad[2].abs().sum() == 0  # retained features are left to the cross-entropy
    none = feature_erasure_loss(feats[2:], logits[2:], labels[2:], centroids, forgotten=[0])
    assert none.item() == 0.0
