"""How often one ``ser run`` opens its store group and reads the label arrays (flow process only).

Runs the ``ser_pipeline`` flow in this process on a corpus root (default: the shared RAVDESS, no
augmentation, 1 epoch: the counts do not depend on the size or the recipe) with Dask worker
processes, and counts in this process:

- ``opens``: root-group opens of the store (:func:`ser_tasks.store.zarr_store._open_root`);
- ``label_reads``: reads of the per-row label and provenance arrays (``emotion``, ``split``,
  ``variant``, ``clip_id``, ``speaker``, ``path``, ``status``), by array.

Extraction tasks run on the workers and open the group once per task there; they are not counted.
Usage::

    .venv/bin/python benchmarks/store_reads.py [--root ../shared/data/ravdess] [--out results/store_reads.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABELS = ("emotion", "split", "variant", "clip_id", "speaker", "path", "status")


def main() -> None:
    """Run the pipeline once under the counters and print (and write) the counts."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = os.environ.get("SER_TEST_DATA", str(HERE.parents[1] / "shared" / "data"))
    ap.add_argument("--root", default=str(Path(data) / "ravdess"))
    ap.add_argument("--out", default=str(HERE / "results" / "store_reads.json"))
    args = ap.parse_args()

    import zarr

    from flows.engine.prefect_server import prefect_api
    from flows.pipeline import ser_pipeline
    from ser_tasks.config import PipelineConfig
    from ser_tasks.store import zarr_store as store_mod

    opens = collections.Counter()
    reads = collections.Counter()
    real_open = store_mod._open_root

    def counting_open(url, storage_options, mode):
        opens[mode] += 1
        return real_open(url, storage_options, mode)

    real_getitem = zarr.Array.__getitem__

    def counting_getitem(self, selection):
        if self.basename in LABELS:
            reads[self.basename] += 1
        return real_getitem(self, selection)

    store_mod._open_root = counting_open
    zarr.Array.__getitem__ = counting_getitem
    work = Path(tempfile.mkdtemp(prefix="ser-store-reads-"))
    cfg = PipelineConfig().with_overrides({"augment.variants": 0, "train.epochs": 1})
    with prefect_api():
        ser_pipeline(args.root, str(work / "f.zarr"), cfg, mlflow_uri=f"sqlite:///{work / 'mlflow.db'}",
                     out_dir=str(work / "out"), show_progress=False, verbose=0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                            text=True).stdout.strip()
    out = {"commit": commit, "opens": sum(opens.values()), "opens_by_mode": dict(opens),
           "label_reads": sum(reads.values()), "label_reads_by_array": dict(sorted(reads.items()))}
    print(json.dumps(out, indent=1))
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
