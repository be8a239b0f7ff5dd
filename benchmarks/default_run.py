"""The README's main job as a new user runs it, then the model it registers applied to audio.

Runs, in a fresh working folder (its own store and ``mlflow.db``), with the repository's ``./ser``:

1. ``./ser run DATA/ravdess --summary-json ...``: the default recipe (target: test UA >= 0.60 on
   the default split, the whole command <= 10 min on the 2-core machine, after the install);
2. ``./ser predict DATA/ravdess/Actor_XX``, XX the first test actor of that split;
3. ``./ser score models:/ser-emotion@champion DATA/crema-d``, when the CREMA-D audio is there.

Writes ``results/default_run.json`` with each command's wall time and figures. Usage::

    .venv/bin/python benchmarks/default_run.py [--data ../shared/data] [--out results/default_run.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SER = HERE.parent / "ser"
CODES = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful", 7: "disgust", 8: "surprised"}


def timed(args: list[str], cwd: Path) -> float:
    """Run ``./ser ARGS`` in ``cwd``; its wall time in seconds. Raises on a non-zero exit."""
    t0 = time.perf_counter()
    subprocess.run([str(SER), *args], cwd=cwd, check=True, stdout=sys.stderr)
    return round(time.perf_counter() - t0, 1)


def main() -> None:
    """Run the three commands and write their figures."""
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("SER_TEST_DATA", str(HERE.parents[1] / "shared" / "data")))
    ap.add_argument("--out", default=str(HERE / "results" / "default_run.json"))
    args = ap.parse_args()
    data = Path(args.data).resolve()
    work = Path(tempfile.mkdtemp(prefix="ser-default-run-"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                            text=True).stdout.strip()
    out: dict = {"commit": commit, "date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "work": str(work)}

    out["run_wall_s"] = timed(["run", str(data / "ravdess"), "--summary-json", "summary.json"], work)
    summary = json.loads((work / "summary.json").read_text())
    train, ext = summary["train"], summary["extract"]
    out["run"] = {"ua": train["ua"], "wa": train["wa"], "macro_f1": train["macro_f1"],
                  "test_clips": train["test_clips"], "epochs": train["epochs"],
                  "train_seconds": train["train_seconds"], "pipeline_seconds": summary["seconds"],
                  "extract_seconds": ext["seconds"], "rows": ext["rows"], "failed_rows": ext["failed_rows"],
                  "model_version": train["model_version"], "alias": train["alias"]}
    import io

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    split = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{summary['mlflow_run_id']}/data/split.csv")))
    out["test_actors"] = sorted(split.loc[split["split"] == "test", "speaker"])
    actor = out["test_actors"][0].split(":")[1]

    out["predict_wall_s"] = timed(["predict", str(data / "ravdess" / f"Actor_{actor}"), "--out", "preds.csv"], work)
    preds = pd.read_csv(work / "preds.csv", keep_default_na=False)
    truth = [CODES[int(Path(p).name.split("-")[2])] for p in preds["path"]]
    out["predict"] = {"actor": actor, "files": len(preds), "accuracy": float((preds["emotion"] == truth).mean()),
                      "failed": int((preds["error"] != "").sum()), "windowed": int((preds["windows"] > 1).sum())}

    if (data / "crema-d" / "AudioFLAC").is_dir():
        out["score_wall_s"] = timed(["score", "models:/ser-emotion@champion", str(data / "crema-d"),
                                     "--summary-json", "score.json"], work)
        score = json.loads((work / "score.json").read_text())
        out["score_crema_d"] = {k: score[k] for k in ("ua", "wa", "macro_f1", "n", "failed", "ignored", "classes")}
        out["score_crema_d"]["failures"] = [f["reason"] for f in score["failures"]]
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
