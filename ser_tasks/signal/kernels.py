"""Loops of the feature step compiled with numba, with numpy's and librosa's values bit for bit.

Each replaces numpy or librosa code that every row of a corpus runs, with the same operations in
the same order and dtypes, so the result is equal, not close (``tests/test_kernels.py``,
``tests/test_features.py`` and ``tests/test_augment.py`` hold each to ``array_equal``):

- :func:`cumsum`: ``np.cumsum``, whose ``add.accumulate`` spends about ten times an add on each
  element (numpy 2.5). Element ``j`` is ``out[j - 1] + x[j]`` and the first is copied, so ``-0.0``
  stays ``-0.0``; along the first axis the loop runs across contiguous rows, which the compiler
  vectorises. The RMS running sum and the phase vocoder's phase accumulation use it.
- :func:`yin_lags`: YIN's difference function, normalisation and period choice, one frame at a
  time instead of ten temporary ``(frames, lags)`` arrays (:func:`ser_tasks.signal.features.yin`).
- :func:`phasor` and :func:`overlap_add`: the phase vocoder's ``librosa.util.phasor`` and
  ``librosa.istft``'s windowed overlap-add (:func:`ser_tasks.signal.augment.phase_vocoder`,
  :func:`ser_tasks.signal.augment.istft`).

docs/benchmarks.md gives the timings. Compiled on first use per dtype and layout and cached on disk
(``cache=True``); the worker warm-up (:func:`ser_tasks.store.extraction.warm_up`) makes that first use.
numba itself is imported then too, not with this module: the flow's process imports the feature
code to plan and never computes.
"""

from __future__ import annotations

import functools

import numpy as np


def _along_rows(x, out):
    for i in range(x.shape[0]):
        s = x[i, 0]
        out[i, 0] = s
        for j in range(1, x.shape[1]):
            s = s + x[i, j]
            out[i, j] = s


