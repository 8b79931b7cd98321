"""tfrecall.losses."""
