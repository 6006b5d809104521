"""Optimizer builders: per-parameter learning-rate multipliers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padir import optimizers


def test_learning_rate_multipliers_scale_only_the_named_updates():
  params = {"token_embedder": {"embedding": jnp.ones((4, 2))},
            "decoder": {"logits_dense": {"kernel": jnp.ones((2, 4))}}}
  grads = jax.tree_util.tree_map(lambda p: 0.5 * p, params)
  plain = optimizers.adamw(1e-3)
  scaled = optimizers.adamw(1e-3, learning_rate_multipliers={"token_embedder/.*": 16.0})
  base, _ = plain.update(grads, plain.init(params), params)
  updates, _ = scaled.update(grads, scaled.init(params), params)
  np.testing.assert_allclose(updates["token_embedder"]["embedding"],
                             16.0 * base["token_embedder"]["embedding"], rtol=1e-6)
  np.testing.assert_array_equal(updates["decoder"]["logits_dense"]["kernel"],
                                base["decoder"]["logits_dense"]["kernel"])
  # A pattern that names no parameter (a typo) is an error at init, naming it.
  typo = optimizers.adamw(1e-3, learning_rate_multipliers={"token_embeder/embedding": 16.0})
  with pytest.raises(ValueError, match="'token_embeder/embedding' matches no parameter"):
    typo.init(params)
