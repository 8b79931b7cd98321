"""Numeric columns: standardized value + missing flag, or quantile buckets embedded.

Missing numbers are NaN (see `tfrecall.io.schema`); ±inf is treated as missing too.
Both layers first replace non-finite inputs by 0 and only then do any arithmetic, so
no NaN ever enters a computation whose gradient is taken: ``tf.where(ok, f(x), d)``
with a NaN ``x`` gives the right value but a NaN gradient, because the unselected
branch's gradient ``0 * f'(NaN)`` is NaN.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from tfrecall._backend import keras, register, tf

EPSILON = 1e-7
"""Added to the variance under the square root, as in batch normalization."""
MAX_ABS_Z = 1e4
"""|z| is clipped to this. A finite but huge input (1e30) would otherwise give a z whose
square overflows float32 in the tower's L2 normalisation, which then returns an all-zero
embedding (every item scored 0). No value of a sane column is 10^4 deviations out, so
the clip changes nothing else, and training and serving clip alike (the same layer)."""


def signed_log1p(x):
    """sign(x) * log1p(|x|): compresses heavy tails, keeps the sign, 0 -> 0 (numpy or tf)."""
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return np.sign(x) * np.log1p(np.abs(x))
    return tf.sign(x) * tf.math.log1p(tf.abs(x))


def _finite_values(values, log1p: bool, owner: str) -> np.ndarray:
    """The finite (transformed) values of a numeric column, flattened, as float64."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iufb":
        raise TypeError(f"{owner}: adapt needs numeric values, got an array of dtype {arr.dtype}")
    arr = arr.astype(np.float64).reshape(-1)
    if log1p:
        arr = signed_log1p(arr)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        raise ValueError(f"{owner}: adapt got no finite value (the column is empty or all NaN/inf)")
    return arr


def _numeric_input(inputs, owner: str) -> tf.Tensor:
    inputs = tf.convert_to_tensor(inputs)
    if not (inputs.dtype.is_floating or inputs.dtype.is_integer):
        raise TypeError(
            f"{owner}: expects a float or integer tensor, got dtype {inputs.dtype.name}"
        )
    # float32 whatever the compute dtype: a float16 cast would turn values above
    # 65504 into inf and so into "missing".
    return tf.cast(inputs, tf.float32)


