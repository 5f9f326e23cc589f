import pytest

from harness.profile import load_profile


@pytest.fixture(scope="session")
def h100():
    return load_profile("h100-sxm-pcie5")


# The GPU tests' fixtures (tests/test_replay_gpu*.py skip without CUDA before asking for them).
@pytest.fixture(scope="module")
def context():
    """A one-GPU replay context, shared by a module's tests."""
    from replay.engine import ReplayContext

    return ReplayContext(1)


@pytest.fixture(scope="module")
def profile():
    return load_profile("h100-sxm-pcie5")
