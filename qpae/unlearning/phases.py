"""The four phases of QPAudioEraser (arXiv 2507.22208) as small pure functions on tensors.

Notation: a classifier head with weight ``W`` of shape ``[K, d]`` and bias ``b`` of shape ``[K]``,
forget classes ``F`` (a non-empty sequence of class indices, duplicates ignored).

1. :func:`destructive_interference` -- flip and damp the rows of ``F``:
   ``W[f] <- cos(phi)/sqrt(2) * W[f]``, ``b[f] <- cos(phi) * b[f]``.
2. :func:`superposition_targets` -- one-hot targets for retained samples, uniform ``1/K`` for
   forget samples.
3. :func:`uncertainty_loss` -- cross-entropy to those targets minus ``lambda * H(p)`` on forget
   samples.
4. :func:`entanglement_mixing` -- ``W <- M W`` with ``M = I`` plus ``alpha`` couplings between each
   forget class and every other (non-protected) class; ``form`` chooses the paper's mixing or
   qpae's centred / anchored forms (see :data:`MIXING_FORMS`).

No function mutates its inputs; every result is a new tensor, built out of place so autograd can
flow through it if the caller wants that.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from typing import overload

import torch
import torch.nn.functional as F_nn
from torch import Tensor

__all__ = [
    "MIXING_FORMS",
    "destructive_interference",
    "entanglement_matrix",
    "entanglement_mixing",
    "prediction_entropy",
    "superposition_targets",
    "uncertainty_loss",
]


MIXING_FORMS = ("paper", "centred", "anchored")
"""Phase 4's forms: ``paper`` is ``W <- M W`` as published; ``centred`` mixes ``W - 1μᵀ``; ``anchored``
mixes like ``centred`` and then removes the common shift ``M`` gives every active row, so that
retained rows never move (qpae's default: the one that holds over a sequence of requests)."""


def _class_list(classes: Iterable[int], num_classes: int, name: str) -> list[int]:
    """Validate class indices against ``[0, num_classes)``; return them sorted and deduplicated."""
    if isinstance(classes, Tensor):
        classes = classes.flatten().tolist()
    out: set[int] = set()
    for c in classes:
        try:
            idx = operator.index(c)
        except TypeError:
            raise TypeError(f"{name} must contain ints, got {c!r} ({type(c).__name__})") from None
        if not 0 <= idx < num_classes:
            raise ValueError(f"{name}: class {idx} is out of range for {num_classes} classes")
        out.add(idx)
    return sorted(out)


def _forget_list(forget_classes: Iterable[int], num_classes: int) -> list[int]:
    """Validate a forget set: non-empty, in range, and leaving at least one class retained."""
    forget = _class_list(forget_classes, num_classes, "forget_classes")
    if not forget:
        raise ValueError("forget_classes is empty: there is nothing to forget")
    if len(forget) >= num_classes:
        raise ValueError(f"forget_classes covers all {num_classes} classes: nothing would remain")
    return forget


def _mixing_classes(
    num_classes: int, forget_classes: Iterable[int], protected_classes: Iterable[int]
) -> tuple[list[int], list[int]]:
    """Validate the forget and protected sets of a mixing step; return them as sorted lists."""
    forget = _forget_list(forget_classes, num_classes)
    protected = _class_list(protected_classes, num_classes, "protected_classes")
    overlap = sorted(set(forget) & set(protected))
    if overlap:
        raise ValueError(f"classes {overlap} are both forget and protected")
    if len(forget) + len(protected) >= num_classes:
        raise ValueError("forget_classes and protected_classes together cover every class")
    return forget, protected


def check_phi(phi: float) -> float:
    """Phase 1's phase: any finite number."""
    if not math.isfinite(phi):
        raise ValueError(f"phi must be finite, got {phi}")
    return phi


def check_lambda(lambda_: float) -> float:
    """Phase 3's entropy weight: finite and >= 0."""
    if not (math.isfinite(lambda_) and lambda_ >= 0):
        raise ValueError(f"lambda_ must be finite and >= 0, got {lambda_}")
    return lambda_


def check_alpha(alpha: float) -> float:
    """Phase 4's coupling: in [0, 1] (NaN is refused)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return alpha


def _check_head(weight: Tensor, bias: Tensor | None) -> None:
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D [K, d], got shape {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")


def destructive_interference(
    weight: Tensor, bias: Tensor | None, forget_classes: Sequence[int], phi: float = math.pi
) -> tuple[Tensor, Tensor | None]:
    """Phase 1, destructive interference on the rows of the forget classes.

    For each ``f`` in ``F``::

        W[f, :] <- cos(phi) / sqrt(2) * W[f, :]
        b[f]    <- cos(phi) * b[f]

    Only the rows (and bias entries) of ``F`` change; with the default ``phi = pi`` the row becomes
    ``-W[f] / sqrt(2)`` and the bias ``-b[f]``. ``bias`` may be ``None`` (returned as ``None``).
    """
    _check_head(weight, bias)
    check_phi(phi)
    forget = _forget_list(forget_classes, weight.shape[0])
    mask = torch.zeros(weight.shape[0], dtype=torch.bool, device=weight.device)
    mask[forget] = True
    one = weight.new_ones(())
    w_scale = torch.where(mask, one * (math.cos(phi) / math.sqrt(2.0)), one)
    new_weight = weight * w_scale.unsqueeze(1)
    if bias is None:
        return new_weight, None
    b_scale = torch.where(mask, bias.new_ones(()) * math.cos(phi), bias.new_ones(()))
    return new_weight, bias * b_scale


def superposition_targets(labels: Tensor, forget_classes: Sequence[int], num_classes: int) -> Tensor:
    """Phase 2, superposition targets ``T`` of shape ``[N, K]``.

    ``T[i] = onehot(y_i)`` if ``y_i`` is retained, ``T[i] = (1/K, ..., 1/K)`` if ``y_i`` is in ``F``.
    The dtype is the default float dtype; the device is that of ``labels``.
    """
    if labels.dim() != 1 or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}")
    forget = _forget_list(forget_classes, num_classes)
    low, high = (int(labels.min()), int(labels.max())) if labels.numel() else (0, 0)
    if low < 0 or high >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{low}, {high}]")
    is_forget = torch.isin(labels, torch.tensor(forget, device=labels.device))
    one_hot = F_nn.one_hot(labels.long(), num_classes).to(torch.get_default_dtype())
    uniform = torch.full_like(one_hot, 1.0 / num_classes)
    return torch.where(is_forget.unsqueeze(1), uniform, one_hot)


def prediction_entropy(logits: Tensor) -> Tensor:
    """Entropy of the predictive distribution per sample, in nats: ``H(p) = -sum_k p_k log p_k``.

    ``p = softmax(logits)`` over the last dimension, computed via ``log_softmax`` for stability.
    Returns a tensor of shape ``logits.shape[:-1]``.
    """
    log_p = F_nn.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def uncertainty_loss(
    logits: Tensor, labels: Tensor, forget_classes: Sequence[int], lambda_: float = 1.0
) -> Tensor:
    """Phase 3, the uncertainty loss to be minimised (a scalar).

    With ``T`` from :func:`superposition_targets` and ``log p = log_softmax(logits)``::

        l_i = -sum_k T[i, k] log p[i, k]                 if y_i is retained (plain cross-entropy)
        l_i = -1/K sum_k log p[i, k] - lambda * H(p_i)   if y_i is in F
        L   = mean_i l_i                                 (over all N samples of the batch)

    Minimising ``L`` maximises the entropy of the predictions on forget samples. Batches without
    forget samples, or without retained samples, are fine; an empty batch is an error.
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1] or logits.shape[0] == 0:
        shapes = f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        raise ValueError(f"need logits [N, K] and labels [N] with N > 0, got {shapes}")
    check_lambda(lambda_)
    targets = superposition_targets(labels, forget_classes, logits.shape[1]).to(logits.dtype)
    log_p = F_nn.log_softmax(logits, dim=1)
    cross_entropy = -(targets * log_p).sum(dim=1)
    forget = torch.tensor(_forget_list(forget_classes, logits.shape[1]), device=labels.device)
    is_forget = torch.isin(labels, forget).to(logits.dtype)
    entropy = -(log_p.exp() * log_p).sum(dim=1)
    return (cross_entropy - lambda_ * is_forget * entropy).mean()


