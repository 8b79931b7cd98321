"""Reading logs: schema, CSV and MovieLens readers, streaming tf.data input, TFRecord
samples, feature-kind inference and one-pass statistics."""