@register
class ContinuousFeature(keras.layers.Layer):
    """A number as ``[z, missing]``: its z-score, and 1.0 where it was NaN/inf.

    Definition (t is the value, or ``sign(x) * log1p(|x|)`` when `log1p`):
    ``z = clip((t - mean) / sqrt(variance + EPSILON), ±MAX_ABS_Z)`` for finite x; for NaN/±inf x,
    ``z = default``, a trainable scalar initialised to 0 (the model learns what a
    missing value should look like), and ``missing = 1``.

    `keras.layers.Normalization` is not reused: its `adapt` averages NaNs into the
    mean and it has no missing flag or learned default; the arithmetic is one line.

    Args:
      mean: mean of t over the finite training values (None: learn with `adapt`).
      variance: variance of t (population, ddof=0); 0 is treated as 1 (a constant
        column then gives z = 0 rather than a division by ~0).
      log1p: apply sign(x) * log1p(|x|) before standardizing.
      **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
      inputs: float or integer values of any shape S.

    Returns:
      S + (2,) float tensor ``[z, missing]``.

    Example:
      >>> layer = ContinuousFeature(mean=1.0, variance=4.0)
      >>> layer(tf.constant([3.0, float("nan")]))  # [[1, 0], [default, 1]]
    """

    def __init__(
        self,
        mean: Optional[float] = None,
        variance: Optional[float] = None,
        log1p: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if (mean is None) != (variance is None):
            raise ValueError(f"{self._owner}: give both mean and variance or neither")
        if mean is not None:
            if not math.isfinite(float(mean)):
                raise ValueError(f"{self._owner}: mean must be finite, got {mean!r}")
            if not math.isfinite(float(variance)) or float(variance) < 0:
                raise ValueError(
                    f"{self._owner}: variance must be finite and >= 0, got {variance!r}"
                )
        self.mean = None if mean is None else float(mean)
        self.variance = None if variance is None else float(variance)
        self.log1p = bool(log1p)

    @property
    def _owner(self) -> str:
        return f"ContinuousFeature {self.name!r}"

    def adapt(self, values) -> None:
        """Sets mean and variance from the finite values (after log1p if set)."""
        if self.built:
            raise ValueError(
                f"{self._owner}: adapt() after the layer was built is not supported (its "
                "mean/variance are traced into the call); adapt before the first call"
            )
        t = _finite_values(values, self.log1p, self._owner)
        self.mean = float(t.mean())
        self.variance = float(t.var())

    def adapt_from_moments(self, mean: float, variance: float) -> None:
        """Sets precomputed moments of t (after log1p if set), e.g. from a streaming pass.

        Args:
          mean: mean of the finite training values of t.
          variance: their population variance (ddof=0), as `adapt` computes it.

        Raises:
          ValueError: the layer is built, or a non-finite mean / negative variance
            (a column with no finite value has NaN moments).
        """
        if self.built:
            raise ValueError(
                f"{self._owner}: adapt_from_moments() after the layer was built is not "
                "supported (its mean/variance are traced into the call); adapt before the "
                "first call"
            )
        mean, variance = float(mean), float(variance)
        if not math.isfinite(mean) or not math.isfinite(variance) or variance < 0:
            raise ValueError(
                f"{self._owner}: adapt_from_moments needs a finite mean and a finite variance "
                f">= 0, got mean={mean!r}, variance={variance!r} (no finite value seen?)"
            )
        self.mean, self.variance = mean, variance

    def build(self, input_shape):
        if self.mean is None:
            raise ValueError(
                f"{self._owner} has no mean/variance: call adapt(values) or pass mean= and "
                "variance= before using the layer"
            )
        self.default = self.add_weight(
            name="default", shape=(), initializer="zeros", trainable=True, dtype=tf.float32
        )
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        x = _numeric_input(inputs, self._owner)
        finite = tf.math.is_finite(x)
        x = tf.where(finite, x, tf.zeros_like(x))  # no NaN past this line (module docstring)
        t = signed_log1p(x) if self.log1p else x
        variance = self.variance if self.variance > 0 else 1.0
        z = (t - self.mean) / math.sqrt(variance + EPSILON)
        z = tf.clip_by_value(z, -MAX_ABS_Z, MAX_ABS_Z)  # see MAX_ABS_Z
        z = tf.where(finite, z, tf.cast(self.default, tf.float32))
        missing = tf.cast(tf.logical_not(finite), tf.float32)
        return tf.cast(tf.stack([z, missing], axis=-1), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape).concatenate([2])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"mean": self.mean, "variance": self.variance, "log1p": self.log1p})
        return config


