"""Rank-N-Contrast loss of CoReEcho (exact, vectorized, numerically stable, distributed).

The loss (Zha et al., NeurIPS 2023, as used by CoReEcho, Maani et al., MICCAI 2024) contrasts the embeddings
of a batch according to the ranking of their label distances. With ``n`` samples ``z_1..z_n``, labels
``y_1..y_n``, similarity ``s_ij = -||z_i - z_j||_2`` and temperature ``tau``, every ordered pair
``(i, j)``, ``j != i``, contributes::

    -log( exp(s_ij / tau) / sum_{k != i, |y_i - y_k| >= |y_i - y_j|} exp(s_ik / tau) )

and the loss is the mean of the ``n (n - 1)`` terms. Label distances are ``|y_i - y_k|`` (scalar labels, such as
the ejection fraction); label ties count as negatives (``>=``).

The official implementation loops over the ``n - 1`` positive ranks and masks the whole ``[n, n]`` matrix in
each iteration (``O(n^3)`` work). Here the samples are sorted once by label; for every anchor, the samples at
least as far in label as the positive form a prefix and a suffix of that order, found by binary search, and the
denominators are prefix and suffix sums (``O(n^2 log n)`` time, ``O(n^2)`` memory, or ``O(chunk * n)`` with
``chunk_size``). Sums are shifted by each anchor's largest similarity, and when a row spans more than the
exponent range, computed with :func:`torch.logcumsumexp`, so the loss stays finite where the official code
overflows in float32 (distances over roughly ``88 * tau``); elsewhere both agree to rounding.

Example:
    >>> import torch
    >>> from coreecho.losses import CoReLoss
    >>> _ = torch.manual_seed(0)
    >>> features = torch.randn(8, 2, 512, requires_grad=True)   # 8 videos, 2 views each
    >>> ef = torch.rand(8) * 70 + 10                            # one label per video
    >>> loss = CoReLoss(temperature=2.0)(features, ef)
    >>> loss.backward()
    >>> loss.ndim, features.grad.shape
    (0, torch.Size([8, 2, 512]))
"""

from __future__ import annotations

import contextlib
import math
from numbers import Real

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from coreecho.errors import InputError

__all__ = ["CoReLoss", "rank_n_contrast"]


# ----------------------------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------------------------


def _check_temperature(temperature: object) -> float:
    if isinstance(temperature, Tensor) and temperature.numel() == 1 and not temperature.requires_grad:
        temperature = temperature.item()
    if isinstance(temperature, bool) or not isinstance(temperature, Real):
        raise InputError("temperature", f"expected a positive number, got {type(temperature).__name__}")
    value = float(temperature)
    if not math.isfinite(value) or value <= 0:
        raise InputError("temperature", f"must be a finite number > 0, got {value}")
    return value


def _check_chunk_size(chunk_size: object) -> int | None:
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError("chunk_size", f"must be None or a positive int (anchors per chunk), got {chunk_size!r}")
    return chunk_size


