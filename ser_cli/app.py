"""``ser``: the command line of the pipeline (typer).

Commands::

    ser run ROOT...       extract features, train, evaluate (one Prefect flow, one MLflow run)
    ser extract ROOT...   features only
    ser train STORE       train and evaluate on an existing store
    ser evaluate ROOT...  k-fold cross-validation: actor-disjoint (cv-actor, blocks or a published
                          partition), cross-corpus, or the leakage ablation
    ser manifest ROOT...  list the corpora: clips per corpus, emotion, speaker; skipped files
    ser sweep ROOT...     every combination of a grid of training settings, each an MLflow child run
    ser deploy ROOT...    a scheduled (cron) deployment on a Prefect server, served by this process
    ser deploy-scoring P  score the recordings a folder or prefix gains with the champion, on a schedule
    ser compare EXP       the evaluated runs of an MLflow experiment as a table and a plot
    ser predict PATH...   emotions of audio files with the registered model (champion by default)
    ser score MODEL ROOT  a model's scores on a labelled corpus, logged to MLflow
    ser promote VERSION   make a registered version the champion
    ser serve [MODEL]     serve a model over HTTP to untrusted clients (MLflow's scoring server, guarded)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

# The command's exit status, once main() has it: read by _end_process, the last atexit handler.
_EXIT_STATUS: list[int] = []


def _end_process() -> None:
    """End the process with the command's status, skipping the interpreter's teardown (see :func:`main`)."""
    if _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS[0])


atexit.register(_end_process)  # before any library registers its own: handlers run last-registered first

from ser_tasks.runtime import process_env  # noqa: E402

process_env.apply()  # before Prefect or TensorFlow are imported anywhere

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Speech emotion recognition pipeline: Prefect/Dask features into Zarr, Keras, MLflow.")
console = Console(stderr=True)

StoreOpt = Annotated[str, typer.Option("--store", help="Zarr feature store: local path or URL (s3://bucket/x.zarr).")]
MlflowOpt = Annotated[str | None, typer.Option(
    "--mlflow-uri", help="MLflow tracking URI \\[default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db].")]
DaskOpt = Annotated[str | None, typer.Option(
    "--dask-address", help="Existing Dask scheduler (tcp://host:8786); default: a LocalCluster.")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", exists=True, dir_okay=False, help="YAML, JSON or TOML configuration file.")]
SummaryOpt = Annotated[Path | None, typer.Option(
    "--summary-json", help="Write the run's summary (counts, failures, timings, metrics, ids) here.")]
CorpusOpt = Annotated[list[str] | None, typer.Option(
    "--corpus", help="ravdess, crema_d, tess, savee, emodb or folders for every ROOT \\[default: detect each "
                     "top-level folder], or NAME=PATH to add a root of that corpus (repeatable).")]
RootsArg = Annotated[list[str] | None, typer.Argument(
    help="Corpus roots (folders or URLs); each top-level subfolder is detected on its own.", show_default=False)]
EmotionsOpt = Annotated[str | None, typer.Option(
    "--emotions", help="Keep only these classes, comma-separated (e.g. neutral,happy,sad,angry,fearful,disgust); "
                       "other clips are listed as skipped \\[config manifest.emotions; default: every class].")]
SpeakerOpt = Annotated[str | None, typer.Option(
    "--speaker-pattern", help="Regex for speakers in file names no corpus loader knows (folder layouts): the first "
                              "group, or the whole match \\[config manifest.speaker_pattern].")]
StorageOpt = Annotated[str | None, typer.Option(
    "--storage-options", envvar="SER_STORAGE_OPTIONS",
    help="fsspec/s3fs options as JSON, e.g. '{\"key\": \"...\", \"secret\": \"...\"}' (credentials are never "
         "logged; the AWS environment/config chain works too).")]
EndpointOpt = Annotated[str | None, typer.Option(
    "--endpoint-url", envvar="SER_S3_ENDPOINT_URL",
    help="S3-compatible endpoint (MinIO, Ceph...), e.g. http://127.0.0.1:9000.")]
DemoOpt = Annotated[str | None, typer.Option(
    "--crema-demographics", help="CREMA-D VideoDemographics.csv, for the speakers' sex.")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", help="LocalCluster worker processes \\[config extract.workers, default 2].")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Maximum training epochs \\[config train.epochs].")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="A model of the zoo \\[config train.model, default layer_weighted (Whisper encoder states)]: "
                    "layer_weighted, linear_probe, layer_concat, tdnn_prosody (needs features.f0), tdnn, compact_cnn, "
                    "utterance_mlp, notebook_cnn1d, notebook_cnn2d, notebook_deep_cnn1d.")]
VariantsOpt = Annotated[int | None, typer.Option(
    "--variants", help="Augmented copies per training clip \\[config augment.variants].")]
OutOpt = Annotated[Path, typer.Option("--out-dir", help="Model, normaliser and plots of this run.")]


@contextlib.contextmanager
def _user_errors():
    """End the command on an expected failure with one clear line and exit status 2 instead of a traceback.

    Expected failures: any of the pipeline's own exceptions (:class:`ser_tasks.errors.SerError`: an
    unknown corpus, an undecodable file, a store conflict...), a missing file or folder, and the
    ``ValueError`` that libraries raise for a bad argument (a bad config, an unknown model URI).
    """
    from ser_tasks.errors import SerError

    try:
        yield
    except (SerError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


@contextlib.contextmanager
def _flow_runtime(cfg=None, dask_address: str | None = None, local_workers: bool = False):
    """The start-up every flow command shares: a Prefect API, the local workers' forkserver, errors as one line.

    The Prefect server (:func:`flows.engine.prefect_server.prefect_api`) starts at once, without
    waiting for it, so that it comes up while the caller imports TensorFlow and the flows; with
    ``local_workers`` and no ``dask_address``, the forkserver of the local Dask workers starts too
    (:func:`_start_forkserver`). Expected failures end the command as :func:`_user_errors` does.

    Yields:
        ``ready()``: blocks until the API answers; call it after the imports, before the flow.
    """
    from flows.engine.prefect_server import await_api, prefect_api

    with _user_errors(), prefect_api(ready=False):
        if local_workers:
            _start_forkserver(cfg, dask_address)
        yield await_api


def _config(path: Path | None, **overrides: Any):
    from ser_tasks.config import load_config

    try:
        return load_config(path, overrides)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from exc


def _sources(roots: list[str] | None, corpus: list[str] | None) -> tuple[list[str], str | None]:
    """Roots (``NAME=PATH`` for the named ones) and the one corpus forced on the unnamed roots, if any.

    Raises:
        typer.BadParameter: no root at all, or two corpus names for the unnamed roots.
    """
    named = [c for c in corpus or [] if "=" in c]
    forced = [c for c in corpus or [] if "=" not in c]
    if len(forced) > 1:
        raise typer.BadParameter(f"one corpus name for the unnamed roots, got {forced}", param_hint="--corpus")
    sources = [*(roots or []), *named]
    if not sources:
        raise typer.BadParameter("give at least one corpus root, or --corpus NAME=PATH", param_hint="ROOT")
    return sources, (forced[0] if forced else None)


def _manifest_overrides(emotions: str | None, speaker_pattern: str | None) -> dict[str, Any]:
    return {"manifest.emotions": [e.strip() for e in emotions.split(",") if e.strip()] if emotions else None,
            "manifest.speaker_pattern": speaker_pattern}


def _storage(options: str | None, endpoint_url: str | None = None) -> dict | None:
    from ser_tasks.remote import parse_options

    try:
        return parse_options(options, endpoint_url)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--storage-options") from exc


def _write_summary(path: Path | None, summary: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2, default=str))
        console.print(f"summary written to {path}")


def _print_scores(train: dict) -> None:
    table = Table(title="Test speakers (actor-disjoint split)")
    for col in ("UA", "WA", "macro-F1", "clips", "model", "MLflow run"):
        table.add_column(col)
    table.add_row(f"{train['ua']:.3f}", f"{train['wa']:.3f}", f"{train['macro_f1']:.3f}", str(train["test_clips"]),
                  f"{train['model_name']} v{train['model_version']} ({train['alias']})", train["mlflow_run_id"])
    console.print(table)
    if train.get("per_corpus"):
        corpora = Table(title="Test speakers per corpus (UA and macro-F1 over the corpus's own classes)")
        for col in ("corpus", "UA", "WA", "macro-F1", "clips"):
            corpora.add_column(col)
        for name, s in train["per_corpus"].items():
            corpora.add_row(name, f"{s['ua']:.3f}", f"{s['wa']:.3f}", f"{s['macro_f1']:.3f}", str(s["n"]))
        console.print(corpora)
    console.print(f"{train['alias']}: {train['promotion']}")


@app.command()
def run(roots: RootsArg = None, store: StoreOpt = "ser-out/features.zarr", mlflow_uri: MlflowOpt = None,
        dask_address: DaskOpt = None, config: ConfigOpt = None, summary_json: SummaryOpt = None,
        corpus: CorpusOpt = None, emotions: EmotionsOpt = None, speaker_pattern: SpeakerOpt = None,
        storage_options: StorageOpt = None, endpoint_url: EndpointOpt = None,
        crema_demographics: DemoOpt = None, workers: WorkersOpt = None, epochs: EpochsOpt = None,
        model: ModelOpt = None, variants: VariantsOpt = None, out_dir: OutOpt = Path("ser-out/run")) -> None:
    """Whole pipeline on one or more corpora: features into Zarr, training, test-speaker evaluation, MLflow."""
    root, corpus = _sources(roots, corpus)
    cfg = _config(config, **{"extract.workers": workers, "train.epochs": epochs, "train.model": model,
                             "augment.variants": variants, **_manifest_overrides(emotions, speaker_pattern)})
    with _flow_runtime(cfg, dask_address, local_workers=True) as ready:
        from flows.pipeline import ser_pipeline

        ready()
        summary = ser_pipeline(root, store, cfg, corpus, mlflow_uri, dask_address,
                               _storage(storage_options, endpoint_url), crema_demographics, str(out_dir))
    ext = summary["extract"]
    console.print(f"extraction: {ext['clips']} clips, {ext['rows']} rows, {ext['failed_rows']} failed rows, "
                  f"{ext['skipped']} skipped files, {ext['seconds']:.1f} s ({ext['clips_per_second']:.2f} clips/s)")
    _print_scores(summary["train"])
    console.print(f"total {summary['seconds']:.1f} s")
    _write_summary(summary_json, summary)


@app.command()
def extract(roots: RootsArg = None, store: StoreOpt = "ser-out/features.zarr", mlflow_uri: MlflowOpt = None,
            dask_address: DaskOpt = None, config: ConfigOpt = None, summary_json: SummaryOpt = None,
            corpus: CorpusOpt = None, emotions: EmotionsOpt = None, speaker_pattern: SpeakerOpt = None,
            storage_options: StorageOpt = None, endpoint_url: EndpointOpt = None,
            crema_demographics: DemoOpt = None, workers: WorkersOpt = None, variants: VariantsOpt = None) -> None:
    """Features only: corpora -> manifest -> actor-disjoint split -> Zarr (resumable)."""
    from flows.engine.prefect_server import early_server

    with early_server():  # spawned now, the server's start overlaps the checks below too
        root, corpus = _sources(roots, corpus)
        cfg = _config(config, **{"extract.workers": workers, "augment.variants": variants,
                                 **_manifest_overrides(emotions, speaker_pattern)})
        storage = _storage(storage_options, endpoint_url)
        from ser_tasks.store.plan import up_to_date

        with _user_errors():  # a finished store answers here: the server is stopped unused, no Dask or MLflow run
            summary = up_to_date(root, store, cfg, corpus, storage, crema_demographics)
        if summary is not None:
            console.print(f"up to date: nothing new under {' '.join(root)}")
        else:
            with _flow_runtime(cfg, dask_address, local_workers=True) as ready:  # takes the early server
                from flows.extract import ser_extract

                ready()
                summary = ser_extract(root, store, cfg, corpus, mlflow_uri, dask_address, storage,
                                      crema_demographics)
    console.print(f"{summary['clips']} clips, {summary['rows']} rows ({summary['computed_rows']} computed now), "
                  f"{summary['failed_rows']} failed, {summary['skipped']} skipped, {summary['seconds']:.1f} s; "
                  f"group {summary['group']} in {store}")
    _write_summary(summary_json, summary)


def _start_forkserver(cfg, dask_address: str | None) -> None:
    """Start the local workers' forkserver now (:mod:`flows.engine.forkserver`), unless the workers are remote.

    Its imports and warm-up then overlap the Prefect server's start and this command's imports,
    instead of delaying the flow's first task. Call it after ``prefect_api`` has exported the API URL.
    """
    if dask_address is None:
        from flows.engine import forkserver
        from ser_tasks.runtime.worker_setup import warm_up_for

        forkserver.start(warm_up_for(cfg))


@app.command()
def train(store: str,
          group: Annotated[str | None, typer.Option(help="Extraction group \\[default: the only one].")] = None,
          mlflow_uri: MlflowOpt = None, config: ConfigOpt = None, summary_json: SummaryOpt = None,
          storage_options: StorageOpt = None, endpoint_url: EndpointOpt = None, epochs: EpochsOpt = None,
          model: ModelOpt = None, dask_address: DaskOpt = None, out_dir: OutOpt = Path("ser-out/train")) -> None:
    """Train and evaluate on an existing feature store (on the Dask cluster with train.where: cluster)."""
    cfg = _config(config, **{"train.epochs": epochs, "train.model": model})
    from ser_tasks.store.zarr_store import FeatureStore

    with _user_errors():  # before any server starts
        FeatureStore.locate(store, group, _storage(storage_options, endpoint_url))
    with _flow_runtime() as ready:
        from flows.extract import training_placed
        from flows.train import train_model

        train_model = training_placed(train_model, cfg, dask_address)
        ready()
        summary = train_model(store, cfg, group, mlflow_uri, None,
                              _storage(storage_options, endpoint_url), str(out_dir))
    _print_scores(summary)
    _write_summary(summary_json, summary)


@app.command()
def evaluate(roots: RootsArg = None, store: StoreOpt = "ser-out/eval-features.zarr",
             protocol: Annotated[str, typer.Option(
                 "--protocol", help="cv-actor (speaker-independent), clip-split, row-split (the seed notebooks'), "
                                    "ablation (those three), or cross-corpus (leave one corpus out).")] = "cv-actor",
             folds: Annotated[str, typer.Option(
                 "--folds", help="cv-actor folds: a count (contiguous blocks of speakers in natural order) or a "
                                 "published partition: emobox (EmoBox's 6 RAVDESS folds).")] = "6",
             folds_file: Annotated[Path | None, typer.Option(
                 "--folds-file", exists=True, dir_okay=False,
                 help="cv-actor on a partition of your own: CSV with columns fold, speaker.")] = None,
             max_folds: Annotated[int | None, typer.Option(
                 "--max-folds", help="Run only the first N folds of each protocol \\[default: all].")] = None,
             mlflow_uri: MlflowOpt = None, dask_address: DaskOpt = None, config: ConfigOpt = None,
             summary_json: SummaryOpt = None, corpus: CorpusOpt = None, emotions: EmotionsOpt = None,
             speaker_pattern: SpeakerOpt = None, storage_options: StorageOpt = None,
             endpoint_url: EndpointOpt = None, crema_demographics: DemoOpt = None, workers: WorkersOpt = None,
             epochs: EpochsOpt = None, model: ModelOpt = None, variants: VariantsOpt = None,
             out_dir: OutOpt = Path("ser-out/evaluate")) -> None:
    """Cross-validated scores: k folds, one model each.

    Features of every clip (each augmented, so any fold can train on any clip), then one model per fold
    on a fixed cosine schedule, scored on the fold's held-out clips.

    Folds are MLflow child runs under one parent per protocol, which holds UA, WA and macro-F1 as
    mean and standard deviation over folds. Only cv-actor is speaker-independent; clip-split and
    row-split exist to show how much leaking voices or clips inflates the number.
    """
    root, corpus = _sources(roots, corpus)
    cfg = _config(config, **{"extract.workers": workers, "train.epochs": epochs, "train.model": model,
                             "augment.variants": variants, **_manifest_overrides(emotions, speaker_pattern)})
    from ser_tasks.learn.folds import check_protocol, load_partition

    n_folds, partition = (int(folds), None) if folds.isdigit() else (6, folds)
    with _user_errors():  # before any server starts
        check_protocol(protocol, max_folds)
        load_partition(partition or n_folds, str(folds_file) if folds_file else None)
    with _flow_runtime() as ready:
        from flows.crossval import ser_evaluate

        ready()
        summary = ser_evaluate(root, store, protocol, cfg, corpus, mlflow_uri, dask_address,
                               n_folds, max_folds, _storage(storage_options, endpoint_url), crema_demographics,
                               str(out_dir), partition=partition,
                               folds_file=str(folds_file) if folds_file else None)
    result = summary["evaluation"]
    per_protocol = result.get("protocols", {result.get("protocol"): result})
    table = Table(title="Cross-validated scores (mean ± sd over folds)")
    for col in ("protocol", "held out", "folds", "UA", "WA", "macro-F1", "MLflow run"):
        table.add_column(col)
    for name, r in per_protocol.items():
        table.add_row(name, r["evaluation"], str(r["folds"]), f"{r['ua_mean']:.3f} ± {r['ua_std']:.3f}",
                      f"{r['wa_mean']:.3f} ± {r['wa_std']:.3f}", f"{r['macro_f1_mean']:.3f} ± {r['macro_f1_std']:.3f}",
                      r["mlflow_run_id"])
    console.print(table)
    held = [f for r in per_protocol.values() for f in r["fold_results"] if f.get("held_out")]
    if held:
        corpora = Table(title="Per held-out corpus (trained on the others; its classes shared with them)")
        for col in ("held-out corpus", "UA", "WA", "macro-F1", "clips"):
            corpora.add_column(col)
        for f in held:
            corpora.add_row(f["held_out"], f"{f['ua']:.3f}", f"{f['wa']:.3f}", f"{f['macro_f1']:.3f}", str(f["n"]))
        console.print(corpora)
    console.print(f"total {summary['seconds']:.1f} s")
    _write_summary(summary_json, summary)


@app.command()
def sweep(roots: RootsArg = None,
          grid: Annotated[Path, typer.Option(
              "--grid", exists=True, dir_okay=False,
              help="YAML/JSON/TOML of train.* settings and their values, e.g. 'train.learning_rate: [0.003, 0.001]'; "
                   "every combination is trained.")] = Path("grid.yaml"),
          store: StoreOpt = "ser-out/features.zarr", mlflow_uri: MlflowOpt = None, dask_address: DaskOpt = None,
          config: ConfigOpt = None, summary_json: SummaryOpt = None, corpus: CorpusOpt = None,
          emotions: EmotionsOpt = None, speaker_pattern: SpeakerOpt = None, storage_options: StorageOpt = None,
          endpoint_url: EndpointOpt = None, crema_demographics: DemoOpt = None, workers: WorkersOpt = None,
          epochs: EpochsOpt = None, out_dir: OutOpt = Path("ser-out/sweep")) -> None:
    """Train every combination of a grid of training settings on one store, each an MLflow child run.

    In parallel on the Dask cluster with train.where: cluster (the config file), else one after
    another. Choose on validation UA; the test speakers report the choice.
    """
    root, corpus = _sources(roots, corpus)
    cfg = _config(config, **{"extract.workers": workers, "train.epochs": epochs,
                             **_manifest_overrides(emotions, speaker_pattern)})
    from ser_tasks.learn.grid import expand, read_grid

    with _user_errors():  # before any server starts
        grid_values = read_grid(grid)
        expand(cfg, grid_values)
    with _flow_runtime() as ready:
        from flows.sweep import ser_sweep

        ready()
        summary = ser_sweep(root, store, grid_values, cfg, corpus, mlflow_uri, dask_address,
                            _storage(storage_options, endpoint_url), crema_demographics, str(out_dir))
    table = Table(title=f"Sweep of {len(summary['sweep']['combinations'])} combinations, best validation UA first "
                        "(choose on validation; test reports the choice)")
    for col in ("combination", "val UA", "test UA", "WA", "macro-F1", "time"):
        table.add_column(col, justify="left" if col == "combination" else "right")
    by_val = sorted(summary["sweep"]["combinations"], key=lambda r: r["val_ua"] if r["val_ua"] == r["val_ua"] else -1,
                    reverse=True)  # NaN (no validation speakers) last
    for r in by_val:
        table.add_row(r["name"], f"{r['val_ua']:.3f}", f"{r['ua']:.3f}", f"{r['wa']:.3f}", f"{r['macro_f1']:.3f}",
                      f"{r['seconds']:.0f} s")
    console.print(table)
    console.print(f"total {summary['seconds']:.1f} s; parent run {summary['sweep']['mlflow_run_id']}")
    _write_summary(summary_json, summary)


@app.command()
def deploy(roots: RootsArg = None, store: StoreOpt = "ser-out/features.zarr", mlflow_uri: MlflowOpt = None,
           dask_address: DaskOpt = None, config: ConfigOpt = None, corpus: CorpusOpt = None,
           emotions: EmotionsOpt = None, speaker_pattern: SpeakerOpt = None,
           storage_options: StorageOpt = None, endpoint_url: EndpointOpt = None, crema_demographics: DemoOpt = None,
           name: Annotated[str, typer.Option("--name", help="Deployment name (ser_pipeline/NAME).")] = "nightly",
           cron: Annotated[str, typer.Option("--cron", help="Cron schedule of the runs.")] = "0 2 * * *",
           timezone: Annotated[str, typer.Option("--timezone", help="IANA time zone of the schedule.")] = "UTC",
           workers: WorkersOpt = None, epochs: EpochsOpt = None, model: ModelOpt = None,
           variants: VariantsOpt = None, out_dir: OutOpt = Path("ser-out/scheduled")) -> None:
    """Create a scheduled deployment of the pipeline on the Prefect server and serve its runs.

    Needs PREFECT_API_URL (e.g. http://127.0.0.1:4200/api). Every run extracts only the files
    ROOT gained since the last one, appends them to the store, then retrains. Runs until stopped.
    Credentials must come from the environment (AWS_*), not --storage-options: deployment
    parameters are stored on the server.
    """
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        console.print("[red]error:[/red] set PREFECT_API_URL to the Prefect server (e.g. http://127.0.0.1:4200/api); "
                      "`ser deploy` registers deployments there and serves their runs")
        raise typer.Exit(2)
    root, corpus = _sources(roots, corpus)
    cfg = _config(config, **{"extract.workers": workers, "train.epochs": epochs, "train.model": model,
                             "augment.variants": variants, **_manifest_overrides(emotions, speaker_pattern)})
    from flows.deploy import pipeline_deployment, serve

    with _user_errors():
        dep = pipeline_deployment(name, root, store, cron=cron, timezone=timezone, config=cfg,
                                  corpus=corpus, mlflow_uri=mlflow_uri, dask_address=dask_address,
                                  storage_options=_storage(storage_options, endpoint_url),
                                  crema_demographics=crema_demographics, out_dir=str(out_dir))
    console.print(f"serving deployment ser_pipeline/{name} ({cron} {timezone}) on {PREFECT_API_URL.value()}")
    serve(dep)


@app.command("deploy-scoring")
def deploy_scoring(prefix: Annotated[str, typer.Argument(help="A folder or s3:// prefix where new recordings land.")],
                   out: Annotated[str, typer.Option(
                       "--out", help="Parquet dataset folder (local or s3://) of the predictions.")],
                   model: Annotated[str | None, typer.Option(
                       "--model", help="MLflow model URI \\[default: models:/ser-emotion@champion].")] = None,
                   name: Annotated[str, typer.Option(
                       "--name", help="Deployment name (score-new-recordings/NAME).")] = "incoming",
                   cron: Annotated[str, typer.Option("--cron", help="Cron schedule of the runs.")] = "*/15 * * * *",
                   every: Annotated[float | None, typer.Option(
                       "--every", help="A run every this many seconds, the first in 10 s, instead of --cron.")] = None,
                   timezone: Annotated[str, typer.Option("--timezone", help="IANA time zone of the schedule.")] = "UTC",
                   windows: Annotated[bool, typer.Option("--windows", help="One row per window.")] = False,
                   mlflow_uri: MlflowOpt = None, dask_address: DaskOpt = None,
                   workers: Annotated[int, typer.Option("--workers", min=1, help="LocalCluster workers per run.")] = 2,
                   storage_options: StorageOpt = None, endpoint_url: EndpointOpt = None) -> None:
    """Score the recordings PREFIX gains with the champion, on a schedule (a Prefect deployment served here).

    Needs PREFECT_API_URL. Each run lists PREFIX and scores only the files with no rows yet for the
    champion's current version (a new champion scores everything again, in its own partition).
    Credentials come from the environment (AWS_*), not --storage-options.
    """
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        console.print("[red]error:[/red] set PREFECT_API_URL to the Prefect server (e.g. http://127.0.0.1:4200/api)")
        raise typer.Exit(2)
    from flows.batch import scoring_deployment
    from flows.deploy import serve as serve_deployments

    with _user_errors():
        dep = scoring_deployment(name, prefix, out, cron=cron, timezone=timezone, model_uri=model or _default_model(),
                                 mlflow_uri=mlflow_uri, dask_address=dask_address, workers=workers,
                                 storage_options=_storage(storage_options, endpoint_url), per_window=windows,
                                 every_seconds=every)
    when = f"every {every:g} s" if every is not None else f"{cron} {timezone}"
    console.print(f"serving deployment score-new-recordings/{name} ({when}) on {PREFECT_API_URL.value()}")
    serve_deployments(dep)


@app.command()
def compare(experiment: Annotated[str, typer.Argument(help="MLflow experiment name (e.g. ser).")] = "ser",
            mlflow_uri: MlflowOpt = None,
            plot: Annotated[Path | None, typer.Option(
                "--plot", help="PNG of the runs' scores \\[default: ser-out/compare-EXPERIMENT.png].")] = None,
            csv: Annotated[Path | None, typer.Option("--csv", help="Also write the table as CSV.")] = None) -> None:
    """Table of an experiment's evaluated runs, best UA first, and a plot of their scores.

    Each run's UA (± sd over folds), WA, macro-F1, duration, and the parameters whose values differ
    among the runs listed, one per line; --csv writes every column (model, features, augmentation...).
    """
    from ser_tasks.serve.compare import plot_runs, runs_table

    with _user_errors():
        table = runs_table(experiment, mlflow_uri)
        if table.empty:
            raise ValueError(f"experiment {experiment!r} has no evaluated runs (none logged test_ua)")
    out = Table(title=f"MLflow experiment {experiment!r}: scores on held-out speakers")
    out.add_column("run", no_wrap=True)
    for col in ("UA", "± sd", "WA", "macro-F1", "time"):
        out.add_column(col, justify="right", no_wrap=True)
    out.add_column("what differs (parameters with other values in the other runs listed)", overflow="fold")
    for r in table.itertuples():
        sd = "" if r.ua_std != r.ua_std else f"{r.ua_std:.3f}"  # NaN: a single split
        out.add_row(r.run_id[:8], f"{r.ua:.3f}", sd, f"{r.wa:.3f}", f"{r.macro_f1:.3f}", f"{r.duration_s:.0f} s",
                    r.differs.replace(", ", "\n") or "-")
    console.print(out)
    path = plot_runs(table, plot or Path(f"ser-out/compare-{experiment}.png"), f"{experiment}: held-out speakers")
    console.print(f"plot written to {path}")
    if csv is not None:
        csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(csv, index=False)
        console.print(f"table written to {csv}")


@app.command()
def manifest(roots: RootsArg = None,
             out: Annotated[Path | None, typer.Option("--out", help="Write the manifest as CSV.")] = None,
             corpus: CorpusOpt = None, emotions: EmotionsOpt = None, speaker_pattern: SpeakerOpt = None,
             storage_options: StorageOpt = None, endpoint_url: EndpointOpt = None,
             crema_demographics: DemoOpt = None, config: ConfigOpt = None) -> None:
    """List corpora: clips per corpus, emotion and speaker, the split, and the skipped files."""
    from ser_tasks.corpus.manifest import build_manifest
    from ser_tasks.corpus.split import assign_split

    root, corpus = _sources(roots, corpus)
    cfg = _config(config, **_manifest_overrides(emotions, speaker_pattern))
    with _user_errors():
        m = build_manifest(root, corpus, _storage(storage_options, endpoint_url), crema_demographics, cfg.manifest)
    clips = m.clips
    try:
        clips, notes = assign_split(m.clips, cfg.split)
        m.notes += notes
    except ValueError as exc:
        m.notes.append(f"no split: {exc}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        clips.to_csv(out, index=False)
        console.print(f"manifest written to {out}")
    summary = m.summary()
    console.print(f"[bold]{m.root}[/bold] read as [bold]{m.corpus}[/bold]: {summary['clips']} clips, "
                  f"{clips['speaker'].nunique()} speakers, {summary['skipped']} skipped")
    for title, key in (("corpus", "per_corpus"), ("emotion", "per_emotion")):
        table = Table(title=f"clips per {title}")
        table.add_column(title)
        table.add_column("clips", justify="right")
        for name, count in summary[key].items():
            table.add_row(str(name), str(count))
        console.print(table)
    table = Table(title="clips per speaker")
    for col in ("speaker", "sex", "split", "clips"):
        table.add_column(col)
    per = clips.assign(speaker=clips["speaker"].fillna("unknown"))
    split_col = per["split"] if "split" in per else None
    for spk, rows in per.groupby("speaker", sort=True):
        table.add_row(spk, str(rows["sex"].iloc[0] or "?"),
                      str(rows["split"].iloc[0]) if split_col is not None else "-", str(len(rows)))
    console.print(table)
    for note in m.notes:
        console.print(f"note: {note}")
    if len(m.skipped):
        table = Table(title=f"skipped files ({len(m.skipped)})")
        table.add_column("path")
        table.add_column("reason")
        for row in m.skipped.itertuples(index=False):
            table.add_row(row.path, row.reason)
        console.print(table)


def _progress(label: str, unit: str):
    """A progress bar on stderr: ``label``, bar, done/total ``unit``, elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # no redirection of sys.stdout/stderr: a later Prefect flow in the same process would log into the proxy
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn(),
                    console=console, redirect_stdout=False, redirect_stderr=False)


