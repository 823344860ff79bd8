import numpy as np
import pytest

from coreselect import Coreset


def test_save_load_roundtrip(tmp_path):
    c = Coreset(
        np.array([5, 1, 9]),
        np.array([2.0, 0.5, 0.5]),
        gains=np.array([3.0, 2.0, 1.0]),
        objective=6.0,
        meta={"method": "craig", "budget": 3},
    )
    path = c.save(tmp_path / "c.npz")
    d = Coreset.load(path)
    assert np.array_equal(d.indices, c.indices) and d.indices.dtype == np.int64
    assert np.allclose(d.weights, c.weights) and d.weights.dtype == np.float32
    assert np.allclose(d.gains, c.gains) and d.objective == 6.0 and d.meta == c.meta


def test_invalid_coresets_are_refused():
    with pytest.raises(ValueError, match="unique"):
        Coreset(np.array([1, 1]), np.ones(2))
    with pytest.raises(ValueError, match="> 0"):
        Coreset(np.array([1, 2]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="shape"):
        Coreset(np.array([1, 2]), np.ones(3))
    with pytest.raises(FileNotFoundError):
        Coreset.load("/nonexistent/c.npz")


def test_loading_what_is_not_a_coreset_names_the_file(tmp_path):
    # numpy's message for a text file spoke of pickled data; a .npy raised AttributeError
    (tmp_path / "notes.npz").write_text("not an archive")
    np.save(tmp_path / "array.npy", np.arange(3))
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    for name, why in [
        ("notes.npz", r"not an \.npz archive"),
        ("array.npy", "a single array"),
        ("other.npz", "needs 'indices' and 'weights'"),
    ]:
        with pytest.raises(ValueError, match=rf"{name} is not a coreset file \(.*{why}"):
            Coreset.load(tmp_path / name)
