"""Local learning rules for columns: co-distillation, fill-in, anti-collapse, soft targets.

Every rule is a pure function of tensors (no parameters, no global state); the model owns the
networks, the rules only say what each network should predict. Shapes follow the package's axis
order ``(batch, column, level, dim)``, time first when present.

Sources
-------
* Soft targets at temperature ``T`` and the ``T**2`` gradient scale: Hinton, Vinyals & Dean (2015),
  "Distilling the knowledge in a neural network", section 2; the distillation talk, 00:19-00:27.
* Co-distillation ("peer pressure" between nets after a warm-up): Anil et al. (2018), "Large scale
  distributed neural network training through online distillation"; the distillation talk,
  00:27-00:29.
* Consensus co-distillation between columns: the distillation talk, 00:29-00:34 (each column's
  bottom-up and top-down nets are trained to agree with the consensus of their level, which already
  holds the neighbours' opinions); Hinton (2021), "How to represent part-whole hierarchies in a
  neural network" (GLOM), sections 3 and 9.
* Fill-in (denoising) training and contrastive anti-collapse: GLOM (2021) sections 3.3 and 9.3;
  InfoNCE: van den Oord, Li & Vinyals (2018); Chen et al. (2020, SimCLR) eq. 1.

Locality
--------
``locality="local"`` (default) means: the model is settled with ``detach_inputs=True`` so every
column's nets read *detached* inputs (its own lower/upper level, its neighbours, its previous
state), and every target below is detached. Then the gradient of column ``c``'s loss reaches only
column ``c``'s own parameters, through the current time step only: the rule is local in space and
time. ``locality="bptt"`` settles with ``detach_inputs=False`` and trains end to end through time
(as in the GLOM paper) for comparison. :func:`detach_inputs_for` maps one onto the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from neurosim.config import check_choice, check_int
from neurosim.softmax import log_softmax, softmax

__all__ = [
    "LOCALITIES",
    "detach_inputs_for",
    "distillation_kl",
    "soft_target_loss",
    "consensus_codistillation_loss",
    "draw_fill_in_mask",
    "hide_column_inputs",
    "fill_in_loss",
    "contrastive_loss",
    "teacher_confidence",
    "neighbour_soft_targets",
    "neighbour_codistillation_loss",
    "codistillation_weight",
]

#: allowed values of the ``locality`` option
LOCALITIES = ("local", "bptt")


def detach_inputs_for(locality: str) -> bool:
    """The model's ``detach_inputs`` flag for a learning ``locality``.

    ``"local"`` -> ``True`` (no gradient across columns or time steps); ``"bptt"`` -> ``False``
    (end-to-end backpropagation through the settling).
    """
    if locality not in LOCALITIES:
        raise ValueError(f"locality must be one of {list(LOCALITIES)}; got {locality!r}")
    return locality == "local"


def _check_temperature(temperature: float) -> float:
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise ValueError(f"temperature must be in (0, inf); got {temperature!r}")
    return float(temperature)


def distillation_kl(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T**2 * KL(teacher_probs || softmax(student_logits / T))``, averaged over leading dims.

    Args:
        student_logits: ``[..., K]`` logits of the student (gradient flows into them).
        teacher_probs: ``[..., K]`` target distribution (already softened; used as given, and
            detached here so no gradient reaches the teacher).
        temperature: ``T > 0``; the ``T**2`` factor keeps gradient magnitudes comparable across
            temperatures (Hinton, Vinyals & Dean 2015, section 2).

    Returns:
        Scalar tensor: the mean over all leading positions of the per-position KL divergence
        (nats), times ``T**2``. Terms with zero teacher probability contribute zero.
    """
    t = _check_temperature(temperature)
    if student_logits.shape != teacher_probs.shape:
        raise ValueError(
            "teacher_probs must have the shape of student_logits "
            f"{tuple(student_logits.shape)}; got {tuple(teacher_probs.shape)}"
        )
    if student_logits.ndim < 1 or student_logits.shape[-1] < 2:
        raise ValueError(
            "student_logits must be [..., K] with K >= 2 classes; "
            f"got {tuple(student_logits.shape)}"
        )
    p = teacher_probs.detach()
    log_q = log_softmax(student_logits / t)
    # xlogy gives 0 * log 0 = 0 for classes the teacher rules out exactly.
    kl = (torch.xlogy(p, p) - p * log_q).sum(dim=-1)
    return kl.mean() * (t * t)