def _default_model() -> str:
    from ser_tasks.config import TrackingConfig

    return f"models:/{TrackingConfig().registered_model}@champion"


@app.command()
def predict(paths: Annotated[list[str], typer.Argument(help="Audio files, folders (recursive) or s3:// prefixes.")],
            model: Annotated[str | None, typer.Option(
                "--model", help="MLflow model URI \\[default: models:/ser-emotion@champion].")] = None,
            out: Annotated[str | None, typer.Option(
                "--out", help="A Parquet dataset folder (local or s3://; resumable: a re-run scores only the files "
                              "it lacks for this model version), or a .csv file \\[default: CSV on stdout].")] = None,
            windows: Annotated[bool, typer.Option(
                "--windows", help="One row per window (start and end in seconds) instead of one per file.")] = False,
            window_seconds: Annotated[float | None, typer.Option(
                "--window-seconds",
                help="Window length for long recordings \\[default: the training duration].")] = None,

            hop_seconds: Annotated[float | None, typer.Option(
                "--hop-seconds", help="Hop between windows \\[default: half the window].")] = None,
            speaker_by: Annotated[str, typer.Option(
                "--speaker-by", help="Which files share a voice, for a model trained with train.speaker_norm: "
                                     "file (each alone), folder, name (the speaker in a corpus's file names: "
                                     "RAVDESS, CREMA-D, EmoDB, SAVEE, TESS), or all (one speaker). A "
                                     "train.corpus_norm model takes all the files as one population.")] = "file",
            dask_address: DaskOpt = None,
            workers: Annotated[int | None, typer.Option(
                "--workers", min=1, help="LocalCluster worker processes \\[default: the CPU cores]; one chunk "
                                         "of files, or 1, runs in this process.")] = None,
            chunk_files: Annotated[int, typer.Option(
                "--chunk-files", min=1, help="Files per task and per Parquet part.")] = 32,
            mlflow_uri: MlflowOpt = None, storage_options: StorageOpt = None, endpoint_url: EndpointOpt = None) -> None:
    """Emotions of audio files with a registered model: columns path, model_uri, emotion, p_<label>..., error.

    Files are scored in chunks of 32 over Dask (a LocalCluster, or --dask-address), each chunk's rows
    written to the --out Parquet dataset as it ends, so an interrupted run resumes where it stopped.
    Speech longer than the training duration is scored in windows (50 % overlap by default) whose
    probabilities are averaged. A file that cannot be used gets its reason in the error column; the
    others are scored all the same. A model trained on speaker-normalised input normalises the
    files of one voice together (``--speaker-by folder``, ``name`` or ``all``); alone, each file by itself.
    One trained on corpus-normalised input normalises all the files together, in one chunk.
    """
    import tempfile

    from ser_tasks.learn import tracking
    from ser_tasks.serve.bulk import predict_batch, read_predictions
    from ser_tasks.serve.predict import expand_inputs, speakers_of

    tracking.use(mlflow_uri)
    uri = model or _default_model()
    opts = _storage(storage_options, endpoint_url)
    with _user_errors():
        speakers_of([], speaker_by)  # an unknown grouping fails before any file is read
        files = expand_inputs(paths, opts)
        if not files:
            raise ValueError(f"no audio files under {', '.join(paths)}")
    params = {"per_window": windows, "window_seconds": window_seconds or 0.0, "hop_seconds": hop_seconds or 0.0}
    speakers = None if speaker_by == "file" else speakers_of(files, speaker_by)
    if speakers is not None and "" in speakers:
        console.print(f"{speakers.count('')} of {len(files)} files: no corpus naming scheme gives their speaker; "
                      "each is normalised alone")
    csv_out = out is not None and out.lower().endswith(".csv")
    with contextlib.ExitStack() as stack:
        dataset = out if out is not None and not csv_out else stack.enter_context(
            tempfile.TemporaryDirectory(prefix="ser-predict-"))
        with _user_errors(), _progress("predicting", "files") as progress:
            bar = progress.add_task("predict", total=None)
            summary, ref = predict_batch(uri, files, params, dataset, list(paths), speakers, opts, dask_address,
                                         workers or os.cpu_count() or 1, chunk_files,
                                         on_start=lambda n: progress.update(bar, total=n),
                                         on_done=lambda n: progress.advance(bar, n))
            preds = read_predictions(dataset, ref, opts, files)
    if csv_out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        preds.to_csv(out, index=False)
        console.print(f"predictions written to {out}")
    elif out is not None:
        console.print(f"predictions in the Parquet dataset {summary['out']}")
    else:
        typer.echo(preds.to_csv(index=False), nl=False)
    per_file = preds.drop_duplicates("path") if windows else preds
    skipped = f" ({summary['skipped']} scored before, kept)" if summary["skipped"] else ""
    console.print(f"model {ref.uri}: {len(files)} files{skipped}")
    table = Table(title="files per emotion")
    table.add_column("emotion")
    table.add_column("files", justify="right")
    for emotion, count in per_file.loc[per_file["error"] == "", "emotion"].value_counts().items():
        table.add_row(emotion, str(count))
    failed = per_file[per_file["error"] != ""]
    if len(failed):
        table.add_row("[red]failed[/red]", str(len(failed)))
    console.print(table)
    for reason in failed["error"].head(10):
        console.print(f"[red]failed:[/red] {reason}", soft_wrap=True, highlight=False)