def _down_columns(x, out):
    for j in range(x.shape[1]):
        out[0, j] = x[0, j]
    for i in range(1, x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = out[i - 1, j] + x[i, j]


def _overlap_add(frames, window, hop, skip, out):
    # librosa's __overlap_add adds a float64 frame into a float32 buffer: each sum in float64,
    # rounded to float32, frame after frame; the same here, window product included
    for k in range(frames.shape[0]):
        start = k * hop - skip
        for j in range(max(0, -start), min(frames.shape[1], out.shape[0] - start)):
            out[start + j] = out[start + j] + window[j] * np.float64(frames[k, j])


def _yin_lags(frames, acf, min_period, max_period, threshold, lag_out, shift_out):
    # ser_tasks.signal.features.yin's former numpy steps, row by row, in their dtypes: energy and difference
    # in the frames' dtype, mean and normalised difference in float64 (float32 / int64 promotes)
    n_lags = max_period - min_period + 1
    diff = np.empty(max_period, dtype=acf.dtype)
    cmnd = np.empty(n_lags, dtype=np.float64)
    tiny = np.finfo(np.float64).tiny
    two = np.float32(2)
    for i in range(frames.shape[0]):
        energy = frames[i, 0] * frames[i, 0]
        for k in range(max_period):  # lag k + 1
            if k > 0:
                energy = energy + frames[i, k] * frames[i, k]
            diff[k] = two * (acf[i, 0] - acf[i, k + 1]) - (energy if k > 0 else np.float32(0))
        running = diff[0]
        for k in range(max_period):
            if k > 0:
                running = running + diff[k]
            if k >= min_period - 1:
                cmnd[k - min_period + 1] = np.float64(diff[k]) / (np.float64(running) / np.float64(k + 1) + tiny)
        lag = -1
        for k in range(n_lags):
            if cmnd[k] < threshold:
                if k == 0:
                    trough = cmnd[0] < cmnd[1]
                elif k == n_lags - 1:
                    trough = cmnd[k] < cmnd[k - 1]
                else:
                    trough = cmnd[k] < cmnd[k - 1] and cmnd[k] <= cmnd[k + 1]
                if trough:
                    lag = k
                    break
        if lag < 0:  # argmin: the first smallest
            lag = 0
            for k in range(1, n_lags):
                if cmnd[k] < cmnd[lag]:
                    lag = k
        lag_out[i] = lag
        shift_out[i] = 0.0
        if 0 < lag < n_lags - 1:
            left, mid, right = cmnd[lag - 1], cmnd[lag], cmnd[lag + 1]
            a = right + left - 2 * mid
            b = (right - left) / 2
            if abs(b) < abs(a):
                shift_out[i] = -b / a


def _phasor(angles, mag, out):
    # librosa.util.phasor at float32: complex64(cos, sin) (float32 libm), then multiplied by the
    # float64 magnitude as numpy multiplies complex128 by a real: re = c m - s 0, im = c 0 + s m
    for i in range(angles.shape[0]):
        for j in range(angles.shape[1]):
            c, s, m = np.float64(np.cos(angles[i, j])), np.float64(np.sin(angles[i, j])), mag[i, j]
            out[i, j] = complex(np.float32(c * m - s * 0.0), np.float32(c * 0.0 + s * m))


@functools.cache
def _compiled() -> dict:
    """The loops above by name (``"along_rows"``, ...), compiled by numba (imported here, on first use)."""
    import numba

    loops = (_along_rows, _down_columns, _overlap_add, _yin_lags, _phasor)
    return {f.__name__.lstrip("_"): numba.njit(cache=True, nogil=True)(f) for f in loops}


def overlap_add(frames: np.ndarray, window: np.ndarray, hop: int, skip: int, length: int) -> np.ndarray:
    """Windowed overlap-add of frames into a float32 signal, as ``librosa.istft`` does it (before normalising).

    Frame ``k`` times ``window`` (in float64) is added at sample ``k * hop - skip``, frames in order,
    into a float32 buffer that starts at zero, each sum rounded to float32: ``librosa.istft``'s
    head block and ``__overlap_add`` in one pass, so the result is equal to theirs.

    Args:
        frames: ``(T, n_fft)`` float32 inverse FFTs, one frame per row.
        window: ``(n_fft,)`` float64 synthesis window.
        hop: hop between frames, samples.
        skip: samples of the frame grid before the signal's first (``n_fft // 2`` for centred frames).
        length: output samples; what falls outside ``[0, length)`` is dropped.

    Returns:
        ``(length,)`` float32.
    """
    out = np.zeros(length, dtype=np.float32)
    if frames.size and length:
        _compiled()["overlap_add"](frames, window, hop, skip, out)
    return out


def cumsum(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``np.cumsum(x, axis=axis)`` for a 1-D or 2-D float or integer array, equal to numpy's, element for element.

    Args:
        x: ``(n,)`` or ``(n, m)`` array of a numeric dtype; any memory layout.
        axis: the axis to sum along (``0``, ``1`` or ``-1``; a 1-D array has only ``0`` / ``-1``).

    Returns:
        A new C-ordered array of ``x``'s shape and dtype (numpy's cumsum keeps the dtype of a float
        input; integer input is summed in its own dtype here, where numpy would widen a narrow one,
        so pass ``int64`` for counts).

    Raises:
        ValueError: ``x`` has more than two dimensions, or ``axis`` is out of range.
    """
    loops = _compiled()
    if x.ndim == 1:
        if axis not in (0, -1):
            raise ValueError(f"axis {axis} is out of range for a 1-D array")
        out = np.empty(x.shape, dtype=x.dtype)
        if x.size:
            loops["along_rows"](x.reshape(1, -1), out.reshape(1, -1))
        return out
    if x.ndim != 2:
        raise ValueError(f"cumsum takes a 1-D or 2-D array, got {x.ndim}-D")
    if axis not in (0, 1, -1, -2):
        raise ValueError(f"axis {axis} is out of range for a 2-D array")
    out = np.empty(x.shape, dtype=x.dtype)
    if x.size:
        loops["down_columns" if axis in (0, -2) else "along_rows"](x, out)
    return out


def yin_lags(frames: np.ndarray, acf: np.ndarray, min_period: int, max_period: int,
             threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """YIN's period search per frame (de Cheveigné & Kawahara 2002), ``librosa.yin``'s arithmetic in one pass.

    For each frame: the difference function from the autocorrelation and the running energy
    (float32, lag 1's energy term 0 as librosa has it), its cumulative-mean normalisation (float64),
    the first lag in ``[min_period, max_period]`` that is a local minimum below ``threshold`` (else
    the global minimum), and the parabolic refinement at that lag (0 at either end of the range and
    where the vertex lies more than one lag away). The operations and dtypes of the numpy steps it
    replaces in :func:`ser_tasks.signal.features.yin`, without their ten temporary ``(frames, lags)`` arrays.

    Args:
        frames: ``(T, frame_length)`` float32 (or float64) frames, one per row.
        acf: ``(T, n)`` autocorrelation of each frame, ``frames``' dtype, ``n > max_period``.
        min_period: shortest period searched, samples (>= 1).
        max_period: longest period searched, samples (``min_period + 2 <= max_period < frame_length``).
        threshold: YIN's trough threshold on the normalised difference.

    Returns:
        ``(lag, shift)``: ``(T,)`` int64 lag offset from ``min_period`` and ``(T,)`` float64 shift;
        the period is ``min_period + lag + shift`` samples.
    """
    lag, shift = np.empty(frames.shape[0], dtype=np.int64), np.empty(frames.shape[0], dtype=np.float64)
    if frames.shape[0]:
        _compiled()["yin_lags"](frames, acf, min_period, max_period, threshold, lag, shift)
    return lag, shift


def phasor(angles: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """``librosa.util.phasor(angles, mag=mag)`` for float32 angles, float64 magnitudes: equal, signs of zero included.

    ``mag * exp(1j * angles)`` as librosa computes it (float32 cosine and sine, the product in
    complex128, stored as complex64), in one pass instead of a ufunc call and an in-place multiply.

    Args:
        angles: ``(n, m)`` float32 phases, radians.
        mag: ``(n, m)`` float64 magnitudes.

    Returns:
        ``(n, m)`` complex64, C order.

    Raises:
        ValueError: other dtypes or shapes (librosa.util.phasor serves those).
    """
    if angles.dtype != np.float32 or mag.dtype != np.float64 or angles.ndim != 2 or angles.shape != mag.shape:
        raise ValueError(f"phasor takes (n, m) float32 angles and float64 magnitudes of one shape, got "
                         f"{angles.dtype} {angles.shape} and {mag.dtype} {mag.shape}")
    out = np.empty(angles.shape, dtype=np.complex64)
    if out.size:
        _compiled()["phasor"](angles, mag, out)
    return out
