"""tfrecall.evaluation."""