def soft_target_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Hinton's soft-target loss: ``T**2 * KL(softmax(z_t / T) || softmax(z_s / T))``.

    Args:
        student_logits: ``[..., K]``.
        teacher_logits: ``[..., K]``; detached (the teacher is not trained by this loss).
        temperature: ``T > 0``.

    Returns:
        Scalar: mean over leading positions of the KL (nats) times ``T**2`` (Hinton, Vinyals &
        Dean 2015, eq. 2 and the remark on ``T**2`` that follows it).
    """
    t = _check_temperature(temperature)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "teacher_logits must have the shape of student_logits "
            f"{tuple(student_logits.shape)}; got {tuple(teacher_logits.shape)}"
        )
    teacher_probs = softmax(teacher_logits.detach() / t)
    return distillation_kl(student_logits, teacher_probs, t)


#: the cosine error's floor on |p| |t| (F.cosine_similarity's eps)
_COSINE_EPS = 1e-8


def _level_mask(
    level_dims: Sequence[int] | None, like: torch.Tensor, name: str = "level_dims"
) -> torch.Tensor | None:
    """``[L, D]`` 1/0 mask of the entries each level uses (None when ``level_dims`` is None)."""
    if level_dims is None:
        return None
    n_levels, d = like.shape[-2], like.shape[-1]
    dims = [int(v) for v in level_dims]
    if len(dims) != n_levels or any(not 1 <= v <= d for v in dims):
        raise ValueError(
            f"{name} must list {n_levels} sizes (one per level), each in [1, {d}]; got {dims}"
        )
    mask = torch.zeros(n_levels, d, dtype=like.dtype, device=like.device)
    for lv, v in enumerate(dims):
        mask[lv, :v] = 1.0
    return mask


def _masked_mean(
    sq: torch.Tensor, weight: torch.Tensor | None, entries: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean of ``sq`` ``[..., C, L, D]`` with per-(column, level) weights broadcast over D and
    an optional ``[L, D]`` mask of the entries that exist (padding of smaller levels excluded)."""
    if weight is None and entries is None:
        return sq.mean()
    w = torch.ones(sq.shape[:-1], dtype=sq.dtype, device=sq.device) if weight is None else weight
    w = w.to(sq.dtype).unsqueeze(-1).expand_as(sq)
    if entries is not None:
        w = w * entries
    total = w.sum()
    if total <= 0:
        return sq.sum() * 0.0
    return (sq * w).sum() / total


def consensus_codistillation_loss(
    bottom_up: torch.Tensor,
    top_down: torch.Tensor | None,
    consensus: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    top_down_levels: torch.Tensor | None = None,
    level_dims: Sequence[int] | None = None,
    loss: str = "mse",
    per_column: bool = False,
) -> torch.Tensor:
    """Each column's bottom-up and top-down predictions regressed on its level's consensus.

    The consensus of level ``l`` in column ``c`` (the mix of the column's bottom-up and top-down
    predictions, the attention-weighted same-level embeddings of its neighbours, and its previous
    state) is the *detached* target of both nets that predict level ``l`` in column ``c`` (the
    distillation talk, 00:31-00:33; GLOM section 3). Because the target holds the neighbours'
    opinions, minimising this transfers knowledge between columns without sharing weights: local
    co-distillation.

    Args:
        bottom_up: ``[..., C, L, D]`` bottom-up predictions (level ``l-1`` -> ``l``; level 0 is
            predicted from the column's input). Leading dims are typically ``[B]`` or ``[T, B]``.
        top_down: ``[..., C, L, D]`` top-down predictions (level ``l+1`` -> ``l``), or ``None``
            (no top-down term).
        consensus: ``[..., C, L, D]``; detached here.
        mask: optional ``[..., C]`` (or broadcastable to it) weights or booleans selecting the
            (time, image, column) entries that are trained, e.g. only visible columns.
        top_down_levels: optional ``[L]`` booleans: which levels *have* a top-down net. Default:
            every level but the top one (``L-1``), which has nothing above it; the top-down
            prediction there (whatever the model stores, zeros or a copy) is ignored.
        level_dims: optional ``[L]`` sizes of the levels (``Model.level_dims``) when they
            differ: the zero padding of a smaller level is left out of the means.
        loss: ``"mse"`` (squared error per entry) or ``"cosine"`` (``1 - cos`` between the
            prediction and the consensus, per vector: scale-free, so the rule cannot be served
            by growing or shrinking the embeddings).
        per_column: return one value per column ``[C]`` (the mean over everything else, each
            prediction vector weighing alike) instead of the scalar.

    Returns:
        Scalar: the error of the bottom-up predictions averaged over all trained entries plus
        the error of the top-down predictions averaged over the trained entries of the levels
        that have a top-down net (each term a mean over its own entries, so the two nets carry
        equal weight regardless of the number of levels); ``[C]`` with ``per_column``. With a
        single level there is no top-down term.
    """
    if bottom_up.shape != consensus.shape:
        raise ValueError(
            f"bottom_up must have the shape of consensus {tuple(consensus.shape)}; "
            f"got {tuple(bottom_up.shape)}"
        )
    if consensus.ndim < 3:
        raise ValueError(f"consensus must be [..., C, L, D]; got {tuple(consensus.shape)}")
    target = consensus.detach()
    weight = _column_weight(mask, consensus)
    check_choice("loss", loss, ("mse", "cosine"))
    if per_column or loss == "cosine":
        return _consensus_per_vector(
            bottom_up, top_down, target, weight, level_dims, top_down_levels, loss, per_column
        )
    entries = _level_mask(level_dims, consensus)
    total = _masked_mean((bottom_up - target) ** 2, weight, entries)
    if top_down is None:
        return total
    td_weight = _top_down_weight(top_down, target, weight, top_down_levels)
    if td_weight is None:
        return total
    return total + _masked_mean((top_down - target) ** 2, td_weight, entries)


