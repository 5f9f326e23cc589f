import pytest

from harness.profile import load_profile


@pytest.fixture(scope="session")
def h100():
    return load_profile("h100-sxm-pcie5")
