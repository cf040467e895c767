"""Shared pytest configuration.

- A hypothesis profile sized for a 2-core CI machine (deterministic: derandomized).
- ``device`` fixtures: CPU always, CUDA when present (skipped with the reason otherwise).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("CNNBOOK_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so every test sees the same random inputs on every run."""
    return np.random.default_rng(0)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not _cuda_available(), reason="no CUDA device on this machine")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=[requires_cuda, pytest.mark.cuda])])
def device(request) -> str:
    """Run a test on the CPU and, when one is present, on CUDA."""
    return request.param