def _column_weight(mask: torch.Tensor | None, consensus: torch.Tensor) -> torch.Tensor | None:
    """``mask`` checked and broadcast to per-(column, level) weights ``[..., C, L]``."""
    if mask is None:
        return None
    lead_cols = consensus.shape[:-2]
    try:
        m = torch.broadcast_to(mask.to(consensus.dtype), lead_cols)
    except RuntimeError:
        raise ValueError(
            f"mask must broadcast to [..., C] = {tuple(lead_cols)}; got {tuple(mask.shape)}"
        ) from None
    return m.unsqueeze(-1).expand(*lead_cols, consensus.shape[-2])


def _top_down_weight(
    top_down: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    top_down_levels: torch.Tensor | None,
) -> torch.Tensor | None:
    """Weights ``[..., C, L]`` of the top-down errors: the levels that have a top-down net,
    times ``weight`` (None when no level has one); ``top_down``'s shape checked."""
    if top_down.shape != target.shape:
        raise ValueError(
            f"top_down must have the shape of consensus {tuple(target.shape)}; "
            f"got {tuple(top_down.shape)}"
        )
    n_levels = target.shape[-2]
    levels = _top_down_levels(top_down_levels, n_levels, target.device)
    if not bool(levels.any()):
        return None
    td_weight = levels.to(target.dtype).expand(*target.shape[:-2], n_levels)
    return td_weight if weight is None else td_weight * weight


def _top_down_levels(top_down_levels, n_levels, device):
    if top_down_levels is None:
        levels = torch.ones(n_levels, dtype=torch.bool, device=device)
        levels[-1] = False
        return levels
    levels = top_down_levels.to(device=device, dtype=torch.bool)
    if levels.shape != (n_levels,):
        raise ValueError(
            f"top_down_levels must have shape [L] = ({n_levels},); got {tuple(levels.shape)}"
        )
    return levels


def _vector_errors(pred, target, level_dims, loss, target_sq=None):
    """``[..., C, L]`` error of every prediction vector (padding of smaller levels excluded).

    ``target_sq``: ``|target|^2`` per vector when already computed (the cosine error of the
    bottom-up and the top-down predictions share it)."""
    entries = _level_mask(level_dims, target)
    if loss == "cosine":
        if entries is not None:
            pred, target = pred * entries, target * entries
        if target_sq is None:
            target_sq = torch.linalg.vecdot(target, target)
        # 1 - <p, t> / max(|p| |t|, eps): F.cosine_similarity's formula in 5 elementwise passes
        # instead of its ~12 (2.5x faster forward and backward on the flagship's terms)
        dot = torch.linalg.vecdot(pred, target)
        norms_sq = torch.linalg.vecdot(pred, pred) * target_sq
        return 1.0 - dot * torch.rsqrt(norms_sq.clamp_min(_COSINE_EPS**2))
    sq = (pred - target) ** 2
    if entries is None:
        return sq.mean(dim=-1)
    return (sq * entries).sum(dim=-1) / entries.sum(dim=-1)