def _flatten(features: Tensor, labels: Tensor, check_finite: bool, min_samples: int) -> tuple[Tensor, Tensor]:
    """Validate the inputs; return ``z`` ``[n, D]`` (official view-major order) and ``y`` ``[n]``."""
    if not isinstance(features, Tensor):
        raise InputError("features", f"expected a torch.Tensor, got {type(features).__name__}")
    if not isinstance(labels, Tensor):
        raise InputError("labels", f"expected a torch.Tensor, got {type(labels).__name__}")
    if not features.is_floating_point():
        raise InputError("features", f"expected a floating-point tensor, got dtype {features.dtype}")
    if features.dim() == 3:
        b, v, _ = features.shape
        if v < 1:
            raise InputError("features", f"shape {tuple(features.shape)} has no views (V = 0); expected [B, V, D]")
        # official order: view 0 of every video, then view 1 of every video, ...
        z = torch.cat(torch.unbind(features, dim=1), dim=0)
        rows, what = b, f"one label per video (B = {b}) for features [B, V, D] = {list(features.shape)}"
    elif features.dim() == 2:
        z, v = features, 1
        rows, what = features.shape[0], f"one label per sample (N = {features.shape[0]}) for features [N, D]"
    else:
        raise InputError(
            "features", f"expected [B, V, D] (V views per video) or [N, D], got shape {tuple(features.shape)}"
        )
    if z.shape[-1] < 1:
        raise InputError("features", f"the embedding dimension D is 0 (shape {tuple(features.shape)})")

    if labels.is_complex() or labels.dtype == torch.bool:
        raise InputError("labels", f"expected real numbers, got dtype {labels.dtype}")
    if labels.dim() == 2 and labels.shape[1] == 1:
        y = labels[:, 0]
    elif labels.dim() == 1:
        y = labels
    else:
        raise InputError(
            "labels", f"expected one scalar label per video or sample, [B] or [B, 1]; got shape {tuple(labels.shape)}"
        )
    if y.shape[0] != rows:
        raise InputError("labels", f"got {y.shape[0]} labels (shape {tuple(labels.shape)}); expected {what}")
    n = z.shape[0]
    if n < min_samples:
        raise InputError(
            "features", f"Rank-N-Contrast needs at least 2 samples (videos x views), got {n}; use a larger batch"
        )
    # label distances: floating labels in their own precision (at least float32), integers exactly in float64
    dtype = torch.promote_types(y.dtype, torch.float32) if y.is_floating_point() else torch.float64
    y = y.detach().to(device=z.device, dtype=dtype)
    if check_finite:
        if not bool(torch.isfinite(y).all()):
            raise InputError("labels", "contain NaN or infinite values; drop or fix those samples")
        if not bool(torch.isfinite(features).all()):
            raise InputError(
                "features", "contain NaN or infinite values (diverged encoder or a bad input clip upstream)"
            )
    if v > 1:
        y = y.repeat(v)
    return z, y


# ----------------------------------------------------------------------------------------------------------------
# the core: sum of the terms of a set of anchors
# ----------------------------------------------------------------------------------------------------------------
#
# All samples are sorted once by label. For the anchor at sorted position i, the signed label differences
# y_k - y_i increase with k, so the samples whose label distance is >= that of the positive j are a prefix
# [0, L_ij) of the samples left of i and a suffix [R_ij, n) of those right of i. L and R are two binary searches
# of -|y_j - y_i| and +|y_j - y_i| in the row of differences (the very floating-point values the official code
# compares, so ties are decided identically), and the denominators are prefix and suffix sums. No per-anchor
# sort: O(n^2 log n) for the searches, O(n^2) memory, or O(chunk * n) per chunk of anchors.


def _log_denominators(x: Tensor, prefix_end: Tensor, suffix_from_end: Tensor, fast: bool) -> Tensor:
    """``log( sum_{k < L} exp(x_k) + sum_{k >= R} exp(x_k) )`` for every entry, with ``L = prefix_end`` and
    ``n - R = suffix_from_end``.

    ``fast``: plain cumulative sums of ``exp(x)``, valid when no ``x`` of a row underflows (the caller checks
    that the spread of every row is within ``0.7 * |log(tiny)|``); otherwise :func:`torch.logcumsumexp`, stable
    for any spread.
    """
    if fast:
        e = x.exp()
        zero = x.new_zeros((x.shape[0], 1))
        prefix = torch.cat([zero, e.cumsum(dim=1)], dim=1)  # prefix[:, L] = sum of the first L
        suffix = torch.cat([zero, e.flip(1).cumsum(dim=1)], dim=1)  # suffix[:, m] = sum of the last m
        return (prefix.gather(1, prefix_end) + suffix.gather(1, suffix_from_end)).log()
    edge = x.new_full((x.shape[0], 1), -math.inf)
    prefix = torch.cat([edge, torch.logcumsumexp(x, dim=1)], dim=1)
    suffix = torch.cat([edge, torch.logcumsumexp(x.flip(1), dim=1)], dim=1)
    return torch.logaddexp(prefix.gather(1, prefix_end), suffix.gather(1, suffix_from_end))