@app.command()
def score(model: Annotated[str, typer.Argument(help="MLflow model URI, e.g. models:/ser-emotion@champion.")],
          root: Annotated[str | None, typer.Argument(
              help="A labelled corpus folder or s3:// prefix (or give --manifest).", show_default=False)] = None,
          manifest_csv: Annotated[str | None, typer.Option(
              "--manifest", help="Score the clips of this manifest CSV (columns path, emotion; optional speaker, "
                                 "corpus; as `ser manifest --out` writes) instead of listing ROOT.")] = None,
          mlflow_uri: MlflowOpt = None, summary_json: SummaryOpt = None, corpus: CorpusOpt = None,
          emotions: EmotionsOpt = None, speaker_pattern: SpeakerOpt = None,
          storage_options: StorageOpt = None, endpoint_url: EndpointOpt = None, crema_demographics: DemoOpt = None,
          out_dir: Annotated[Path | None, typer.Option(
              "--out-dir", help="Predictions and confusion matrix of this scoring "
                                "\\[default: ser-out/score/CORPUS-MODEL-vVERSION].", show_default=False)] = None,
          experiment: Annotated[str, typer.Option(
              "--experiment", help="MLflow experiment of the run.")] = "ser",
          dask_address: DaskOpt = None,
          workers: Annotated[int | None, typer.Option(
              "--workers", min=1, help="LocalCluster worker processes \\[default: the CPU cores].")] = None) -> None:
    """A model's UA, WA and macro-F1 on a labelled corpus, with a confusion matrix, logged to MLflow.

    Scored on the classes the model knows (the others are listed as ignored); the MLflow run is tagged
    with the model. A model trained with train.speaker_norm normalises each speaker's clips together
    (speakers from the corpus's file names, --speaker-pattern for folder layouts, or the manifest);
    one trained with train.corpus_norm normalises all the corpus's clips together.
    """
    from ser_tasks.learn import tracking
    from ser_tasks.serve.score import score_corpus

    if manifest_csv is None:
        sources, corpus = _sources([root] if root else None, corpus)
    else:
        sources, corpus = None, None
    cfg = _config(None, **_manifest_overrides(emotions, speaker_pattern))
    tracking.setup(mlflow_uri, experiment)
    with _user_errors(), _progress("scoring", "clips") as progress:
        bar = progress.add_task("score", total=None)
        result = score_corpus(model, sources, corpus, _storage(storage_options, endpoint_url), crema_demographics,
                              out_dir, on_start=lambda n: progress.update(bar, total=n),
                              on_batch=lambda n: progress.advance(bar, n), manifest_config=cfg.manifest,
                              manifest_csv=manifest_csv, out_base=None if out_dir else Path("ser-out/score"),
                              dask_address=dask_address, workers=workers or os.cpu_count() or 1)
    root = root or manifest_csv
    table = Table(title=f"{model} on {root} ({result['corpus']}; {len(result['classes'])} shared classes)")
    for col in ("UA", "WA", "macro-F1", "clips", "failed", "ignored", "MLflow run"):
        table.add_column(col)
    ignored = ", ".join(f"{k} {v}" for k, v in result["ignored"].items()) or "-"
    table.add_row(f"{result['ua']:.3f}", f"{result['wa']:.3f}", f"{result['macro_f1']:.3f}", str(result["n"]),
                  str(result["failed"]), ignored, result["mlflow_run_id"])
    console.print(table)
    per_class = Table(title="per class (true classes of the corpus)")
    for col in ("class", "precision", "recall", "f1", "clips"):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for cls in result["classes"]:
        r = result["report"][cls]
        per_class.add_row(cls, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1-score']:.3f}",
                          str(int(r["support"])))
    console.print(per_class)
    console.print(f"predictions and confusion matrix in {result['out_dir']}")
    for failure in result["failures"][:10]:
        console.print(f"[red]failed:[/red] {failure['reason']}", soft_wrap=True, highlight=False)
    _write_summary(summary_json, result)