def _reduce(err: torch.Tensor, weight: torch.Tensor | None, per_column: bool) -> torch.Tensor:
    """Weighted mean of ``err [..., C, L]``: over everything (a scalar), or over everything but
    the columns (``[C]``) with ``per_column``."""
    w = torch.ones_like(err) if weight is None else weight.to(err.dtype).expand_as(err)
    dims = [d for d in range(err.ndim) if d != err.ndim - 2] if per_column else None
    total = w.sum() if dims is None else w.sum(dim=dims)
    num = (err * w).sum() if dims is None else (err * w).sum(dim=dims)
    return num / total.clamp_min(torch.finfo(err.dtype).tiny)


def _consensus_per_vector(bu, td, target, weight, level_dims, td_levels, loss, per_column):
    target_sq = None
    if loss == "cosine" and level_dims is None:
        target_sq = torch.linalg.vecdot(target, target)
    errors = _vector_errors(bu, target, level_dims, loss, target_sq)  # [..., C, L]
    out = _reduce(errors, weight, per_column)
    if td is None:
        return out
    td_w = _top_down_weight(td, target, weight, td_levels)
    if td_w is None:
        return out
    return out + _reduce(_vector_errors(td, target, level_dims, loss, target_sq), td_w, per_column)


def draw_fill_in_mask(
    batch: int,
    n_columns: int,
    fraction: float,
    *,
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Which columns have their input hidden, independently per image.

    Exactly ``round(fraction * n_columns)`` columns are hidden in every image (at least one, at
    most ``n_columns - 1`` so that something stays visible), chosen uniformly without
    replacement with ``generator``.

    Returns:
        ``[batch, n_columns]`` bool, ``True`` = hidden.
    """
    check_int("batch", batch, 1)
    check_int("n_columns", n_columns, 2)
    if not isinstance(fraction, (int, float)) or not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be in (0, 1); got {fraction!r}")
    n_hidden = min(max(int(round(fraction * n_columns)), 1), n_columns - 1)
    gen_device = generator.device
    scores = torch.rand(batch, n_columns, generator=generator, device=gen_device)
    order = scores.argsort(dim=1)
    hidden = torch.zeros(batch, n_columns, dtype=torch.bool, device=gen_device)
    hidden.scatter_(1, order[:, :n_hidden], True)
    return hidden if device is None else hidden.to(device)


def hide_column_inputs(
    column_input: torch.Tensor, hidden: torch.Tensor, *, fill: float = 0.0
) -> torch.Tensor:
    """Replace the inputs of hidden columns by ``fill``.

    Args:
        column_input: ``[B, C, d_in]`` what each column reads (e.g. its retina cells).
        hidden: ``[B, C]`` bool from :func:`draw_fill_in_mask`.

    Returns:
        ``[B, C, d_in]``, a new tensor (the input is not modified).
    """
    if column_input.ndim != 3 or hidden.shape != column_input.shape[:2]:
        raise ValueError(
            f"hidden must be [B, C] = {tuple(column_input.shape[:2])} for column_input "
            f"[B, C, d_in]; got hidden {tuple(hidden.shape)}, input {tuple(column_input.shape)}"
        )
    return column_input.masked_fill(hidden.unsqueeze(-1), fill)


def fill_in_loss(
    predicted_input: torch.Tensor,
    column_input: torch.Tensor,
    hidden: torch.Tensor,
    *,
    per_column: bool = False,
) -> torch.Tensor:
    """Fill-in: the settled state must predict the input that a hidden column did not receive.

    Design choice: the prediction comes from each column's *own* level-0 embedding after
    settling, through a per-column unshared decoder that the model owns (for example
    ``neurosim.columns.ColumnLinear(n_columns, dim, d_in)``); the target is the true input the
    column would have read. A hidden column can only predict its input from what reached it
    laterally and top-down during settling, so the loss trains exactly the pathways that carry
    neighbours' knowledge (GLOM section 3.3, "fill-in" denoising). The raw input is the target
    (not the consensus) so the rule cannot be satisfied by collapse.

    Args:
        predicted_input: ``[B, C, d_in]`` decoder output from the settled level-0 embeddings.
        column_input: ``[B, C, d_in]`` the unhidden input (detached here: it is data).
        hidden: ``[B, C]`` bool, ``True`` where the input was hidden.
        per_column: return each column's loss ``[C]`` (mean over the images where it was
            hidden; 0 where it never was).

    Returns:
        Scalar: mean squared error over the hidden columns' input entries (0 if none hidden);
        ``[C]`` with ``per_column``.
    """
    if predicted_input.shape != column_input.shape:
        raise ValueError(
            f"predicted_input must have the shape of column_input {tuple(column_input.shape)}; "
            f"got {tuple(predicted_input.shape)}"
        )
    if column_input.ndim != 3 or hidden.shape != column_input.shape[:2]:
        raise ValueError(
            f"hidden must be [B, C] = {tuple(column_input.shape[:2])}; got {tuple(hidden.shape)}"
        )
    sq = (predicted_input - column_input.detach()) ** 2
    if per_column:
        w = hidden.to(sq.dtype)  # [B, C]
        per = sq.mean(dim=-1)  # [B, C]
        return (per * w).sum(dim=0) / w.sum(dim=0).clamp_min(1.0)
    w = hidden.to(sq.dtype).unsqueeze(-1).expand_as(sq)
    total = w.sum()
    if total <= 0:
        return sq.sum() * 0.0
    return (sq * w).sum() / total


def contrastive_loss(
    embeddings: torch.Tensor,
    temperature: float,
    *,
    positives: torch.Tensor | None = None,
    detach_positives: bool = True,
    groups: int = 1,
    per_column: bool = False,
) -> torch.Tensor:
    """InfoNCE anti-collapse term: other images in the batch are the negatives.

    Cosine similarities are divided by ``temperature`` and each anchor must pick its positive out
    of the batch (van den Oord et al. 2018; SimCLR eq. 1). Collapse (all images giving the same
    embedding) makes every candidate equally likely and costs ``log B``.

    Args:
        embeddings: ``[B, D]`` (one vector per image) or ``[B, C, D]`` (one per column).
        temperature: ``> 0``.
        positives: same shape as ``embeddings``: a second view of each image (e.g. another
            crop, or the consensus). If ``None``:

            * ``[B, C, D]``: the positive of column ``c`` of image ``b`` is the mean embedding of
              the *other* columns of image ``b`` (leave-one-out, within the column's group),
              and the negatives are that mean for the other images: columns of one image
              should agree more with each other than with any other image (the whole-image
              level of GLOM);
            * ``[B, D]``: the positive is the anchor itself (similarity 1, no gradient), so the
              loss reduces to the uniformity term that pushes different images apart
              (Wang & Isola 2020).
        detach_positives: the positives are targets, not trained (default). This keeps the
            term local: the loss of column ``c`` reaches only the parameters behind column
            ``c``'s own embedding, never the other columns' through the leave-one-out mean.
            ``False`` lets the gradient into the positives too (end-to-end training).
        groups: ``[B, C, D]`` only: the columns form this many consecutive groups of equal size
            (the replicas of a stacked model), each with its own leave-one-out positives; the
            images of a batch are each group's own (replica ``r``'s image ``b`` is another image
            than replica ``r'``'s).
        per_column: ``[B, C, D]`` only: return each column's loss ``[C]`` (mean over anchors).

    Returns:
        Scalar: the mean cross-entropy over anchors (and columns), in nats; about ``log B`` when
        the embeddings have collapsed, towards 0 when each anchor singles out its positive.
        ``[C]`` with ``per_column``.
    """
    t = _check_temperature(temperature)
    anchors, pos = _contrastive_views(embeddings, positives, groups, per_column)
    if detach_positives:
        pos = pos.detach()
    return _info_nce(anchors, pos, t, per_column)


def _contrastive_views(
    embeddings: torch.Tensor, positives: torch.Tensor | None, groups: int, per_column: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`contrastive_loss`'s anchors and positives ``[B, C, D]`` (arguments checked)."""
    if embeddings.ndim not in (2, 3):
        raise ValueError(f"embeddings must be [B, D] or [B, C, D]; got {tuple(embeddings.shape)}")
    batch = embeddings.shape[0]
    if batch < 2:
        raise ValueError(f"embeddings need a batch of at least 2 images; got {batch}")
    if positives is not None and positives.shape != embeddings.shape:
        raise ValueError(
            f"positives must have the shape of embeddings {tuple(embeddings.shape)}; "
            f"got {tuple(positives.shape)}"
        )
    if embeddings.ndim == 2:
        if per_column:
            raise ValueError("per_column needs embeddings [B, C, D]")
        anchors = embeddings.unsqueeze(1)  # [B, 1, D]
        return anchors, anchors.detach() if positives is None else positives.unsqueeze(1)
    n_col = embeddings.shape[1]
    groups = check_int("groups", groups, 1, n_col)
    if n_col % groups:
        raise ValueError(f"groups must divide the number of columns C={n_col}; got {groups}")
    if positives is not None:
        return embeddings, positives
    per_group = n_col // groups
    if per_group < 2:
        raise ValueError("embeddings [B, C, D] need C >= 2 columns per group")
    e = embeddings.view(batch, groups, per_group, -1)
    total = e.sum(dim=2, keepdim=True)
    return embeddings, ((total - e) / (per_group - 1)).view_as(embeddings)


