"""Text features inside the model: DSSM word hashing and hashed word n-grams, pooled.

A title, tag list or description is encoded from its raw string, so serving takes the
text as it is and an item never seen in training still gets a vector from its words
(the cold-start argument for two-tower recall). Per value:

1. lower-case; every run of characters that are not letters or digits is a word break;
2. letter trigrams of each word marked ``#word#`` (Huang et al., DSSM, CIKM 2013):
   ``#wo``, ``wor``, ``ord``, ``rd#``; a one-letter word ``a`` gives ``#a#``;
3. word n-grams of the configured orders (default unigrams and bigrams), joined by
   a space: ``"red shoe"`` gives ``red``, ``shoe``, ``red shoe``;
4. every token is hashed (`tf.strings.to_hash_bucket_fast`, FarmHash fingerprint64):
   trigrams into ``hash_buckets`` rows, word n-grams into the next ``hash_buckets`` rows
   of the same table, so a trigram and a word never share a row by construction;
5. the embedding bag: the mean of the tokens' rows; a value with no token (empty or
   punctuation only) takes a learned row of its own (the empty-text row).

Written by hand because Keras' `TextVectorization` keeps a vocabulary (adapted, and
unknown words all share OOV rows, the opposite of what a cold-start feature needs) and
has no letter-trigram split; hashing needs no adaptation, so the layer is stateless
apart from its table and serializes by its configuration alone.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from tfrecall._backend import keras, register, tf

WORD_BREAK = r"[^\p{L}\p{N}]+"  # RE2: anything but letters and digits (any script)
DEFAULT_HASH_BUCKETS = 1 << 15


def text_tokens(texts: tf.Tensor, ngram_orders: Sequence[int] = (1, 2)
                ) -> Tuple[tf.RaggedTensor, tf.RaggedTensor]:
    """The letter trigrams and word n-grams of each value of ``texts`` ``(N,)``.

    Returns:
      ``(trigrams, ngrams)``, both ``(N, None)`` ragged string tensors, in order of
      appearance (trigrams word by word).
    """
    texts = tf.strings.lower(tf.convert_to_tensor(texts), encoding="utf-8")
    words = tf.strings.split(tf.strings.strip(tf.strings.regex_replace(texts, WORD_BREAK, " ")))
    marked = tf.strings.join(["#", words, "#"])  # ragged (N, W)
    chars = tf.strings.unicode_split(marked, "UTF-8")  # (N, W, C)
    trigrams = tf.strings.ngrams(chars, 3, separator="").merge_dims(1, 2)  # (N, T)
    ngrams = tf.strings.ngrams(words, tuple(int(n) for n in ngram_orders), separator=" ")
    return trigrams, ngrams


@register
class TextEmbedding(keras.layers.Layer):
    """Raw text (any shape S of strings) -> ``S + (embedding_dim,)`` mean-pooled vectors.

    Args:
      embedding_dim: output width.
      hash_buckets: rows for trigrams, and as many for word n-grams.
      ngram_orders: word n-gram orders (e.g. ``(1, 2)``).

    Raises:
      ValueError: a bucket count or order below 1, or no order.
    """

    def __init__(self, embedding_dim: int, hash_buckets: int = DEFAULT_HASH_BUCKETS,
                 ngram_orders: Sequence[int] = (1, 2), **kwargs):
        super().__init__(**kwargs)
        orders = tuple(int(n) for n in ngram_orders)
        if int(embedding_dim) < 1 or int(hash_buckets) < 1 or not orders or min(orders) < 1:
            raise ValueError(f"{self.name}: embedding_dim and hash_buckets must be >= 1 and "
                             f"ngram_orders non-empty positive, got {embedding_dim}, "
                             f"{hash_buckets}, {ngram_orders}")
        self.embedding_dim, self.hash_buckets = int(embedding_dim), int(hash_buckets)
        self.ngram_orders = orders

    @property
    def empty_row(self) -> int:
        return 2 * self.hash_buckets

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(2 * self.hash_buckets + 1, self.embedding_dim),
            initializer=keras.initializers.RandomUniform(-0.05, 0.05), trainable=True)
        super().build(input_shape)

    def token_ids(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """``(N, None)`` int64 table rows of each value's tokens (trigrams, then n-grams)."""
        trigrams, ngrams = text_tokens(texts, self.ngram_orders)
        tri = tf.strings.to_hash_bucket_fast(trigrams, self.hash_buckets)
        words = tf.strings.to_hash_bucket_fast(ngrams, self.hash_buckets) + self.hash_buckets
        return tf.concat([tri, words], axis=1)

    def adapt(self, values: np.ndarray) -> None:
        """Nothing to learn from data: tokens are hashed (kept for the encoder's loop)."""

    def call(self, inputs):
        inputs = tf.convert_to_tensor(inputs)
        flat = tf.reshape(inputs, [-1])
        ids = self.token_ids(flat)
        vectors = tf.gather(self.embeddings, ids.flat_values)
        means = tf.math.unsorted_segment_mean(vectors, ids.value_rowids(), tf.shape(flat)[0])
        empty = tf.equal(ids.row_lengths(), 0)[:, tf.newaxis]
        means = tf.where(empty, self.embeddings[self.empty_row][tf.newaxis, :], means)
        out = tf.reshape(means, tf.concat([tf.shape(inputs), [self.embedding_dim]], 0))
        out.set_shape(inputs.shape.concatenate([self.embedding_dim]))
        return out

    def get_config(self):
        config = super().get_config()
        config.update(embedding_dim=self.embedding_dim, hash_buckets=self.hash_buckets,
                      ngram_orders=list(self.ngram_orders))
        return config
