import matplotlib
import pytest

import counterpoise as cpz

matplotlib.use("Agg")

COVARIATES = ["X1", "X2", "X3", "X4", "X5", "X6"]


@pytest.fixture(scope="session")
def kim():
    """A small draw of the kernel-SBW paper's design (weak overlap)."""
    return cpz.datasets.kim2023(n=1500, overlap="weak", seed=3)