class _ScaledDistances(torch.autograd.Function):
    """``u[r, k] = ||z[anchors[r]] - z[k]|| / tau`` from the Gram form, with a hand-written backward (one matrix
    product when the anchors are all samples, instead of autograd's two)."""

    @staticmethod
    def forward(ctx, z: Tensor, anchors: Tensor, inv_t2: float, full: bool) -> Tensor:  # type: ignore[override]
        sq = (z * z).sum(dim=1)
        zr = z if full else z.index_select(0, anchors)
        sqr = sq if full else sq.index_select(0, anchors)
        u2 = torch.addmm(sqr[:, None] + sq[None, :], zr, z.T, beta=inv_t2, alpha=-2.0 * inv_t2)
        # floor at the rounding noise of the Gram form: never 0, and no gradient below it (duplicates, diagonal)
        finfo = torch.finfo(z.dtype)
        floor = (sq.amax() * (2.0 * finfo.eps * inv_t2)).clamp_min(finfo.tiny)
        clamped = u2 <= floor
        u = u2.clamp_min_(floor).sqrt_()
        ctx.save_for_backward(z, anchors, u, clamped)
        ctx.inv_t2, ctx.full = inv_t2, full
        return u

    @staticmethod
    def backward(ctx, grad_u: Tensor):  # type: ignore[override]
        z, anchors, u, clamped = ctx.saved_tensors
        # du_rk / dz_i = inv_t2 / u_rk * (z_i - z_k) for i = anchors[r], and the opposite for z_k
        w = (grad_u * ctx.inv_t2 / u).masked_fill_(clamped, 0.0)
        if ctx.full:
            w = w + w.T
            grad_z = w.sum(dim=1, keepdim=True) * z - w @ z
        else:
            zr = z.index_select(0, anchors)
            grad_z = w.sum(dim=0)[:, None] * z - w.T @ zr
            grad_z.index_add_(0, anchors, w.sum(dim=1, keepdim=True) * zr - w @ z)
        return grad_z, None, None, None


def _anchor_terms_sum(z: Tensor, y: Tensor, anchors: Tensor, temperature: float) -> Tensor:
    """Sum of the loss terms of the anchors at sorted positions ``anchors`` against all ``n`` samples.

    ``z`` ``[n, D]`` (ideally centred) and ``y`` ``[n]`` are sorted by label (ascending). Memory is
    ``O(len(anchors) * n)``.
    """
    n = z.shape[0]
    full = anchors.numel() == n  # anchors are then 0..n-1 (all samples, in sorted order)
    u = _ScaledDistances.apply(z, anchors, 1.0 / (temperature * temperature), full)  # -s_ik / tau
    finfo = torch.finfo(z.dtype)
    rows = anchors[:, None]
    diagonal = torch.arange(n, device=z.device)[None, :] == rows

    with torch.no_grad():
        diff = y[None, :] - y.index_select(0, anchors)[:, None]  # non-decreasing along each row
        dist = diff.abs()
        # L = #{k < i : |y_k - y_i| >= |y_j - y_i|}; n - R = #{k > i : same}
        prefix_end = torch.minimum(torch.searchsorted(diff, dist.neg(), right=True), rows)
        suffix_from_end = torch.minimum(n - torch.searchsorted(diff, dist), (n - 1) - rows)
        del diff, dist
        # stabilisation: shift every row by its largest similarity (its nearest other sample)
        nearest = u.masked_fill(diagonal, math.inf).amin(dim=1, keepdim=True)
        spread = (u.amax(dim=1, keepdim=True) - nearest).amax()
        fast = bool(spread < 0.7 * -math.log(finfo.tiny))

    x = (nearest - u).masked_fill(diagonal, 0.0)  # s_ik / tau - max_k s_ik / tau, <= 0
    log_den = _log_denominators(x, prefix_end, suffix_from_end, fast)
    # term(i, j) = -s_ij / tau + log sum exp(s_ik / tau) = u_ij + log_den_ij - nearest_i
    return (u + log_den).masked_fill(diagonal, 0.0).sum() - (n - 1) * nearest.sum()


def _rnc_sum(z: Tensor, y: Tensor, temperature: float, anchors: Tensor, chunk_size: int | None) -> Tensor:
    """Sum of the terms of ``anchors`` (sorted positions), optionally in checkpointed chunks of anchors."""
    if chunk_size is None or chunk_size >= anchors.numel():
        return _anchor_terms_sum(z, y, anchors, temperature)
    total = z.new_zeros(())
    use_checkpoint = torch.is_grad_enabled() and z.requires_grad
    for part_anchors in anchors.split(chunk_size):
        if use_checkpoint:
            # keeps only the inputs; the chunk's O(chunk * n) intermediates are recomputed in backward
            part = checkpoint(
                _anchor_terms_sum, z, y, part_anchors, temperature, use_reentrant=False, preserve_rng_state=False
            )
        else:
            part = _anchor_terms_sum(z, y, part_anchors, temperature)
        total = total + part
    return total


