"""The one crop-or-pad rule, on numpy and torch alike."""

from __future__ import annotations

import numpy as np
import torch

from model_zoo.samples import fit_length


def test_longer_is_cropped_shorter_is_zero_padded_at_the_end():
    x = np.arange(1, 6, dtype=np.float32)
    assert np.array_equal(fit_length(x, 3), [1, 2, 3])
    assert np.array_equal(fit_length(x, 7), [1, 2, 3, 4, 5, 0, 0]) and fit_length(x, 7).dtype == np.float32
    assert np.array_equal(fit_length(x, 5), x) and len(fit_length(x, -2)) == 0
    t = torch.arange(1.0, 6.0)
    assert torch.equal(fit_length(t, 3), t[:3]) and torch.equal(fit_length(t, 6), torch.tensor([1., 2, 3, 4, 5, 0]))


def test_only_the_last_axis_changes():
    x = np.ones((2, 4), np.float32)
    assert fit_length(x, 6).shape == (2, 6) and fit_length(torch.ones(2, 4), 1).shape == (2, 1)
