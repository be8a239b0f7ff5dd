"""The registered model (an MLflow pyfunc): an adapter over :class:`~ser_tasks.serve.classifier.EmotionClassifier`.

Each registered version of the model is an :class:`EmotionModel`. It takes a DataFrame of files,
``path`` (local path or fsspec URL) or ``audio`` (the encoded file's bytes; base64 in JSON, which
MLflow decodes for a binary column), and returns one row per input: ``emotion``, ``p_<label>`` for
every class, ``windows`` and ``error`` (empty, or why the file could not be used; a bad file never
fails the batch).

What it adds to the classifier is what an untrusted request needs: a row's ``path`` opened only
under allowed roots, limits on rows, bytes, seconds and channels, and errors of one sentence.
Windows, normalisation and the network are the classifier's (:mod:`ser_tasks.serve.classifier`);
``ser predict``, ``ser score`` and bulk scoring (:mod:`ser_tasks.serve.bulk`) load this model.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import posixpath
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from ser_tasks.errors import InputError
from ser_tasks.serve.classifier import (  # noqa: F401 - BATCH, Preprocessing, window_bounds re-exported
    BATCH,
    EmotionClassifier,
    Preprocessing,
    recording_means,
    speaker_group,
    window_bounds,
)
from ser_tasks.signal import audio

_log = logging.getLogger(__name__)

#: Artifact keys of a logged :class:`EmotionModel` (``encoder``: the weight folder of an encoder
#: given as a folder or hub id; packaged encoders come from their pinned, checksummed packages).
KERAS_MODEL, PREPROCESSING, NORMALIZER, ENCODER = "keras_model", "preprocessing", "normalizer", "encoder"


#: The one answer to a ``path`` the model will not or cannot open: it does not tell whether the path exists.
PATH_REFUSED = "path not allowed or not readable"
#: Environment variable of a serving process: comma-separated roots (absolute folders or URL prefixes)
#: whose files a request may name by ``path``; added to ``model_config["allowed_paths"]``.
ALLOWED_PATHS_ENV = "SER_ALLOWED_PATHS"


def allowed_roots(values) -> tuple[str, ...]:
    """Validated path roots: absolute local folders (resolved, symlinks followed) or URL prefixes.

    Args:
        values: absolute paths (``/data/clips``, ``file:///data/clips``) or URL prefixes
            (``s3://bucket/incoming/``), or ``None``.

    Returns:
        The roots, local ones as ``os.path.realpath`` gives them, URL prefixes ending in ``/``.

    Raises:
        InputError: a relative path, or a URL prefix with ``.`` or ``..`` segments.
    """
    from ser_tasks.remote import is_remote

    out = []
    for value in values or ():
        value = str(value).strip()
        if not value:
            continue
        if is_remote(value):
            if any(part in (".", "..") for part in value.split("://", 1)[1].split("/")):
                raise InputError(f"allowed path prefix {value!r} has '.' or '..' segments")
            out.append(value.rstrip("/") + "/")
            continue
        local = value.removeprefix("file://")
        if not os.path.isabs(local):
            raise InputError(f"allowed path root {value!r} is not absolute")
        out.append(os.path.realpath(local))
    return tuple(out)


def opened_by_caller(targets) -> dict:
    """``model_config`` for a model loaded by the one who chose ``targets`` (``ser predict``, ``ser score``).

    The caller is the user, not a client: the folders, files and prefixes it was given become the
    model's allowed roots (local ones made absolute), so a file it could not read itself is opened
    by the model, which then reports it; and no request limit applies (:data:`DEFAULT_LIMITS` all
    ``None``: a long recording is scored whole, in windows).
    """
    from ser_tasks.remote import is_remote

    targets = [targets] if isinstance(targets, str) else list(targets)
    return {"allowed_paths": [t if is_remote(t) else os.path.abspath(str(t).removeprefix("file://"))
                              for t in targets],
            **dict.fromkeys(DEFAULT_LIMITS)}  # the user's own files: no request limits


def path_allowed(path: str, roots: tuple[str, ...]) -> bool:
    """Whether ``path`` lies under one of ``roots`` (:func:`allowed_roots`).

    A local path is resolved first (``..`` and symlinks), so neither can lead out of a root. A URL
    must start with a URL root and hold no ``.`` or ``..`` segment (HTTP servers resolve them). No
    roots: nothing is allowed.
    """
    from ser_tasks.remote import is_remote

    if is_remote(path):
        rest = path.split("://", 1)[-1]
        if any(part in (".", "..") for part in rest.split("/")):
            return False
        return any(is_remote(root) and path.startswith(root) for root in roots)
    local = os.path.realpath(path.removeprefix("file://"))
    return any(not is_remote(root) and (local == root or local.startswith(root.rstrip(os.sep) + os.sep))
               for root in roots)


#: Columns a request may send; any other is refused (a typo must not be scored as if absent).
INPUT_COLUMNS = ("path", "audio", "speaker")
#: Limits of a request to the registered model, by ``model_config`` key, with their defaults: rows per
#: request, decoded seconds per row, encoded bytes per row, channels per row. ``None``: no limit (only
#: for a trusted caller, :func:`opened_by_caller`).
DEFAULT_LIMITS = {"max_rows": 64, "max_seconds": 120.0, "max_bytes": 32 * 2**20, "max_channels": 2}


class RequestRefused(mlflow.exceptions.MlflowException, InputError):
    """A whole request the registered model will not score (unknown column, too many rows, bad parameter).

    An :class:`InputError` for Python callers, and an MLflow ``INVALID_PARAMETER_VALUE`` exception,
    so that a scoring server answers it with status 400 and this one-sentence message, no trace.
    """

    def __init__(self, message: str):
        """``message``: one sentence for the client."""
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


@dataclass(frozen=True)
class RequestLimits:
    """What one call of the registered model may carry (:data:`DEFAULT_LIMITS`).

    Attributes:
        max_rows: rows per call; more is an :class:`InputError` for the whole call (a 4xx served).
        decode: per-row limits on encoded bytes, decoded seconds and channels, and truncated files
            refused (:class:`ser_tasks.signal.audio.DecodeLimits`); a row over one gets an error row.
    """

    max_rows: int | None = None
    decode: audio.DecodeLimits = audio.UNLIMITED

    @classmethod
    def from_config(cls, config: dict) -> RequestLimits:
        """Limits from a ``model_config`` mapping; a missing key takes its :data:`DEFAULT_LIMITS` value.

        Raises:
            InputError: a limit that is neither ``None`` nor a positive number.
        """
        values = {}
        for key, default in DEFAULT_LIMITS.items():
            value = config.get(key, default)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise InputError(f"model_config {key} must be a positive number or null, got {value!r}")
            values[key] = value
        as_int = {k: None if values[k] is None else int(values[k]) for k in ("max_rows", "max_bytes", "max_channels")}
        return cls(as_int["max_rows"], audio.DecodeLimits(
            None if values["max_seconds"] is None else float(values["max_seconds"]), as_int["max_bytes"],
            as_int["max_channels"], refuse_truncated=True))


def _kind(value) -> str:
    """What a client sent, in a word, for an error row (never the value itself)."""
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(value), f"a {type(value).__name__}")


def _missing(value) -> bool:
    """Whether a cell holds nothing (``None``, NaN, an empty string or empty bytes)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return True
    return isinstance(value, (str, bytes, bytearray, memoryview)) and len(value) == 0


def _decoded(row: dict, index: int, rate: int, storage_options: dict | None,
             roots: tuple[str, ...] = (), limits: audio.DecodeLimits = audio.UNLIMITED) -> tuple[np.ndarray, str]:
    """Decode one input row: its ``audio`` bytes when present, else its ``path`` when under ``roots``.

    Raises:
        AudioError: the row's reason, one sentence naming the row (a path only as the client gave it,
            and only once it was allowed).
    """
    path, data = row.get("path"), row.get("audio")
    if not _missing(path) and not isinstance(path, str):
        raise audio.AudioError(f"row {index}: the path column holds {_kind(path)}, not text")
    if not _missing(data) and not isinstance(data, (str, bytes, bytearray, memoryview)):
        raise audio.AudioError(f"row {index}: the audio column holds {_kind(data)}, not base64 text or bytes")
    path = None if _missing(path) else path
    name = f"row {index}"
    if not _missing(data):
        if isinstance(data, str):  # base64 that nothing decoded (e.g. a JSON record passed in-process)
            limits.check_bytes(len(data) * 3 // 4, name)  # before decoding it
            try:
                data = base64.b64decode(data, validate=True)
            except ValueError as exc:
                raise audio.AudioError(f"{name}: the audio column holds text that is not base64") from exc
        return audio.decode_audio(bytes(data), rate, path or name, limits), path or name
    if path is None:
        raise audio.AudioError(f"{name}: neither a path nor audio bytes")
    if not path_allowed(path, roots):
        raise audio.AudioError(f"{name}: {PATH_REFUSED}")
    try:
        return audio.load_audio(path, rate, storage_options, limits), path
    except audio.AudioError as exc:
        if isinstance(exc.__cause__, OSError):  # missing, a folder, no permission: one answer for all
            raise audio.AudioError(f"{name}: {PATH_REFUSED}") from None
        raise


def predict_frame(model, prep: Preprocessing, frame: pd.DataFrame, windows: bool = True, per_window: bool = False,
                  window_seconds: float | None = None, hop_seconds: float | None = None,
                  storage_options: dict | None = None, allowed_paths: tuple[str, ...] = (),
                  limits: RequestLimits = RequestLimits()) -> pd.DataFrame:
    """Emotions of the files in ``frame`` (the body of :meth:`EmotionModel.predict`).

    Args:
        model: the Keras model (input as :meth:`Preprocessing.model_input`, output ``(n, k)``).
        prep: the preprocessing it was trained with.
        frame: a ``path`` column (local path or fsspec URL) and/or an ``audio`` column (encoded
            file bytes); a row uses its bytes when it has them. An optional ``speaker`` column
            groups the rows of one voice: for a model trained with ``train.speaker_norm``, every
            window of a speaker's rows is normalised by the mean and sd of all of them
            (:func:`ser_tasks.learn.data.normalise_groups`, as training normalised each speaker by its
            clips); a row with no speaker is normalised by its own windows. A model trained with
            ``train.corpus_norm`` normalises every window of the call together, one population; other
            models ignore it.
        windows: score speech longer than ``window_seconds`` in windows; ``False`` scores every
            clip as extraction stores it (one ``audio.duration`` crop around the centre).
        per_window: one output row per window (with ``input``, ``start`` and ``end`` in seconds
            of the recording) instead of one per input.
        window_seconds: window length [default ``audio.duration``]; each window is padded or
            cropped to ``audio.duration``, the model's input length.
        hop_seconds: hop between windows [default half the window].
        storage_options: fsspec options for remote paths.
        allowed_paths: roots (:func:`allowed_roots`) under which a row's ``path`` may be opened when
            it carries no ``audio`` bytes; a path outside them, or one that cannot be read, gets the
            error :data:`PATH_REFUSED` and is not opened. Empty (the default): no path is opened.
        limits: rows per call, and per row encoded bytes, decoded seconds and channels; a row over a
            per-row limit gets an error row (decoding stops at the limit). None by default.

    Returns:
        One row per input: ``emotion``, ``p_<label>`` (float64, summing to 1), ``windows`` (how
        many were averaged), ``error`` (empty when scored; else the reason, with an empty emotion
        and NaN probabilities). With ``per_window``, one row per window, led by ``input`` (the
        input's row number), ``start`` and ``end``; a failed input has one row, NaN times.

    Raises:
        InputError: ``frame`` has neither a ``path`` nor an ``audio`` column, a column other than
            :data:`INPUT_COLUMNS`, no rows or more than ``limits.max_rows``, a window or hop that
            is not positive, or, for a model trained with ``train.corpus_norm``, fewer than 2
            readable files.
    """
    if not {"path", "audio"} & set(frame.columns):
        raise InputError(f"input needs a 'path' or an 'audio' column, got {list(map(str, frame.columns))[:8]}")
    unknown = [str(c) for c in frame.columns if c not in INPUT_COLUMNS]
    if unknown:
        raise InputError(f"unknown input column {unknown[0][:64]!r}; the model takes {', '.join(INPUT_COLUMNS)}")
    if limits.max_rows is not None and len(frame) > limits.max_rows:
        raise InputError(f"{len(frame)} rows, over the limit of {limits.max_rows} per request")
    for value in (window_seconds, hop_seconds):
        if value is not None and not (np.isfinite(value) and 0 < value <= 3600):
            raise InputError(f"window_seconds and hop_seconds must be in (0, 3600], got {value}")
    cfg, vocab = prep.audio, list(prep.vocabulary)
    sr = cfg.sample_rate
    window = int(round((window_seconds or cfg.duration) * sr))
    hop = int(round((hop_seconds or (window_seconds or cfg.duration) / 2) * sr))
    if window <= 0 or hop <= 0:
        raise InputError(f"window_seconds and hop_seconds must be positive, got {window_seconds}, {hop_seconds}")
    classifier = EmotionClassifier(model, prep)
    inputs, owners, spans, errors = [], [], [], {}
    records = frame.to_dict("records")
    for i, row in enumerate(records):
        try:
            y, name = _decoded(row, i, sr, storage_options, allowed_paths, limits.decode)
            row_inputs, row_spans = classifier.windows(y, name, window, hop, windowed=windows)
            inputs += row_inputs  # only once every window of the row is ready
            owners += [i] * len(row_inputs)
            spans += row_spans
        except audio.AudioError as exc:
            errors[i] = str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad file must not fail the batch
            # the detail goes to the log; a client gets one sentence with no internals
            _log.warning("row %d could not be scored", i, exc_info=True)
            errors[i] = f"row {i}: could not be scored ({type(exc).__name__})"
    k = len(vocab)
    if inputs:
        classifier.check_population(len(set(owners)))
    groups = np.asarray([speaker_group(records[o].get("speaker"), o) for o in owners])
    probs = classifier.probabilities(np.concatenate(inputs), groups) if inputs else np.zeros((0, k), np.float32)
    columns = [f"p_{label}" for label in vocab]
    if per_window:
        records = [{"input": int(o), "start": round(a, 4), "end": round(b, 4), "windows": 1, "error": ""}
                   for o, (a, b) in zip(owners, spans)]
        records += [{"input": i, "start": np.nan, "end": np.nan, "windows": 0, "error": e} for i, e in errors.items()]
        p = np.vstack([probs.astype(np.float64), np.full((len(errors), k), np.nan)])
        order = np.lexsort(([r["start"] for r in records], [r["input"] for r in records]))
        out = pd.DataFrame([records[j] for j in order], columns=["input", "start", "end", "windows", "error"])
        p = p[order]
    else:
        n = len(frame)
        p, counts = recording_means(probs, owners, n)
        out = pd.DataFrame({"windows": counts.astype(np.int64), "error": [errors.get(i, "") for i in range(n)]})
    best = np.where(np.isnan(p).any(axis=1), -1, np.nan_to_num(p, nan=-1.0).argmax(axis=1))
    at = 3 if per_window else 0  # after input, start and end
    out.insert(at, "emotion", [vocab[b] if b >= 0 else "" for b in best])
    for j, col in enumerate(columns):
        out.insert(at + 1 + j, col, p[:, j])
    return out


class EmotionModel(mlflow.pyfunc.PythonModel):
    """The registered model: raw audio in, emotions out (see the module docstring).

    Logged as code (:mod:`ser_tasks.serve.model_code`), not as a pickle. Artifacts: ``keras_model`` (the
    ``.keras`` file, normalisation included), ``preprocessing`` (:class:`Preprocessing` as JSON),
    ``normalizer`` (its statistics, for reading) and, for a model on an encoder named by a folder
    or hub id, ``encoder`` (its weight folder). Loading needs only this package installed:
    :meth:`load_context` registers the zoo's custom layers and builds the encoder.

    Prediction parameters (MLflow ``params``): ``windows`` (bool, default true), ``per_window``
    (bool, default false), ``window_seconds`` and ``hop_seconds`` (0 means the defaults of
    :func:`predict_frame`).

    Paths: a request is untrusted, so a row's ``path`` is opened only under roots that the side
    loading the model allows: ``mlflow.pyfunc.load_model(uri, model_config={"allowed_paths": [...]})``
    or, for ``mlflow models serve``, the environment variable ``SER_ALLOWED_PATHS`` (comma-separated
    absolute folders or URL prefixes). By default no path is opened; rows must carry ``audio`` bytes.

    Limits (:data:`DEFAULT_LIMITS`, declared in the model's ``model_config``, so the same two ways
    change them, or MLflow's ``MLFLOW_PYFUNC_INFERENCE_CONFIG`` JSON for a served model): rows per
    call, and per row encoded bytes, decoded seconds and channels.

    Output: in a scoring server (MLflow's, under ``mlflow models serve`` or ``ser serve``), strict
    JSON once serialised: a missing value (the probabilities of a row that failed, the times of its
    window row) is ``None`` (JSON null; JSON has no NaN), such columns then of object dtype. In
    process, NaN in float columns, as :func:`predict_frame` gives them.
    """

    def load_context(self, context) -> None:
        """Load the Keras model and its preprocessing from the model's artifacts."""
        import keras

        from ser_tasks.learn import models  # noqa: F401 - registers the pooling layers and SpecAugment for loading

        keras_model = keras.models.load_model(context.artifacts[KERAS_MODEL], compile=False)
        prep = Preprocessing.from_dict(json.loads(Path(context.artifacts[PREPROCESSING]).read_text()))
        if ENCODER in context.artifacts:  # the weights travelled with the model
            prep = replace(prep, features=prep.features.model_copy(update={"encoder": context.artifacts[ENCODER]}))
        if prep.features.encoder:  # built now, not on the first request
            from ser_tasks.signal.encoder import shared

            shared(prep.features.encoder)
        self.classifier = EmotionClassifier(keras_model, prep)
        self.keras_model, self.preprocessing = keras_model, prep
        # Paths a request may name: none, unless whoever loads the model allows roots (model_config
        # at load time, or the serving process's environment). Requests are untrusted by default.
        config = dict(getattr(context, "model_config", None) or {})
        env = [v for v in os.environ.get(ALLOWED_PATHS_ENV, "").split(",") if v.strip()]
        self.allowed_paths = allowed_roots([*(config.get("allowed_paths") or []), *env])
        self.limits = RequestLimits.from_config(config)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Emotions of the files in ``model_input`` (a DataFrame; see :func:`predict_frame`)."""
        params = dict(params or {})
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            out = predict_frame(self.keras_model, self.preprocessing, frame,
                                windows=bool(params.get("windows", True)),
                                per_window=bool(params.get("per_window", False)),
                                window_seconds=float(params.get("window_seconds") or 0) or None,
                                hop_seconds=float(params.get("hop_seconds") or 0) or None,
                                allowed_paths=getattr(self, "allowed_paths", ()),
                                limits=getattr(self, "limits", RequestLimits.from_config({})))
        except InputError as exc:  # the request as a whole: a 400 with this sentence when served
            raise RequestRefused(str(exc)) from None
        return strict_json(out) if _in_scoring_server() else out


def _in_scoring_server() -> bool:
    """Whether MLflow's scoring server runs this process (it sets the flag when it starts)."""
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT

    return bool(_MLFLOW_IS_IN_SERVING_ENVIRONMENT.get())


def strict_json(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every NaN of a float column as ``None`` (JSON ``null``; JSON has no NaN).

    A column without NaN keeps its dtype; one with NaN becomes object dtype.
    """
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f" and out[col].isna().any():
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def signature(prep: Preprocessing) -> mlflow.models.ModelSignature:
    """The model's signature: its input and output columns, and the prediction parameters with their defaults.

    Optional ``path`` (string), ``audio`` (binary) and ``speaker`` (string) columns in; emotion,
    probabilities, window count and error out.
    """
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("string", "path", required=False), ColSpec("binary", "audio", required=False),
                     ColSpec("string", "speaker", required=False)])
    outputs = Schema([ColSpec("string", "emotion"), *[ColSpec("double", f"p_{c}") for c in prep.vocabulary],
                      ColSpec("long", "windows"), ColSpec("string", "error")])
    params = ParamSchema([ParamSpec("windows", "boolean", True), ParamSpec("per_window", "boolean", False),
                          ParamSpec("window_seconds", "double", 0.0), ParamSpec("hop_seconds", "double", 0.0)])
    return mlflow.models.ModelSignature(inputs, outputs, params)


def log_emotion_model(model_path: Path, normalizer_path: Path, prep: Preprocessing,
                      registered_model: str | None = None):
    """Log an :class:`EmotionModel` to the active MLflow run as ``model``, and register a version.

    Args:
        model_path: the trained zoo model (``.keras``).
        normalizer_path: its ``normalizer.json``.
        prep: the preprocessing it was trained with.
        registered_model: registry name; ``None`` logs without registering.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri``, ``registered_model_version``).
    """
    import tempfile
    import warnings

    import keras

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # an input example would be a file; the signature says what the model takes
        warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
        prep_path = Path(tmp, "preprocessing.json")
        prep_path.write_text(json.dumps(prep.to_dict(), indent=1))
        artifacts = {KERAS_MODEL: str(model_path), PREPROCESSING: str(prep_path), NORMALIZER: str(normalizer_path)}
        if prep.features.encoder:
            from ser_tasks.signal.encoder import PACKAGED, resolve

            if prep.features.encoder not in PACKAGED:
                artifacts[ENCODER] = str(resolve(prep.features.encoder))
        # Explicit requirements: inferring them loads the model again in a subprocess (slow, and fragile offline).
        return mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(__file__).with_name("model_code.py")), signature=signature(prep),
            artifacts=artifacts,
            # declared, so that load_model(..., model_config={...}) may set them; no path and the limits by default
            model_config={"allowed_paths": [], **DEFAULT_LIMITS},
            registered_model_name=registered_model,
            pip_requirements=[f"keras=={keras.__version__}", "tensorflow-cpu", "ser-pipeline"])


def preprocessing_of(loaded) -> Preprocessing:
    """The :class:`Preprocessing` of a loaded pyfunc model (``mlflow.pyfunc.load_model``)."""
    return loaded.unwrap_python_model().preprocessing



def expand_inputs(targets: list[str], storage_options: dict | None = None) -> list[str]:
    """Files to score: folder targets expanded to the audio files below them, other targets kept.

    Each target that is a folder (or an ``s3://`` prefix) is expanded to the audio files below it,
    recursively and sorted; anything else is kept as given (a missing file then gets its error row
    rather than stopping the others).

    Args:
        targets: local paths or fsspec URLs, files or folders.
        storage_options: fsspec options for remote targets.

    Returns:
        Paths or URLs, in the order of ``targets``, without duplicates.
    """
    import fsspec

    from ser_tasks.corpus.manifest import list_audio_files
    from ser_tasks.remote import fs_options

    out: list[str] = []
    for target in targets:
        fs, path = fsspec.core.url_to_fs(target, **fs_options(target, storage_options))
        out += list_audio_files(target, storage_options) if fs.isdir(path) else [target]
    return list(dict.fromkeys(out))


def read_bytes(path: str, storage_options: dict | None = None) -> bytes | None:
    """The file's bytes through fsspec, or ``None`` when it cannot be read (the model then reports why)."""
    import fsspec

    from ser_tasks.remote import fs_options

    try:
        with fsspec.open(path, "rb", **fs_options(path, storage_options)) as fh:
            return fh.read()
    except OSError:
        return None


#: How ``ser predict`` tells which files share a speaker (:func:`speakers_of`).
SPEAKER_GROUPINGS = ("file", "folder", "name", "all")


def speakers_of(paths: list[str], grouping: str) -> list[str]:
    """The speaker of each file for a speaker-normalised model, by a rule the user chooses.

    Args:
        paths: local paths or fsspec URLs.
        grouping: ``"file"`` (each file its own voice: normalised by its own statistics),
            ``"folder"`` (the files of one folder are one voice), ``"name"`` (the speaker a corpus's
            naming scheme gives, as the manifest reads it: RAVDESS's actor, CREMA-D's ``1001``...;
            :func:`ser_tasks.corpus.corpora.parse_name`; a name no scheme reads leaves its file alone) or
            ``"all"`` (every file one voice).

    Returns:
        ``(len(paths),)`` speaker keys (``""`` for a file alone; ``"<corpus>:<id>"`` by name).

    Raises:
        InputError: an unknown ``grouping``.
    """
    if grouping == "file":
        return [""] * len(paths)
    if grouping == "folder":
        return [posixpath.dirname(p) or "." for p in paths]
    if grouping == "all":
        return ["all"] * len(paths)
    if grouping == "name":
        from ser_tasks.corpus.corpora import parse_name

        named = [parse_name(p) for p in paths]
        return [f"{n[0]}:{n[1].speaker}" if n and n[1].speaker else "" for n in named]
    raise InputError(f"unknown speaker grouping {grouping!r}; choose one of {', '.join(SPEAKER_GROUPINGS)}")


def speaker_batches(speakers: list[str], batch: int) -> list[list[int]]:
    """Positions of files grouped into calls of the model, a speaker's files never split.

    Speakers are taken in order of first appearance; a call holds whole speakers up to ``batch``
    files, and a speaker with more files than that has a call of its own.

    Args:
        speakers: ``(n,)`` speaker of every file (``""``: none, the file alone).
        batch: files per call the model should get.

    Returns:
        Lists of positions into ``speakers``; every position once.
    """
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(speakers):
        groups.setdefault(s or f"\0{i}", []).append(i)
    calls: list[list[int]] = []
    for members in groups.values():
        if calls and len(calls[-1]) + len(members) <= batch:
            calls[-1] += members
        else:
            calls.append(list(members))
    return calls


def predict_files(model, paths: list[str], params: dict | None = None, storage_options: dict | None = None,
                  batch: int = 16, on_batch=None, speakers: list[str] | None = None) -> pd.DataFrame:
    """Score files with a loaded pyfunc model (``mlflow.pyfunc.load_model``), a batch at a time.

    Files are read here, with ``storage_options``, and sent as ``audio`` bytes next to their ``path``
    (and their ``speaker``, when given: one speaker's files go in one call, :func:`speaker_batches`,
    so a speaker-normalised model sees them together).

    Args:
        model: the loaded registered model.
        paths: local paths or fsspec URLs.
        params: prediction parameters (see :class:`EmotionModel`).
        storage_options: fsspec options for reading remote ``paths``.
        batch: files per call of the model.
        on_batch: called with the number of files done after each batch (a progress bar).
        speakers: ``(len(paths),)`` speaker of each file (``""``: unknown), or ``None``.

    Returns:
        ``path`` followed by the model's columns, in the order of ``paths``; per window (``input``
        replaced by ``path``) when ``params["per_window"]``.
    """
    calls = ([list(range(i, min(i + batch, len(paths)))) for i in range(0, len(paths), batch)]
             if speakers is None else speaker_batches(list(speakers), batch))
    frames = []
    for positions in calls:
        chunk = [paths[j] for j in positions]
        data = {"path": chunk, "audio": [read_bytes(p, storage_options) or b"" for p in chunk]}
        if speakers is not None:
            data["speaker"] = [speakers[j] or "" for j in positions]
        out = model.predict(pd.DataFrame(data), params=params)
        if "input" in out.columns:  # per window: input, start, end, ...
            at = [positions[j] for j in out["input"]]
            out = out.assign(input=[chunk[j] for j in out["input"]]).rename(columns={"input": "path"})
        else:
            at = positions
            out.insert(0, "path", chunk)
        frames.append(out.assign(_at=at))
        if on_batch is not None:
            on_batch(len(chunk))
    if not frames:
        return pd.DataFrame({"path": []})
    # speaker batches reorder the files; give them back in the order asked (windows stay in time order)
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values("_at", kind="stable").drop(columns="_at").reset_index(drop=True)
