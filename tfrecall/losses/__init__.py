"""tfrecall.losses: pointwise, pairwise, listwise and sampled losses for retrieval.

Conventions shared by every loss (guide: ``docs/losses.md``):

- ``y_true`` (labels) and ``y_pred`` (logits) are ``(B, L)``: B lists of L candidates.
  ``y_pred`` are scores the model already divided by its temperature.
- ``label < 0`` marks padding: a padded item takes part in nothing (no softmax mass,
  no pair, no gradient). Labels are graded relevance, larger is better; ``0`` is a
  non-positive (an exposure, a sampled negative).
- Each loss computes a per-list value ``(B,)`` first (the functional cores such as
  `softmax_loss` return it). The batch loss is the MEAN over the lists that have
  something to score (a positive, or a valid pair, as each loss documents); a list
  with nothing to score contributes nothing, and a batch with none gives 0, never NaN.
  ``sample_weight`` ``(B,)`` weighs lists: ``sum_i w_i l_i / sum_{i scorable} w_i``.
  This is not Keras' ``SUM_OVER_BATCH_SIZE`` (which divides by B), so `ListLoss`
  reduces in ``__call__``; under ``tf.distribute`` the denominator is the global one
  (see `tfrecall.losses.base`). ``reduction="sum"`` / ``"none"`` are also supported.
- Stable numerics: log-softmax, log-sum-exp and softplus throughout; finite losses
  and gradients for logits of magnitude 1e4. Half-precision inputs are computed in
  float32.
- Sampling-bias correction (Yi et al., RecSys 2019): ``log Q(item)`` travels in the
  batch as ``log_q`` ``(B, L)``; the MODEL subtracts it from training logits and marks
  accidental hits as label -1 (`lists.remove_accidental_hits`) before calling the
  loss. Losses that need this have ``requires_log_q = True`` (`NCELoss`,
  `SampledSoftmaxLoss`); their functional cores take optional ``log_q``,
  ``candidate_ids`` and ``positive_ids`` to do it themselves when used standalone.
- Inside ``tfrs.tasks.Retrieval(loss=...)``: wrap any of them in `TFRSRetrievalLoss`
  (TFRS masks slots by logit, tfrecall by label; see `tfrecall.losses.tfrs_retrieval`).
"""

from tfrecall.losses.base import ListLoss, reduce_lists
from tfrecall.losses.listwise import (
    KLLoss,
    ListMLELoss,
    ListNetLoss,
    SoftmaxLoss,
    kl_loss,
    list_mle_loss,
    listnet_loss,
    softmax_loss,
)
from tfrecall.losses.pairwise import (
    BPRLoss,
    TripletHingeLoss,
    TripletLogisticLoss,
    bpr_loss,
    triplet_hinge_loss,
    triplet_logistic_loss,
)
from tfrecall.losses.pointwise import PointwiseBCELoss, pointwise_bce_loss
from tfrecall.losses.sampled import (
    NCELoss,
    NegativeSamplingLoss,
    SampledSoftmaxLoss,
    nce_loss,
    negative_sampling_loss,
    sampled_softmax_loss,
)
from tfrecall.losses.tfrs_retrieval import TFRSRetrievalLoss

__all__ = [
    "BPRLoss",
    "KLLoss",
    "ListLoss",
    "ListMLELoss",
    "ListNetLoss",
    "NCELoss",
    "NegativeSamplingLoss",
    "PointwiseBCELoss",
    "SampledSoftmaxLoss",
    "SoftmaxLoss",
    "TFRSRetrievalLoss",
    "TripletHingeLoss",
    "TripletLogisticLoss",
    "bpr_loss",
    "kl_loss",
    "list_mle_loss",
    "listnet_loss",
    "nce_loss",
    "negative_sampling_loss",
    "pointwise_bce_loss",
    "reduce_lists",
    "sampled_softmax_loss",
    "softmax_loss",
    "triplet_hinge_loss",
    "triplet_logistic_loss",
]