@app.command()
def promote(version: Annotated[int, typer.Argument(help="Registered model version to make the champion.")],
            name: Annotated[str | None, typer.Option(
                "--name", help="Registered model \\[default: ser-emotion].")] = None,

            mlflow_uri: MlflowOpt = None) -> None:
    """Make a registered model version the champion (the model `ser predict` uses by default)."""
    from ser_tasks.config import TrackingConfig
    from ser_tasks.learn import tracking
    from ser_tasks.serve import registry

    tracking.use(mlflow_uri)
    with _user_errors():
        done = registry.promote(name or TrackingConfig().registered_model, version)
    console.print(done.reason)


@app.command()
def serve(model: Annotated[str | None, typer.Argument(
              help="MLflow model URI \\[default: models:/ser-emotion@champion].", show_default=False)] = None,
          host: Annotated[str, typer.Option("--host", help="Interface to listen on; loopback unless you mean it.")]
          = "127.0.0.1",
          port: Annotated[int, typer.Option("--port", help="TCP port.")] = 5001,
          workers: Annotated[int | None, typer.Option(
              "--workers", min=1, help="uvicorn worker processes, each with its own model (about 1.4 GB) and its "
                                       "share of the cores \\[default: the CPU cores, at most 4].")] = None,
          allow_path: Annotated[list[str] | None, typer.Option(
              "--allow-path", help="An absolute folder or URL prefix whose files a request may name by path "
                                   "(repeatable); by default none: requests send the audio itself.")] = None,
          max_rows: Annotated[int, typer.Option("--max-rows", min=1, help="Rows per request.")] = 64,
          max_seconds: Annotated[float, typer.Option(
              "--max-seconds", min=0.01, help="Decoded seconds per row; longer rows get an error row.")] = 120.0,
          max_mib: Annotated[float, typer.Option(
              "--max-mib", min=0.001, help="Encoded MiB per row; larger rows get an error row.")] = 32.0,
          max_channels: Annotated[int, typer.Option("--max-channels", min=1, help="Channels per row.")] = 2,
          max_request_mib: Annotated[float, typer.Option(
              "--max-request-mib", min=0.001, help="MiB of one request body (413 beyond).")] = 64.0,
          timeout: Annotated[int, typer.Option("--timeout", min=1, help="Seconds one request may take.")] = 60,
          threads: Annotated[int | None, typer.Option(
              "--threads", min=1, help="TensorFlow threads per worker \\[default: the CPU cores / --workers].")] = None,
          mlflow_uri: MlflowOpt = None) -> None:
    """Serve a registered model over HTTP (MLflow's /invocations protocol) to clients it does not trust.

    MLflow's own scoring server under uvicorn, behind a guard: requests are size-limited JSON tables
    of path, audio (base64) and speaker columns; every error is one sentence; no path a request names
    is opened unless --allow-path covers it.
    """
    from ser_tasks.learn import tracking
    from ser_tasks.serve.server import serve as run_server

    tracking.use(mlflow_uri)
    settings = {"allowed_paths": list(allow_path or []), "max_rows": max_rows, "max_seconds": max_seconds,
                "max_bytes": int(max_mib * 2**20), "max_channels": max_channels,
                "max_request_bytes": int(max_request_mib * 2**20), "timeout_seconds": timeout,
                **({"threads": threads} if threads else {})}
    with _user_errors():
        run_server(model or _default_model(), settings, host=host, port=port,
                   workers=workers or min(4, os.cpu_count() or 1))


def main() -> None:
    """The ``ser`` console script: runs :data:`app`, then ends the process without Python's teardown.

    After a flow, the interpreter's finalisation (module teardown and garbage collection, with
    Prefect's, Dask's and MLflow's objects alive) is a measurable part of a short command
    (docs/decisions.md, D22). Once the command has exited (typer always ends with
    ``SystemExit``), the status is kept, the interpreter joins its non-daemon threads and runs the
    atexit handlers as usual (Prefect's and MLflow's shutdown hooks, temporary directories,
    Dask's cluster closing), and the last of them, registered before any library's, flushes the
    standard streams and calls ``os._exit`` with that status. Any other exception ends the process
    the normal way. ``CliRunner`` and library use never reach this.
    """
    try:
        app()
    except SystemExit as exc:
        code = exc.code
        _EXIT_STATUS.append(0 if code is None else code if isinstance(code, int) else 1)  # a str is printed, status 1
        raise


if __name__ == "__main__":
    main()
