"""Feature erasure: qpae's backbone-level complement to QPAudioEraser (not in the paper).

Phases 1 and 4 edit only the head, so the penultimate features of a forgotten speaker stay
where the original model put them, and a linear probe given three of their clips re-identifies
them (issue 5's audit: 0.96 on FSDD, retrain 0.105). A model retrained without the speaker
maps their clips into the clusters of similar-sounding retained speakers. This term asks the
backbone for the same: each forget sample's features are pulled towards the centroid of the
retained class the model itself now ranks first for it, so nothing in the feature space is
left that singles the speaker out. Centroids come from the model's own retained training
features at fit start and are held fixed (targets carry no gradient).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def class_centroids(features: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Mean feature vector per class, ``[num_classes, d]``; classes without samples are NaN."""
    sums = features.new_zeros(num_classes, features.shape[1]).index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=num_classes).to(features.dtype)
    return sums / counts.unsqueeze(1)  # 0/0 → NaN marks an absent class


def erasure_targets(logits: Tensor, centroids: Tensor, forgotten: Sequence[int]) -> Tensor:
    """For each sample, the centroid of the class it is ranked highest among the retained ones.

    Forgotten classes and classes without a centroid are never targets.
    """
    excluded = centroids.isnan().any(1)
    excluded[list(forgotten)] = True
    if bool(excluded.all()):
        raise ValueError("feature erasure needs at least one retained class with a centroid")
    nearest = logits.detach().masked_fill(excluded.to(logits.device), float("-inf")).argmax(1)
    return centroids[nearest]


def feature_erasure_loss(
    features: Tensor, logits: Tensor, labels: Tensor, centroids: Tensor, forgotten: Sequence[int]
) -> Tensor:
    """Mean over the batch's forget samples of ‖z − c‖² / ‖c‖² (0 if the batch has none).

    ``z`` is a forget sample's feature vector and ``c`` its target centroid
    (:func:`erasure_targets`), normalised by the centroid's squared norm so that the weight of
    the term does not depend on the backbone's feature scale.
    """
    is_forget = torch.isin(labels, torch.tensor(list(forgotten), device=labels.device))
    if not bool(is_forget.any()):
        return features.new_zeros(())
    z = features[is_forget]
    target = erasure_targets(logits[is_forget], centroids, forgotten).to(z)
    return ((z - target).pow(2).sum(1) / target.pow(2).sum(1).clamp_min(1e-12)).mean()
