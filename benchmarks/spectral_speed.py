"""The STFTs of a row: librosa's calls against the pipeline's, same values, on RAVDESS clips.

    .venv/bin/python benchmarks/spectral_speed.py [--data ../shared/data] [--clips 240] [--repeats 5]
        [--out benchmarks/results/spectral_speed.json]

One process, one thread (``OMP_NUM_THREADS`` and friends set to 1 before numpy loads). Clips:
every ``ravdess/**/*.flac`` or ``*.wav`` under ``--data`` (default ``$SER_TEST_DATA`` or
``../shared/data``), sorted, ``--clips`` of them spread evenly; each decoded, resampled to 16 kHz
and trimmed once (:func:`ser_tasks.signal.audio.speech`). Before any clock, every pair below must give
equal arrays (``array_equal``) on every clip, or the script exits.

Pairs, old (librosa's call, the code before ``292d52f`` / ``6a59bd9``) against new:

* ``power_spectrogram``: ``np.abs(librosa.stft(y, 512, 160, 400, hann)) ** 2`` against
  :func:`ser_tasks.signal.features.power_spectrogram`, on the clip fixed to the store's 3 s (its zero
  padding included, as a row has it);
* ``log_mel_and_f0``: :func:`ser_tasks.signal.features.extract` of the log-mel and F0 with librosa's STFT
  and separate framings, against one shared framing (:func:`ser_tasks.signal.features.centred_frames`);
* ``time_stretch``: ``librosa.effects.time_stretch(y, rate=1.1)`` against
  :func:`ser_tasks.signal.augment.time_stretch`, on the trimmed clip, as augmentation gets it;
* ``pitch_shift``: ``librosa.effects.pitch_shift(y, sr=16000, n_steps=1.5)`` against
  :func:`ser_tasks.signal.augment.pitch_shift`.

Timing: wall seconds per call (``perf_counter``), old and new called back to back on each clip,
their order swapped every repeat, summed over ``--repeats`` passes: this machine's speed drifts by
tens of percent within minutes, and interleaving per clip lets both sides share the drift. Writes
``--out`` (``date``, ``commit``, ``clips``, ``repeats``, per pair ``old_ms``, ``new_ms``,
``new_over_old``) and prints it.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import librosa  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yin_speed import clip_arguments, interleaved_ms, write_result  # noqa: E402  (this folder is the script's)

from ser_tasks.config import AudioConfig, FeatureConfig  # noqa: E402
from ser_tasks.signal import audio, augment, features  # noqa: E402
from ser_tasks.store import extraction  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)  # librosa.effects passes deprecated vocoder arguments


def old_log_mel_and_f0(y: np.ndarray, sr: int, cfg: FeatureConfig) -> dict[str, np.ndarray]:
    """The log-mel (librosa's STFT) and the F0 (its own framing), as ``features.extract`` did before ``292d52f``."""
    spec = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                               window=features.hann_window(cfg.win_length), center=True)) ** 2
    mel = features.mel_basis(sr, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax) @ spec
    lm = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=cfg.top_db).astype(np.float32)
    return {"log_mel": lm, "f0": features.f0_contour(y, sr, cfg)}


def pairs(sr: int, fcfg: FeatureConfig) -> dict[str, tuple]:
    """``name -> (old, new, input)``: two callables of one clip and which form of the clip they take."""
    return {
        "power_spectrogram": (
            lambda y: np.abs(librosa.stft(y, n_fft=fcfg.n_fft, hop_length=fcfg.hop_length, win_length=fcfg.win_length,
                                          window=features.hann_window(fcfg.win_length), center=True)) ** 2,
            lambda y: features.power_spectrogram(y, fcfg), "fixed"),
        "log_mel_and_f0": (lambda y: old_log_mel_and_f0(y, sr, fcfg),
                           lambda y: features.extract(y, sr, fcfg, ("log_mel", "f0")), "fixed"),
        "time_stretch": (lambda y: librosa.effects.time_stretch(y, rate=1.1),
                         lambda y: augment.time_stretch(y, 1.1), "trimmed"),
        "pitch_shift": (lambda y: librosa.effects.pitch_shift(y, sr=sr, n_steps=1.5),
                        lambda y: augment.pitch_shift(y, sr, 1.5), "trimmed"),
    }


def same(a, b) -> bool:
    """Equal arrays, or dicts of them with the same keys."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a.dtype == b.dtype and np.array_equal(a, b)


def main() -> None:
    """Parse the arguments, check equality, time both sides of each pair and write the JSON."""
    args, files = clip_arguments(__doc__, 5, "spectral_speed.json")
    acfg, fcfg = AudioConfig(), FeatureConfig()
    sr = acfg.sample_rate
    extraction.warm_up(acfg, fcfg, augment=True)
    trimmed = [audio.speech(audio.load_audio(str(f), sr), acfg, str(f)) for f in files]
    inputs = {"trimmed": trimmed, "fixed": [audio.fix_length(y, acfg.n_samples) for y in trimmed]}
    results = {}
    for name, (old, new, form) in pairs(sr, fcfg).items():
        clips = inputs[form]
        for f, y in zip(files, clips, strict=True):
            if not same(old(y), new(y)):
                raise SystemExit(f"{f}: {name} differs between librosa's call and the pipeline's")
        results[name] = interleaved_ms(old, new, clips, args.repeats)
    write_result(args.out, {"clips": len(files), "repeats": args.repeats, "equal_on_every_clip": True, **results})


if __name__ == "__main__":
    main()
