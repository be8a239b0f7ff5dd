"""The numba cumulative sums equal np.cumsum element for element (the stored features depend on it)."""

from __future__ import annotations

import numpy as np
import pytest

from ser_tasks.signal.kernels import cumsum


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape, axis", [((1000,), -1), ((1000,), 0), ((37, 251), -1), ((37, 251), 1),
                                         ((251, 37), 0), ((251, 37), -2), ((1, 5), 0), ((5, 1), -1)])
def test_equals_numpy_cumsum_bit_for_bit(dtype, shape, axis):
    # values of mixed magnitude, so that any reordering of the additions changes low bits
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 6, shape)).astype(dtype) if dtype != np.int64 \
        else rng.integers(-10**12, 10**12, shape)
    got = cumsum(x, axis)
    assert got.dtype == x.dtype and got.shape == x.shape and got.flags.c_contiguous
    np.testing.assert_array_equal(got, np.cumsum(x, axis=axis))


def test_any_layout_and_the_sign_of_a_leading_zero():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 40)).astype(np.float32)
    for view in (x.T, x[::3, ::2], np.asfortranarray(x)):
        for axis in (0, -1):
            np.testing.assert_array_equal(cumsum(view, axis), np.cumsum(view, axis=axis))
    # assert_array_equal takes -0.0 == 0.0: compare the signs of zeros too
    zeros = np.array([[-0.0, -0.0, 0.0], [-0.0, 0.0, -0.0]])
    for axis in (0, -1):
        assert (np.signbit(cumsum(zeros, axis)) == np.signbit(np.cumsum(zeros, axis=axis))).all()
    assert np.signbit(cumsum(zeros, -1)[:, 0]).all()


def test_empty_input_and_bad_arguments():
    assert cumsum(np.zeros(0)).shape == (0,)
    assert cumsum(np.zeros((0, 4)), 0).shape == (0, 4)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        cumsum(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="out of range"):
        cumsum(np.zeros(3), 1)
    with pytest.raises(ValueError, match="out of range"):
        cumsum(np.zeros((3, 3)), 2)


def test_phasor_equals_librosas_signs_of_zero_included():
    import librosa

    from ser_tasks.signal.kernels import phasor

    rng = np.random.default_rng(2)
    angles = (rng.standard_normal((50, 301)) * 10.0 ** rng.integers(-3, 4, (50, 301))).astype(np.float32)
    angles[0, :4] = [-0.0, 0.0, np.float32(np.pi), -np.float32(np.pi / 2)]
    mag = np.abs(rng.standard_normal((50, 301)))
    mag[1, :7] = 0.0
    got, expected = phasor(angles, mag), librosa.util.phasor(angles, mag=mag)
    assert got.dtype == expected.dtype == np.complex64
    np.testing.assert_array_equal(got, expected)
    for part in ("real", "imag"):
        assert (np.signbit(getattr(got, part)) == np.signbit(getattr(expected, part))).all()
    with pytest.raises(ValueError, match="float32 angles"):
        phasor(angles.astype(np.float64), mag)
