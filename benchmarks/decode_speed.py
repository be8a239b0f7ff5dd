"""FLAC decoding of a row: libsndfile (soundfile) against dr_flac (miniaudio), same values, on RAVDESS.

    .venv/bin/python benchmarks/decode_speed.py [--data ../shared/data] [--clips 1440] [--repeats 3]
        [--out benchmarks/results/decode_speed.json]

One process, one thread. Clips: ``--clips`` of the ``ravdess/**/*.flac`` files under ``--data``
(default ``$SER_TEST_DATA`` or ``../shared/data``), spread evenly (all 1,440 by default). Before any
clock, every clip must decode to equal arrays both ways (values, shape, dtype and rate) or the
script exits:

* ``old``: ``soundfile.read(path, dtype="float32", always_2d=True)``, the pipeline's decoder for
  every file before ``read_flac16``;
* ``new``: :func:`ser_tasks.signal.audio.read_flac16`, the pipeline's decoder for 16-bit FLAC now.

Timing: wall seconds per file (``perf_counter``), old and new called back to back on each file,
their order swapped every repeat (this machine's speed drifts by tens of percent within minutes).
Writes ``--out`` (``date``, ``commit``, ``clips``, ``repeats``, ``old_ms``, ``new_ms``,
``new_over_old``) and prints it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from yin_speed import clip_arguments, interleaved_ms, write_result  # noqa: E402  (this folder is the script's)

from ser_tasks.signal.audio import read_flac16  # noqa: E402


def old(path: str) -> tuple[np.ndarray, int]:
    """The float32 read of libsndfile, as ``ser_tasks.signal.audio`` decoded every file before ``read_flac16``."""
    return sf.read(path, dtype="float32", always_2d=True)


def main() -> None:
    """Parse the arguments, check equality on every file, time both and write the JSON."""
    args, files = clip_arguments(__doc__, 3, "decode_speed.json")
    paths = [str(f) for f in files if f.suffix.lower() == ".flac"]
    for p in paths:
        (a, ra), new = old(p), read_flac16(p)
        if new is None or new[1] != ra or new[0].dtype != a.dtype or not np.array_equal(new[0], a):
            raise SystemExit(f"{p}: read_flac16 does not give soundfile's samples")
    write_result(args.out, {"clips": len(paths), "repeats": args.repeats, "equal_on_every_clip": True,
                            **interleaved_ms(old, read_flac16, paths, args.repeats)})


if __name__ == "__main__":
    main()
