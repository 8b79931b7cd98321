"""The blocked in-batch softmax against a numpy reference: values, gradients, masking."""

import numpy as np
import pytest

from tfrecall._backend import tf
from tfrecall.losses import softmax_loss
from tfrecall.losses.in_batch import in_batch_softmax


def numpy_reference(q, c, pos, log_q=None, q_keys=None, c_keys=None):
    """Per-row loss and the gradients of sum(dy * loss), from the dense matrix in numpy."""
    s = q.astype(np.float64) @ c.T.astype(np.float64)
    if log_q is not None:
        s = s - log_q[None, :]
    valid = np.ones_like(s, bool)
    if q_keys is not None:
        valid = ~((q_keys[:, None] == c_keys[None, :])
                  & (np.arange(len(c))[None, :] != pos[:, None]))
    s_masked = np.where(valid, s, -np.inf)
    top = s_masked.max(axis=1, keepdims=True)
    lse = np.log(np.exp(s_masked - top).sum(axis=1)) + top[:, 0]
    loss = lse - s[np.arange(len(q)), pos]
    probs = np.exp(s_masked - lse[:, None])
    probs[np.arange(len(q)), pos] -= 1.0  # d loss_i / d s_ij
    return loss, probs


def random_case(rng, batch, width, dim, n_keys):
    q = rng.normal(size=(batch, dim)).astype(np.float32)
    c = rng.normal(size=(width, dim)).astype(np.float32)
    pos = rng.permutation(width)[:batch].astype(np.int32)
    log_q = rng.normal(size=width).astype(np.float32)
    c_keys = rng.integers(0, n_keys, width).astype(np.int64)
    return q, c, pos, log_q, c_keys[pos], c_keys


@pytest.mark.parametrize("block_rows", [None, 1, 4, 7, 64])
def test_values_and_gradients_match_numpy(block_rows):
    rng = np.random.default_rng(3)
    q, c, pos, log_q, q_keys, c_keys = random_case(rng, 13, 20, 5, n_keys=6)
    dy = rng.uniform(0.1, 2.0, size=13).astype(np.float32)
    qt, ct = tf.constant(q), tf.constant(c)
    with tf.GradientTape() as tape:
        tape.watch([qt, ct])
        loss = in_batch_softmax(qt, ct, pos, log_q, q_keys, c_keys, block_rows=block_rows)
        total = tf.reduce_sum(loss * dy)
    dq, dc = tape.gradient(total, [qt, ct])
    want, dlogits = numpy_reference(q, c, pos, log_q, q_keys, c_keys)
    np.testing.assert_allclose(loss.numpy(), want, rtol=1e-5, atol=1e-5)
    scaled = dlogits * dy[:, None]
    np.testing.assert_allclose(dq.numpy(), scaled @ c, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dc.numpy(), scaled.T @ q, rtol=1e-4, atol=1e-5)


def test_default_positive_is_the_diagonal_and_agrees_with_the_dense_softmax_loss():
    # The dense path the model takes otherwise: identity labels, hits marked -1.
    rng = np.random.default_rng(0)
    q = rng.normal(size=(9, 4)).astype(np.float32)
    c = rng.normal(size=(9, 4)).astype(np.float32)
    keys = np.array([1, 2, 1, 3, 4, 2, 5, 6, 1], np.int64)  # duplicated items in the batch
    labels = np.eye(9, dtype=np.float32)
    labels[(keys[:, None] == keys[None, :]) & (labels == 0)] = -1.0
    dense = softmax_loss(labels, q @ c.T).numpy()
    fused = in_batch_softmax(q, c, query_keys=keys, candidate_keys=keys, block_rows=2).numpy()
    np.testing.assert_allclose(fused, dense, rtol=1e-5, atol=1e-6)
    # Masking changes the value: without keys the duplicates count as negatives.
    unmasked = in_batch_softmax(q, c).numpy()
    assert np.all(unmasked[[0, 1, 2, 5, 8]] > fused[[0, 1, 2, 5, 8]])
    np.testing.assert_allclose(unmasked[[3, 4, 6, 7]], fused[[3, 4, 6, 7]], rtol=1e-6)


def test_dynamic_batch_in_a_graph_including_a_ragged_last_block():
    fn = tf.function(lambda q, c: in_batch_softmax(q, c, block_rows=4),
                     input_signature=[tf.TensorSpec([None, 3]), tf.TensorSpec([None, 3])])
    rng = np.random.default_rng(1)
    for batch in (1, 4, 5, 11):
        q = rng.normal(size=(batch, 3)).astype(np.float32)
        c = rng.normal(size=(batch, 3)).astype(np.float32)
        want, _ = numpy_reference(q, c, np.arange(batch))
        np.testing.assert_allclose(fn(q, c).numpy(), want, rtol=1e-5, atol=1e-6)


def test_stable_for_huge_logits():
    q = tf.constant([[100.0, 0.0], [0.0, -100.0], [-100.0, 100.0]])
    c = tf.constant([[100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])  # logits up to 1e4
    with tf.GradientTape() as tape:
        tape.watch([q, c])
        loss = in_batch_softmax(q, c, block_rows=2)
    grads = tape.gradient(loss, [q, c])
    want, _ = numpy_reference(q.numpy(), c.numpy(), np.arange(3))
    # float32 resolves 1e4 to about 1e-3: the absolute error of any float32 log-sum-exp.
    np.testing.assert_allclose(loss.numpy(), want, rtol=1e-6, atol=2e-3)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


def test_bad_arguments():
    q = tf.zeros([2, 3])
    with pytest.raises(ValueError, match="both query_keys and candidate_keys"):
        in_batch_softmax(q, q, query_keys=tf.constant([1, 2], tf.int64))
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        in_batch_softmax(tf.zeros([2, 3, 1]), q)
    with pytest.raises(ValueError, match="block_rows"):
        in_batch_softmax(q, q, block_rows=0)
