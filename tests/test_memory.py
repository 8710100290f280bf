"""counterpoise.memory.empty: numpy.empty with the pages mapped up front for large arrays."""

import numpy as np

from counterpoise import memory
from counterpoise.backends.forms import joined


def test_large_and_small_arrays_behave_as_numpy_empty(monkeypatch):
    monkeypatch.setattr(memory, "POPULATE_FROM", 1024)
    for shape in [(10, 3), (500, 7)]:                    # 240 bytes (numpy.empty) and 28,000 bytes (mapped)
        a = memory.empty(shape)
        assert a.shape == shape and a.dtype == np.float64 and a.flags.c_contiguous and a.flags.writeable
        a[:] = np.arange(a.size).reshape(shape)
        np.testing.assert_array_equal(a.sum(axis=0), np.arange(a.size).reshape(shape).sum(axis=0))


def test_a_mapped_matrix_keeps_its_column_views_joinable(monkeypatch):
    """The builder's matrix is mapped; its leading rows' column views join back into one view without a copy."""
    monkeypatch.setattr(memory, "POPULATE_FROM", 1024)
    M = memory.empty((500, 7))
    M[:] = 1.0
    rows = joined([M[:300, :4], M[:300, 4:]])
    assert np.shares_memory(rows, M) and rows.shape == (300, 7)