def _info_nce(anchors: torch.Tensor, pos: torch.Tensor, t: float, per_column: bool) -> torch.Tensor:
    """Cross-entropy of each anchor ``[B, C, D]`` picking its positive out of the batch."""
    batch = anchors.shape[0]
    a = F.normalize(anchors, dim=-1)
    p = F.normalize(pos, dim=-1)
    # logits[c, b, b'] = cos(anchor[b, c], positive[b', c]) / T
    logits = torch.einsum("bcd,ecd->cbe", a, p) / t
    target = torch.arange(batch, device=anchors.device).expand(logits.shape[0], batch)
    ce = F.cross_entropy(logits.reshape(-1, batch), target.reshape(-1), reduction="none")
    if per_column:
        return ce.view(logits.shape[0], batch).mean(dim=1)
    return ce.mean()


def _check_neighbours(
    n_columns: int, neighbour_index: torch.Tensor, attention_weights: torch.Tensor | None, batch
) -> None:
    if neighbour_index.ndim != 2 or neighbour_index.shape[0] != n_columns:
        raise ValueError(
            f"neighbour_index must be [C, k] with C = {n_columns}; "
            f"got {tuple(neighbour_index.shape)}"
        )
    if neighbour_index.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"neighbour_index must be an integer tensor; got {neighbour_index.dtype}")
    if neighbour_index.numel() and (
        int(neighbour_index.min()) < 0 or int(neighbour_index.max()) >= n_columns
    ):
        raise ValueError(f"neighbour_index entries must be in [0, {n_columns - 1}]")
    if attention_weights is not None:
        want = (batch, n_columns, neighbour_index.shape[1])
        if tuple(attention_weights.shape) != want:
            raise ValueError(
                f"attention_weights must be [B, C, k] = {want}; "
                f"got {tuple(attention_weights.shape)}"
            )


