"""The reference took torch's names; every old name still works, warns, and maps its old keywords."""

from __future__ import annotations

import numpy as np
import pytest

import cnnbook.reference as reference
import cnnbook.reference.norm as norm
from cnnbook.reference._renamed import RENAMED


@pytest.mark.parametrize("old_name", sorted(RENAMED))
def test_every_old_name_resolves_to_its_new_function_with_a_warning(old_name):
    new_name, _ = RENAMED[old_name]
    old = getattr(reference, old_name)
    assert old.__wrapped__ is getattr(reference, new_name)
    assert old_name not in reference.__all__ and new_name in reference.__all__


def test_old_keywords_are_mapped_and_the_warning_names_the_new_ones(rng):
    x = rng.standard_normal((4, 3))
    weight, bias = rng.standard_normal(3), rng.standard_normal(3)
    with pytest.warns(DeprecationWarning, match=r"batchnorm_forward is now batch_norm_forward .*train= is training="):
        old, _ = reference.batchnorm_forward(x, gamma=weight, beta=bias, state=reference.BatchNormState.initial(3),
                                             train=True)
    new, _ = reference.batch_norm_forward(x, weight, bias, reference.BatchNormState.initial(3), training=True)
    np.testing.assert_array_equal(old, new)
    images = rng.standard_normal((1, 2, 4, 4))
    with pytest.warns(DeprecationWarning, match="kernel= is kernel_size="):
        pooled, _ = reference.maxpool2d_forward(images, kernel=2)
    np.testing.assert_array_equal(pooled, reference.max_pool2d_forward(images, kernel_size=2)[0])
    with pytest.warns(DeprecationWarning, match="train= is now training="):
        dropped, _ = reference.dropout_forward(images, 0.5, train=False)
    np.testing.assert_array_equal(dropped, images)


def test_submodules_resolve_old_names_and_unknown_names_still_fail():
    with pytest.warns(DeprecationWarning):
        norm.layernorm_forward(np.ones((2, 3)), np.ones(3), np.zeros(3))
    with pytest.raises(AttributeError, match="has no attribute 'batchnorm_fwd'"):
        norm.batchnorm_fwd  # noqa: B018
