"""Training samples: the sampling config, feature store, request and ranker lists,
negative pools, log Q frequencies, user histories and the per-view tf.data builders."""
