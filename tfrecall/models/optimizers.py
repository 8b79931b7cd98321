"""Adam with lazy (row-sparse) updates of embedding tables.

Keras' Adam (tf-keras 2.20, ``optimizers/adam.py``) takes an embedding's sparse gradient
and still decays ``m`` and ``v`` and moves the variable over the *whole* table at every
step: about ten passes over ``(vocabulary, dim)`` floats per table, whatever the batch
touched. On a 25M-row log (59k items) that is about 40% of a batch-128 step (BENCHMARKS.md,
"Lazy Adam"). The usual answer, TF-Addons' ``LazyAdam``, is not in our stack (TF-Addons
is end-of-life and has no TF 2.20 build), and tf-keras has none, hence this class.

`LazyAdam` updates only the rows a sparse gradient names (the batch's ids): their ``m``
and ``v`` get the Adam recurrence and the variable moves by Adam's step, with the bias
corrections of the optimizer's global step. Rows absent from the batch keep their
moments and do not move (Adam would decay the moments and keep moving the row along
its momentum). Dense gradients (towers' kernels) get Adam's update unchanged. Indices
arrive de-duplicated (the base optimizer sums repeated rows before ``update_step``).
"""

from __future__ import annotations

from tfrecall._backend import keras, tf


@keras.utils.register_keras_serializable(package="tfrecall")
class LazyAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose sparse updates touch only the rows in the gradient.

    Same arguments and slot variables as Adam (checkpoints are interchangeable).
    """

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        epsilon = self.epsilon * tf.sqrt(1 - tf.pow(beta_2, step)) if getattr(
            self, "adaptive_epsilon", False) else self.epsilon
        key = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[key], self._velocities[key]
        rows, values = gradient.indices, tf.cast(gradient.values, dtype)
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * values
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(values)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        if self.amsgrad:
            v_hat = self._velocity_hats[key]
            v_rows = tf.maximum(tf.gather(v_hat, rows), v_rows)
            v_hat.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + epsilon),
                                              rows))
