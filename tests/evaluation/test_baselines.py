import numpy as np

from tfrecall.evaluation.baselines import popularity_scores


def test_popularity_counts_training_positives_per_catalogue_item():
    catalogue = np.array(["a", "b", "c"], object)
    # a twice, c once, an item outside the catalogue ignored.
    scores = popularity_scores(np.array(["a", "c", "a", "zz"], object), catalogue)
    np.testing.assert_array_equal(scores, [2.0, 0.0, 1.0])