# ----------------------------------------------------------------------------------------------------------------
# distributed gather
# ----------------------------------------------------------------------------------------------------------------


def _dist_world(group: object) -> tuple[int, int]:
    """(rank, world size) of ``group``, or (0, 1) when torch.distributed is not in use."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _all_gather_padded(x: Tensor, sizes: list[int], group: object) -> Tensor:
    """Concatenate the ``[sizes[r], ...]`` tensors of all ranks (padded to the largest for the collective)."""
    dist = torch.distributed
    largest = max(sizes)
    if x.shape[0] < largest:
        x = torch.cat([x, x.new_zeros((largest - x.shape[0], *x.shape[1:]))], dim=0)
    x = x.contiguous()
    parts = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(parts, x, group=group)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0)


class _GatherWithGradient(torch.autograd.Function):
    """All-gather along dim 0 with a gradient: backward sums the incoming gradients over ranks and keeps this
    rank's slice (every rank's loss depends on every rank's samples)."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], rank: int, group: object) -> Tensor:  # type: ignore[override]
        ctx.sizes, ctx.rank, ctx.group = sizes, rank, group
        return _all_gather_padded(x, sizes, group)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad, op=torch.distributed.ReduceOp.SUM, group=ctx.group)
        offset = sum(ctx.sizes[: ctx.rank])
        return grad[offset : offset + ctx.sizes[ctx.rank]], None, None, None


def _gather(z: Tensor, y: Tensor, rank: int, world: int, group: object) -> tuple[Tensor, Tensor, int, int]:
    """Global ``z``, ``y`` and this rank's anchor range ``[offset, offset + n_local)``."""
    dist = torch.distributed
    meta = torch.tensor([z.shape[0], z.shape[1]], dtype=torch.int64, device=z.device)
    metas = [torch.empty_like(meta) for _ in range(world)]
    dist.all_gather(metas, meta, group=group)
    table = torch.stack(metas).tolist()
    sizes = [int(t[0]) for t in table]
    if len({t[1] for t in table}) != 1:
        raise InputError("features", f"ranks disagree on the embedding dimension ([n, D] per rank: {table})")
    if sum(sizes) < 2:
        raise InputError("features", f"Rank-N-Contrast needs at least 2 samples over all ranks, got {sum(sizes)}")
    z_all = _GatherWithGradient.apply(z, sizes, rank, group)
    with torch.no_grad():
        y_all = _all_gather_padded(y, sizes, group)
    offset = sum(sizes[:rank])
    return z_all, y_all, offset, offset + sizes[rank]


# ----------------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------------


def rank_n_contrast(
    features: Tensor,
    labels: Tensor,
    temperature: float = 1.0,
    *,
    chunk_size: int | None = None,
    gather_distributed: bool = False,
    process_group: object | None = None,
    check_inputs: bool = True,
) -> Tensor:
    """Rank-N-Contrast loss, exactly as defined by the official CoReEcho code, in ``O(n^2 log n)``.

    Args:
        features: embeddings ``[B, V, D]`` (``V >= 1`` views of each of ``B`` videos; they are stacked view by
            view, as the official code does, into ``n = B * V`` samples) or ``[N, D]`` (``n = N``).
        labels: ``[B]`` or ``[B, 1]`` (one label per video, shared by its views) for ``[B, V, D]`` features;
            ``[N]`` or ``[N, 1]`` for ``[N, D]``. Labels carry no gradient.
        temperature: ``tau > 0``; similarities ``-||z_i - z_j||`` are divided by it.
        chunk_size: if set, anchors are processed in chunks of this many rows, each under activation
            checkpointing: memory ``O(chunk_size * n)`` instead of ``O(n^2)``, same value and gradient, about one
            extra forward of the loss in backward.
        gather_distributed: under an initialised ``torch.distributed`` process group, gather the samples of all
            ranks (with gradient; unequal per-rank batch sizes are fine). This rank's anchors are contrasted with
            the global batch and the result is scaled for DDP: the value returned on each rank is
            ``world_size * (sum of this rank's anchor terms) / (n_global * (n_global - 1))``, so the mean of the
            returned values over ranks is the loss of the global batch, and DDP's gradient averaging yields
            exactly the gradient of the global-batch loss. Without an initialised group it is a no-op.
        process_group: the group to gather over (default: the world).
        check_inputs: check for NaN/inf in features and labels (one device sync); shapes are always checked.

    Returns:
        A scalar tensor in ``float32`` for half-precision features, else in the features' dtype.

    Raises:
        InputError: wrong shapes, label count mismatch, fewer than 2 samples, non-finite values or
            ``temperature <= 0``.

    Example:
        >>> import torch
        >>> z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
        >>> y = torch.tensor([0.0, 1.0, 3.0])
        >>> round(rank_n_contrast(z, y).item(), 4)
        0.1256
    """
    tau = _check_temperature(temperature)
    chunk = _check_chunk_size(chunk_size)
    rank, world = _dist_world(process_group) if gather_distributed else (0, 1)
    z, y = _flatten(features, labels, check_inputs, min_samples=1 if world > 1 else 2)
    device_type = z.device.type
    no_autocast = (
        torch.autocast(device_type=device_type, enabled=False)
        if torch.amp.is_autocast_available(device_type)
        else contextlib.nullcontext()
    )
    with no_autocast:
        if z.dtype not in (torch.float32, torch.float64):
            z = z.float()
        if world > 1:
            z, y, start, stop = _gather(z, y, rank, world, process_group)
        else:
            start, stop = 0, z.shape[0]
        n = z.shape[0]
        # distances are translation invariant; centring shrinks the norms in the Gram form (fewer rounding errors)
        z = z - z.mean(dim=0, keepdim=True).detach()
        # sort all samples by label once; this rank's anchors are global samples start..stop-1
        order = torch.argsort(y, stable=True)
        position = torch.empty_like(order)
        position[order] = torch.arange(n, device=order.device)
        anchors = position[start:stop].sort().values  # all samples: 0..n-1
        total = _rnc_sum(z.index_select(0, order), y[order], tau, anchors, chunk)
        return total * (world / (n * (n - 1)))


