import librosa
import numpy as np
import pytest
import scipy.fft

from conftest import SR, sine
from ser_tasks.config import AudioConfig, FeatureConfig
from ser_tasks.features import extract, feature_shapes, log_mel, n_frames


def test_all_features_share_one_frame_grid():
    audio, cfg = AudioConfig(), FeatureConfig()
    y = sine(440, audio.duration)
    feats = extract(y, SR, cfg)
    shapes = feature_shapes(audio, cfg)
    assert {k: v.shape for k, v in feats.items()} == shapes
    assert n_frames(audio, cfg) == 301 and all(v.dtype == np.float32 for v in feats.values())


def test_mfcc_is_the_dct_of_the_log_mel():
    cfg = FeatureConfig()
    feats = extract(sine(300, 1.0), SR, cfg)
    dct = scipy.fft.dct(feats["log_mel"], type=2, axis=0, norm="ortho")[: cfg.n_mfcc]
    np.testing.assert_allclose(feats["mfcc"], dct, rtol=1e-4, atol=1e-3)


def test_zcr_and_rms_of_a_sine():
    cfg = FeatureConfig()
    feats = extract(sine(1000, 1.0, amp=0.5), SR, cfg)
    inner = slice(5, -5)  # edge frames include the zero padding
    assert np.median(feats["zcr"][inner]) == pytest.approx(2 * 1000 / SR, rel=0.05)
    assert np.median(feats["rms"][inner]) == pytest.approx(0.5 / np.sqrt(2), rel=0.03)


def test_log_mel_peaks_in_the_band_of_the_tone():
    cfg = FeatureConfig()
    lm = log_mel(sine(1000, 1.0), SR, cfg)
    centres = librosa.mel_frequencies(n_mels=cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax)[1:-1]
    peak_band = int(np.argmax(lm[:, 50]))
    assert abs(centres[peak_band] - 1000) < 100
    assert lm.max() - lm.min() <= cfg.top_db + 1e-3  # floored top_db below the peak