@register
class BucketizedEmbedding(keras.layers.Layer):
    """A number cut at quantile boundaries, embedded; NaN/inf get their own bucket.

    With boundaries ``b_0 < ... < b_{k-1}`` a finite t goes to bucket
    ``i = #{j : b_j <= t}`` (`keras.layers.Discretization`, i.e.
    ``np.searchsorted(b, t, side="right")``), so buckets ``0 .. k`` hold values and
    bucket ``k + 1`` holds NaN/±inf; the table has ``k + 2`` rows.

    Args:
      embedding_dim: output width.
      boundaries: strictly increasing finite cut points (None: learn with `adapt`).
      num_buckets: `adapt` cuts at the i/num_buckets quantiles, i = 1..num_buckets-1;
        repeated quantiles (heavy ties) are merged, so there may be fewer buckets.
      log1p: apply sign(x) * log1p(|x|) first (boundaries are in that space).
      **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
      inputs: float or integer values of any shape S.

    Returns:
      S + (embedding_dim,) float tensor.
    """

    def __init__(
        self,
        embedding_dim: int,
        boundaries: Optional[Sequence[float]] = None,
        num_buckets: int = 10,
        log1p: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(embedding_dim, (int, np.integer)) or embedding_dim < 1:
            raise ValueError(
                f"{self._owner}: embedding_dim must be an integer >= 1, got {embedding_dim!r}"
            )
        if not isinstance(num_buckets, (int, np.integer)) or num_buckets < 2:
            raise ValueError(
                f"{self._owner}: num_buckets must be an integer >= 2, got {num_buckets!r}"
            )
        self.embedding_dim = int(embedding_dim)
        self.num_buckets = int(num_buckets)
        self.log1p = bool(log1p)
        self._boundaries: Optional[list] = None
        self._discretize = None
        self._embedding = None
        if boundaries is not None:
            self._set_boundaries(boundaries)

    @property
    def _owner(self) -> str:
        return f"BucketizedEmbedding {self.name!r}"

    def _set_boundaries(self, boundaries: Sequence[float]) -> None:
        b = [float(v) for v in boundaries]
        increasing = all(u < v for u, v in zip(b[:-1], b[1:], strict=True))
        if not all(math.isfinite(v) for v in b) or not increasing:
            raise ValueError(
                f"{self._owner}: boundaries must be finite and strictly increasing, got {b}"
            )
        self._boundaries = b
        self._discretize = keras.layers.Discretization(bin_boundaries=b, name="discretize")
        self._embedding = keras.layers.Embedding(
            len(b) + 2, self.embedding_dim, dtype=self.dtype_policy, name="embedding"
        )

    def adapt(self, values) -> None:
        """Learns quantile boundaries over the finite values (after log1p if set)."""
        if self.built:
            raise ValueError(
                f"{self._owner}: adapt() after the layer was built would change the size of "
                "its embedding table; adapt before the first call"
            )
        t = _finite_values(values, self.log1p, self._owner)
        self._set_quantiles(np.nanquantile(t, self.quantile_levels))

    @property
    def quantile_levels(self) -> np.ndarray:
        """``(num_buckets - 1,) float64`` the levels i / num_buckets the boundaries sit at."""
        return np.arange(1, self.num_buckets) / self.num_buckets

    def adapt_from_quantiles(self, quantiles: Sequence[float]) -> None:
        """Sets boundaries from precomputed quantiles of t at `quantile_levels`.

        The streaming counterpart of `adapt` (e.g. `StreamingStats.quantiles`); ties
        are merged as in `adapt`.

        Raises:
          ValueError: the layer is built, or `quantiles` has the wrong length or
            non-finite values.
        """
        if self.built:
            raise ValueError(
                f"{self._owner}: adapt_from_quantiles() after the layer was built would "
                "change the size of its embedding table; adapt before the first call"
            )
        quantiles = np.asarray(quantiles, np.float64).reshape(-1)
        if quantiles.size != self.num_buckets - 1 or not np.all(np.isfinite(quantiles)):
            raise ValueError(
                f"{self._owner}: adapt_from_quantiles needs {self.num_buckets - 1} finite "
                f"quantiles (levels i/{self.num_buckets}), got {quantiles.tolist()}"
            )
        self._set_quantiles(np.sort(quantiles))

    def _set_quantiles(self, quantiles: np.ndarray) -> None:
        # Rounded to float32 before deduplication: the bucketize op compares in float32,
        # and the config should hold exactly the cut points that are used.
        self._set_boundaries(np.unique(quantiles.astype(np.float32)).tolist())

    @property
    def boundaries(self) -> Optional[list]:
        """The cut points in use (after `adapt` or as given), or None."""
        return None if self._boundaries is None else list(self._boundaries)

    @property
    def nan_bucket(self) -> Optional[int]:
        """Index of the NaN/inf bucket (the last row), or None before adapt."""
        return None if self.boundaries is None else len(self.boundaries) + 1

    @property
    def embeddings(self) -> tf.Variable:
        return self._embedding.embeddings

    def build(self, input_shape):
        if self.boundaries is None:
            raise ValueError(
                f"{self._owner} has no boundaries: call adapt(values) or pass boundaries= "
                "before using the layer"
            )
        self._embedding.build((None,))
        super().build(input_shape)

    def bucketize(self, inputs: tf.Tensor) -> tf.Tensor:
        """int64 bucket index of each input, same shape (NaN/inf -> `nan_bucket`)."""
        x = _numeric_input(inputs, self._owner)
        finite = tf.math.is_finite(x)
        x = tf.where(finite, x, tf.zeros_like(x))
        t = signed_log1p(x) if self.log1p else x
        buckets = tf.cast(self._discretize(t), tf.int64)
        return tf.where(finite, buckets, tf.constant(self.nan_bucket, tf.int64))

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self._embedding(self.bucketize(inputs))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape).concatenate([self.embedding_dim])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "embedding_dim": self.embedding_dim,
                "boundaries": self.boundaries,
                "num_buckets": self.num_buckets,
                "log1p": self.log1p,
            }
        )
        return config


__all__ = ["BucketizedEmbedding", "ContinuousFeature", "EPSILON", "MAX_ABS_Z", "signed_log1p"]