def entanglement_matrix(
    num_classes: int,
    forget_classes: Sequence[int],
    alpha: float = 0.5,
    protected_classes: Sequence[int] = (),
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Phase 4 mixing matrix ``M`` of shape ``[K, K]``.

    ``M = I``; then for each ``f`` in ``F`` and each ``j != f`` with ``j`` not protected::

        M[f, j] = M[j, f] = alpha

    Rows and columns of ``protected_classes`` (classes forgotten in earlier requests) stay those of
    the identity: they neither receive from nor give to the mix. Forget classes couple with each
    other too. Raises ``ValueError`` on ``alpha`` outside ``[0, 1]`` and on invalid class sets.
    """
    check_alpha(alpha)
    forget, protected = _mixing_classes(num_classes, forget_classes, protected_classes)
    eye = torch.eye(num_classes, dtype=torch.bool, device=device)
    is_forget, active = eye.new_zeros(num_classes), eye.new_ones(num_classes)
    is_forget[forget] = True
    active[protected] = False
    coupled = (is_forget[:, None] | is_forget[None, :]) & active[:, None] & active[None, :] & ~eye
    identity = torch.eye(num_classes, dtype=dtype, device=device)
    return torch.where(coupled, torch.full_like(identity, alpha), identity)


@overload
def entanglement_mixing(
    weight: Tensor,
    forget_classes: Sequence[int],
    alpha: float = ...,
    protected_classes: Sequence[int] = ...,
    bias: None = ...,
    form: str = ...,
) -> Tensor: ...
@overload
def entanglement_mixing(
    weight: Tensor,
    forget_classes: Sequence[int],
    alpha: float = ...,
    protected_classes: Sequence[int] = ...,
    *,
    bias: Tensor,
    form: str = ...,
) -> tuple[Tensor, Tensor]: ...


def entanglement_mixing(
    weight: Tensor,
    forget_classes: Sequence[int],
    alpha: float = 0.5,
    protected_classes: Sequence[int] = (),
    bias: Tensor | None = None,
    form: str = "paper",
) -> Tensor | tuple[Tensor, Tensor]:
    """Phase 4, entanglement mixing of the head: ``W <- M W`` (and ``b <- M b`` if ``bias`` given).

    ``M`` is :func:`entanglement_matrix`. Returns the new weight, or ``(weight, bias)`` when a bias
    is passed; the caller decides whether the bias takes part. Under ``paper`` and ``centred``, rows
    of ``protected_classes`` are copied from the input, so they are bit-identical even under
    reduced-precision matmuls (TF32); ``anchored`` anchors them again (below).
    Write ``A`` for the active (not protected) rows, ``n = |A|``.

    ``form="paper"``: ``W_A <- M W_A`` as published. Adding one vector ``v`` to every row leaves the
    softmax unchanged, but ``M`` turns it into ``(1 + α(n−1))·v`` on a forget row: the forget logit
    gains ``α·Σ_{j∈A, j≠f} z_j``, a push that grows with ``n`` (about −40 logits on 40 speakers)
    and flips sign with the logits' common level. Every retained row also gains ``α·W_f``: the
    same for all of them, so invisible among the active classes, but it moves them all against
    the protected rows, which ``M`` leaves alone.

    ``form="centred"`` (qpae's option, not the paper's): mixes ``W − 1μᵀ`` (``μ`` the mean row) and
    adds ``μ`` back, so the result no longer depends on that invisible offset; with one forget
    class and no protected rows the forget row becomes ``(1−α)`` times its centred self.

    ``form="anchored"`` (qpae's default, not the paper's): as ``centred`` with ``μ`` the mean of the
    active rows ``C = W_A − 1μᵀ``, then subtracts from every active row the common shift
    ``s = α·Σ_{g∈F} C_g`` that ``M`` gave each retained row. The predictions among the active
    classes are exactly those of ``centred`` (one vector added to every active row), but retained
    rows stay bit-identical and only the forget rows move:
    ``W_f <- μ + (1−α)·C_f − α·Σ_{g∈F} C_g`` (one forget class: ``μ + (1−2α)·C_f``; at α = 0.5 the
    mean active row). Each protected row ``p`` is anchored again the same way, on its own:
    ``W_p <- μ + (1−2α)·(W_p − μ)`` — never mixed with another row, so nothing of the new class
    reaches it, but the training of later requests (whose uniform targets pull every forgotten
    class's logit up to the others' level on its own clips) cannot lift it above the retained
    classes. Over a sequence of requests nothing accumulates in the retained rows (see the README).
    With ``paper`` and ``centred``, protected rows are copied from the input.
    """
    _check_head(weight, bias)
    if form not in MIXING_FORMS:
        raise ValueError(f"form must be one of {', '.join(MIXING_FORMS)}; got {form!r}")
    matrix = entanglement_matrix(
        weight.shape[0],
        forget_classes,
        alpha,
        protected_classes,
        dtype=weight.dtype,
        device=weight.device,
    )
    keep = torch.zeros(weight.shape[0], dtype=torch.bool, device=weight.device)
    keep[_class_list(protected_classes, weight.shape[0], "protected_classes")] = True
    is_forget = torch.zeros_like(keep)
    is_forget[_forget_list(forget_classes, weight.shape[0])] = True
    new_weight = _mix(matrix, weight, form, keep, is_forget, alpha)
    if bias is None:
        return new_weight
    return new_weight, _mix(matrix.to(bias.dtype), bias, form, keep, is_forget, alpha)


def _mix(matrix: Tensor, x: Tensor, form: str, keep: Tensor, is_forget: Tensor, alpha: float) -> Tensor:
    """One of :data:`MIXING_FORMS` on ``x`` ([K, d] rows or a [K] bias); protected rows copied
    (``paper``, ``centred``) or anchored again (``anchored``)."""
    rows = keep.view(-1, *([1] * (x.dim() - 1)))
    if form == "paper":
        mixed = matrix @ x
    elif form == "centred":
        mean = x.mean(0, keepdim=True)
        mixed = matrix @ (x - mean) + mean
    else:  # anchored: the forget rows move, earlier-forgotten rows are anchored again, retained rows stay
        mean = x[~keep].mean(0, keepdim=True)
        centred = x - mean
        shift = alpha * centred[is_forget].sum(0, keepdim=True)
        moved = torch.where(is_forget.view_as(rows), mean + (1.0 - alpha) * centred - shift, x)
        return torch.where(rows, mean + (1.0 - 2.0 * alpha) * centred, moved)
    return torch.where(rows, x, mixed)
