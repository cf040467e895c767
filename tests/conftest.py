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


@pytest.fixture(scope="session")
def built_book():
    """The HTML book, built once a session the way the README says (`make -s book`).

    Shared by test_book.py, test_site_static.py and test_site.py. The build runs
    with -W -n (nitpicky, warnings are errors), so a warning fails it here.
    """
    import subprocess

    from booksite import HTML, REPO

    import hashlib

    from filelock import FileLock

    # one build at a time, should several test processes ask at once (pytest -n): the second finds it cached
    with FileLock(os.path.join(os.environ.get("TMPDIR", "/tmp"), "cnnbook-book-" + hashlib.sha256(str(REPO).encode()).hexdigest()[:12] + ".lock")):
        result = subprocess.run(["make", "-s", "book"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"make book failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    return HTML


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests use tiny tensors: one torch thread avoids thread-pool start-up and
    contention on a busy 2-core CI machine (measured 10x faster there). Speed is
    measured in benchmarks/, never here."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def bubblewrap():
    """The grading sandbox's bubblewrap: skip only where it cannot be installed (not root); fail where it can.

    `make test` installs it as root (tools/system-packages.txt), so as root a missing
    bwrap is a broken set-up, not a reason to skip the grading tests.
    """
    from cnnbook_grader import sandbox

    if sandbox.available():
        return
    install = "apt-get install -y bubblewrap  (or: make system-packages, as root)"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        pytest.skip(f"needs bubblewrap, which only root can install: {install}")
    pytest.fail(f"bubblewrap is missing although this runs as root: {install}")


@pytest.fixture(autouse=True, scope="session")
def shared_oracle_cache(tmp_path_factory):
    """One oracle cache for the whole run: a recording depends only on the instructor notebook's
    content, the recording format and the student's seed, so every test course can reuse it."""
    previous = os.environ.get("CNNBOOK_ORACLE_CACHE")
    base = tmp_path_factory.getbasetemp()
    # under pytest -n each worker has its own base; recordings are written atomically, so they share one
    cache = (base.parent if base.name.startswith("popen-gw") else base) / "oracle-cache"
    cache.mkdir(exist_ok=True)
    os.environ["CNNBOOK_ORACLE_CACHE"] = str(cache)
    yield
    if previous is None:
        os.environ.pop("CNNBOOK_ORACLE_CACHE", None)
    else:
        os.environ["CNNBOOK_ORACLE_CACHE"] = previous