def teacher_confidence(probs: torch.Tensor) -> torch.Tensor:
    """``1 - H(p) / log K`` of soft predictions ``[..., K]``: 1 for a one-hot teacher, 0 for a
    uniform one (a column that has not seen the object has nothing to teach)."""
    k = probs.shape[-1]
    entropy = -torch.xlogy(probs, probs).sum(dim=-1)
    return (1.0 - entropy / math.log(k)).clamp(0.0, 1.0)


def neighbour_soft_targets(
    logits: torch.Tensor,
    neighbour_index: torch.Tensor,
    attention_weights: torch.Tensor | None,
    temperature: float,
    *,
    confidence: bool = False,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The detached attention-weighted average of the neighbours' soft predictions.

    Args:
        logits: ``[B, C, K]`` per-column class logits.
        neighbour_index: ``[C, k]`` int, column ``c``'s neighbours (exclude ``c`` itself, or it
            partly teaches itself).
        attention_weights: ``[B, C, k]`` weights of those neighbours (rows summing to one, e.g.
            the lateral attention of the model, ``Settled.attention[level]``), or ``None`` for
            the plain average.
        temperature: ``T > 0``.
        confidence: also weigh each neighbour by its confidence (:func:`teacher_confidence` of
            its soft prediction), so that uninformed neighbours teach less.
        mask: optional ``BoolTensor [C, k]`` of the real neighbours (radius neighbourhoods).

    Returns:
        ``[B, C, K]`` probabilities ``sum_j w[b, c, j] softmax(logits[b, n[c, j]] / T)``
        (renormalised over the weights; the plain mean of the neighbours where they all weigh
        zero), detached.
    """
    t = _check_temperature(temperature)
    if logits.ndim != 3:
        raise ValueError(f"logits must be [B, C, K]; got {tuple(logits.shape)}")
    batch, n_columns, _ = logits.shape
    _check_neighbours(n_columns, neighbour_index, attention_weights, batch)
    with torch.no_grad():
        probs = softmax(logits.detach() / t)
        # index_select on the flat index, not probs[:, neighbour_index]: the same gather,
        # several times faster on CPU (see Model.column_inputs); gathered is [B, C, k, K]
        flat = neighbour_index.to(logits.device).long().reshape(-1)
        gathered = probs.index_select(1, flat).view(batch, *neighbour_index.shape, -1)
        if attention_weights is None:
            w = torch.ones(gathered.shape[:-1], dtype=probs.dtype, device=probs.device)
        else:
            w = attention_weights.detach().to(probs.dtype)
            if bool((w < 0).any()):
                raise ValueError("attention_weights must be non-negative")
        if mask is not None:
            w = w * mask.to(w.dtype)
        if confidence:
            w = w * teacher_confidence(gathered)
        total = w.sum(dim=-1, keepdim=True)
        fallback = torch.ones_like(w) if mask is None else mask.to(w.dtype).expand_as(w)
        w = torch.where(total > 0, w, fallback)
        w = w / w.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
        return torch.einsum("bck,bckz->bcz", w, gathered)


def neighbour_codistillation_loss(
    logits: torch.Tensor,
    neighbour_index: torch.Tensor,
    attention_weights: torch.Tensor | None,
    temperature: float,
    *,
    confidence: bool = False,
    mask: torch.Tensor | None = None,
    per_column: bool = False,
) -> torch.Tensor:
    """Output co-distillation between columns: agree with the neighbours' softened opinion.

    Every column has its own (unshared) readout of class logits. Column ``c`` is trained towards
    the detached attention-weighted average of its neighbours' soft predictions at temperature
    ``T`` (:func:`neighbour_soft_targets`) with the ``T**2``-scaled KL of Hinton et al. (2015) —
    the co-distillation of the distillation talk (00:27-00:29) with the columns as the peer
    group. Add the label cross-entropy separately and scale this term with
    :func:`codistillation_weight` so the columns "learn separately for a while first".

    Args:
        logits: ``[B, C, K]``.
        neighbour_index: ``[C, k]``.
        attention_weights: ``[B, C, k]`` or ``None`` (uniform).
        temperature: ``T > 0``.
        confidence, mask: see :func:`neighbour_soft_targets`.
        per_column: return each column's loss ``[C]`` (mean over images).

    Returns:
        Scalar: ``T**2 * mean_{b, c} KL(target[b, c] || softmax(logits[b, c] / T))``; ``[C]``
        with ``per_column``.
    """
    target = neighbour_soft_targets(
        logits, neighbour_index, attention_weights, temperature, confidence=confidence, mask=mask
    )
    if not per_column:
        return distillation_kl(logits, target, temperature)
    t = _check_temperature(temperature)
    log_q = log_softmax(logits / t)
    kl = (torch.xlogy(target, target) - target * log_q).sum(dim=-1)  # [B, C]
    return kl.mean(dim=0) * (t * t)


def codistillation_weight(step: int, warmup_steps: int, ramp_steps: int = 0) -> float:
    """Weight of the peer-agreement term: 0 during warm-up, then a linear ramp to 1.

    "You have to start off by letting them learn a bit separately, so they don't become too
    similar immediately" (the distillation talk, 00:28). ``step < warmup_steps`` -> 0; then rises
    linearly over ``ramp_steps`` steps (a step to 1 if ``ramp_steps == 0``) and stays at 1.
    """
    for name, value in (("step", step), ("warmup_steps", warmup_steps), ("ramp_steps", ramp_steps)):
        check_int(name, value, 0)
    if step < warmup_steps:
        return 0.0
    if ramp_steps == 0:
        return 1.0
    return min(1.0, (step - warmup_steps + 1) / ramp_steps)
