"""Embedding throughput of the pretrained encoder per core: unpadded clips against Whisper's 30 s padding.

    .venv/bin/python benchmarks/encoder_speed.py [--data ../shared/data] [--clips 60] [--encoder whisper-base]
        [--out benchmarks/results/encoder_speed.json]

One process, one thread (TensorFlow's intra- and inter-op pools and BLAS set to 1), so the figures
are per core. Clips: ``--clips`` RAVDESS files spread evenly over ``ravdess/**/*.flac`` under
``--data`` (default ``$SER_TEST_DATA`` or ``../shared/data``), each decoded and trimmed once as
extraction does (:func:`ser_tasks.signal.audio.speech`). Timed, per clip, from the trimmed waveform to
the pooled statistics of every layer:

* ``ours``: :meth:`ser_tasks.signal.encoder.Encoder.embed`, the pipeline's path: Whisper's log-mel of the
  speech alone, the encoder on its frames (positions sliced), pooled over them;
* ``padded``: the loop a plain transformers user writes: Whisper's feature extractor pads every
  clip to 30 s (3,000 frames) by default, the encoder runs over all 1,500 positions, and the states
  are pooled over the frames of the speech only. transformers itself needs PyTorch, whose PyPI build
  is CUDA's (several GB) and is not installed here, so the same keras-hub network runs both loops: the
  difference measured is the padding, not the framework.

Each clip runs once untimed (warm-up, tracing) and the two paths alternate per clip. Writes ``--out``
(``date``, ``commit``, ``clips``, ``encoder``, ``seconds_per_clip`` both ways,
``encoder_clips_per_second_per_core``, ``naive_clips_per_second_per_core``, ``encoder_vs_naive_speedup``,
``mean_clip_seconds``) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
             "TF_NUM_INTEROP_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    """Time both loops on the same clips and write the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SER_TEST_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--clips", type=int, default=60)
    ap.add_argument("--encoder", default="whisper-base")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "encoder_speed.json")
    args = ap.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from ser_tasks.config import AudioConfig
    from ser_tasks.signal import audio
    from ser_tasks.signal.encoder import SAMPLE_RATE, Encoder, log_mel, pooled_stats

    files = sorted((args.data / "ravdess").rglob("*.flac"))
    if not files:
        raise SystemExit(f"no RAVDESS clips under {args.data}/ravdess")
    picks = [files[i] for i in np.linspace(0, len(files) - 1, args.clips).astype(int)]
    cfg = AudioConfig()
    clips = [audio.speech(audio.load_audio(str(p), SAMPLE_RATE), cfg, str(p)) for p in picks]
    encoder = Encoder(args.encoder)

    def padded(y: np.ndarray) -> np.ndarray:
        states = encoder.states(log_mel(y, encoder.arch.n_mels, pad_to=30 * SAMPLE_RATE))
        real = (len(y) // 160 + 1) // 2
        return pooled_stats([s[:real] for s in states])

    for y in clips[:2]:  # tracing and first-call costs, outside the clock
        encoder.embed(y)
        padded(y)
    ours, naive = [], []
    for i, y in enumerate(clips):
        order = [(encoder.embed, ours), (padded, naive)]
        for fn, sink in order if i % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            fn(y)
            sink.append(time.perf_counter() - t0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    result = {"date": time.strftime("%Y-%m-%d"), "commit": commit, "clips": len(clips), "encoder": args.encoder,
              "mean_clip_seconds": round(float(np.mean([len(y) for y in clips])) / SAMPLE_RATE, 3),
              "seconds_per_clip": {"ours": round(float(np.mean(ours)), 4),
                                   "padded_30s": round(float(np.mean(naive)), 4)},
              "encoder_clips_per_second_per_core": round(1 / float(np.mean(ours)), 2),
              "naive_clips_per_second_per_core": round(1 / float(np.mean(naive)), 2),
              "encoder_vs_naive_speedup": round(float(np.mean(naive)) / float(np.mean(ours)), 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
