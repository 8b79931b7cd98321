"""Tests for tfrecall.losses.lists: the list convention helpers."""

import numpy as np

from tfrecall._backend import tf
from tfrecall.losses import lists


class ListsTest(tf.test.TestCase):
    def test_valid_mask_and_optional_mask(self):
        labels = tf.constant([[1.0, 0.0, -1.0], [-2.0, 3.0, 0.0]])
        self.assertAllEqual(lists.valid_mask(labels), [[True, True, False], [False, True, True]])
        mask = tf.constant([[True, False, True], [True, True, False]])
        self.assertAllEqual(
            lists.valid_mask(labels, mask), [[True, False, False], [False, True, False]]
        )

    def test_mask_logits_gives_no_softmax_mass(self):
        logits = tf.constant([[1e4, 2.0, 1e4]])
        masked = lists.mask_logits(logits, tf.constant([[False, True, True]]))
        self.assertEqual(float(masked[0, 0]), lists.MIN_FLOAT)
        probs = tf.nn.softmax(masked)
        self.assertEqual(float(probs[0, 0]), 0.0)
        # MIN_FLOAT is finfo(float32).min / 100: finite, and a few of them still sum finitely.
        self.assertAllClose(lists.MIN_FLOAT, np.finfo(np.float32).min / 100.0)
        self.assertTrue(np.isfinite(np.float32(lists.MIN_FLOAT) * 50))

    def test_remove_accidental_hits_shared_and_per_row_ids(self):
        labels = tf.constant([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
        # In-batch: one id row shared by every list. Row 0's positive is 7, which also
        # sits at column 2; row 1's positive is 4, duplicated nowhere else.
        shared = lists.remove_accidental_hits(
            labels, tf.constant([7, 4, 7, 9]), tf.constant([7, 4])
        )
        self.assertAllEqual(shared, [[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, -1.0]])
        per_row = lists.remove_accidental_hits(
            labels, tf.constant([[7, 3, 2, 7], [5, 4, 4, 4]]), tf.constant([7, 4])
        )
        # The positive itself stays; a padded slot stays padded.
        self.assertAllEqual(per_row, [[1.0, 0.0, 0.0, -1.0], [0.0, 1.0, -1.0, -1.0]])

    def test_remove_accidental_hits_string_ids(self):
        labels = tf.constant([[1.0, 0.0]])
        out = lists.remove_accidental_hits(labels, tf.constant([["a", "a"]]), tf.constant(["a"]))
        self.assertAllEqual(out, [[1.0, -1.0]])

    def test_correct_log_q(self):
        logits = tf.constant([[1.0, 2.0], [3.0, 4.0]])
        self.assertIs(lists.correct_log_q(logits, None), logits)
        # (L,) log_q broadcasts over rows: s - log Q.
        self.assertAllClose(
            lists.correct_log_q(logits, np.log([0.5, 0.25])),
            [[1.0 + np.log(2.0), 2.0 + np.log(4.0)], [3.0 + np.log(2.0), 4.0 + np.log(4.0)]],
        )


if __name__ == "__main__":
    tf.test.main()