class CoReLoss(nn.Module):
    """Rank-N-Contrast loss module of CoReEcho (stage 1), see :func:`rank_n_contrast`.

    Args:
        temperature: ``tau > 0``; similarities ``-||z_i - z_j||`` are divided by it.
        gather_distributed: contrast against the samples of all ranks (autograd-aware all-gather, unequal batch
            sizes allowed). Each rank then returns ``world_size * (its anchors' terms) / (n (n - 1))``: not the
            global loss, but DDP's averaging of gradients makes the update exactly that of the global-batch loss.
            The global loss itself (a detached all-reduced mean, for logging) is kept in
            :attr:`last_global_loss` after each call.
        chunk_size: anchors per checkpointed chunk (``O(chunk_size * n)`` memory), ``None`` for one pass.
        process_group: group for ``gather_distributed`` (default: the world).
        check_inputs: check features and labels for NaN/inf (one device sync per call).

    Attributes:
        last_global_loss: detached loss of the whole batch (all ranks) from the latest call.

    Example:
        >>> import torch
        >>> loss_fn = CoReLoss(temperature=2.0, chunk_size=64)
        >>> features = torch.randn(16, 2, 128, requires_grad=True)
        >>> loss = loss_fn(features, torch.rand(16, 1) * 70 + 10)
        >>> loss.backward()
        >>> bool(torch.isfinite(loss_fn.last_global_loss))
        True
    """

    def __init__(
        self,
        temperature: float = 1.0,
        gather_distributed: bool = False,
        chunk_size: int | None = None,
        process_group: object | None = None,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        self.gather_distributed = bool(gather_distributed)
        self.chunk_size = _check_chunk_size(chunk_size)
        self.process_group = process_group
        self.check_inputs = bool(check_inputs)
        self.last_global_loss: Tensor | None = None

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """Loss of ``features`` (``[B, V, D]`` or ``[N, D]``) with ``labels`` (``[B]``, ``[B, 1]`` or ``[N]``)."""
        loss = rank_n_contrast(
            features,
            labels,
            self.temperature,
            chunk_size=self.chunk_size,
            gather_distributed=self.gather_distributed,
            process_group=self.process_group,
            check_inputs=self.check_inputs,
        )
        _, world = _dist_world(self.process_group) if self.gather_distributed else (0, 1)
        if world > 1:
            value = loss.detach().clone()
            torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.SUM, group=self.process_group)
            self.last_global_loss = value / world
        else:
            self.last_global_loss = loss.detach()
        return loss

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, gather_distributed={self.gather_distributed}, "
            f"chunk_size={self.chunk_size}"
        )
