"""Shared fixtures: synthetic audio and corpora, real-speech location, Prefect harness, MLflow URI."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ser_tasks.runtime import process_env

process_env.apply()

# Prefect configures logging when prefect.main is first imported (lazily, on the first `from prefect
# import flow`), binding its console handler to the sys.stderr of that moment. Inside a CliRunner
# invoke that stream is closed when the command returns, and every later flow in the process then
# fails in its log handler (RecursionError through log_prints). Configure it now, on pytest's stream.
import prefect.main  # noqa: E402, F401

# isort: split
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

SR = 16_000


def sine(freq: float, seconds: float = 1.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    """``(round(seconds*sr),)`` float32 sine at ``freq`` Hz."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(y: np.ndarray, sr: int = SR) -> float:
    """Frequency (Hz) of the largest FFT bin, refined by parabolic interpolation."""
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1:k + 2] + 1e-12)
    k_hat = k + 0.5 * (a - c) / (a - 2 * b + c)
    return k_hat * sr / len(y)


def write_wav(path: Path, y: np.ndarray, sr: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr)
    return path


#: Synthetic "emotions" a small CNN separates easily: pitch and loudness differ per class.
SYNTH_CLASSES = {"01": (180.0, 0.2), "05": (700.0, 0.6), "04": (330.0, 0.05)}  # neutral, angry, sad


def make_ravdess_like(root: Path, actors=(1, 2, 3, 4, 5, 6), emotions=("01", "05"), takes: int = 4,
                      seconds: float = 1.2, seed: int = 0) -> Path:
    """A RAVDESS-named corpus of tones: one folder per actor, ``takes`` clips per emotion.

    Each class has its own pitch and level (``SYNTH_CLASSES``), each actor a small pitch offset
    and each take a little noise, so the classes are learnable and every clip is distinct.
    """
    rng = np.random.default_rng(seed)
    for actor in actors:
        for emo in emotions:
            base, amp = SYNTH_CLASSES[emo]
            for take in range(takes):
                stmt, rep = 1 + take % 2, 1 + (take // 2) % 2
                intensity = 1 + (take // 4) % 2 if emo != "01" else 1
                name = f"03-01-{emo}-{intensity:02d}-{stmt:02d}-{rep:02d}-{actor:02d}.wav"
                f = base * (1 + 0.03 * (actor - 3))
                y = sine(f, seconds, amp=amp) + 0.01 * rng.standard_normal(int(seconds * SR)).astype(np.float32)
                # silence around the tone, as in real recordings
                y = np.concatenate([np.zeros(SR // 5, np.float32), y, np.zeros(SR // 5, np.float32)])
                write_wav(root / f"Actor_{actor:02d}" / name, y)
    return root


def extracted_store(root: Path, cfg, url: str):
    """Every clip under ``root``, split and extracted in-process with ``cfg``: the ``FeatureStore`` at ``url``."""
    from ser_tasks.corpus.manifest import build_manifest
    from ser_tasks.corpus.split import assign_split
    from ser_tasks.store.extraction import process_region
    from ser_tasks.store.plan import plan_rows
    from ser_tasks.store.zarr_store import FeatureStore

    clips, _ = assign_split(build_manifest(str(root)).clips, cfg.split)
    store = FeatureStore.create_or_resume(url, cfg, plan_rows(clips, cfg))
    for s, e in store.pending_regions():
        process_region(store.url, store.group, s, e)
    return store


@pytest.fixture
def ravdess_like(tmp_path: Path) -> Path:
    """A 6-actor, 2-emotion synthetic RAVDESS tree (48 clips)."""
    return make_ravdess_like(tmp_path / "corpus")


def require_backend(backend: str) -> None:
    """Skip unless the Keras backend's package is installed: JAX is in the test extra, PyTorch is not
    (PyPI's build is CUDA's, several GB), so the torch cases run where torch is installed."""
    import importlib.util

    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install {backend} to run this case)")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$SER_TEST_DATA`` (the shared real-speech folder); skips the test when it is absent."""
    value = os.environ.get("SER_TEST_DATA")
    if not value or not Path(value, "ravdess").is_dir():
        pytest.skip("real speech not available: set SER_TEST_DATA to the folder holding ravdess/ (see ../shared/data)")
    return Path(value)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server and database for the whole session (NOTES.md: once per session)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch) -> str:
    """A fresh sqlite tracking store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@contextlib.contextmanager
def mlflow_uris_restored():
    """Restore MLflow's process-wide tracking and registry URIs on exit.

    ``tracking.setup`` (any in-process flow) sets both with ``mlflow.set_*_uri``, which write module
    globals *and* ``os.environ`` (MLFLOW_TRACKING_URI, MLFLOW_REGISTRY_URI). Left behind, one test's
    sqlite registry answers the next test's ``models:/`` lookups (seen: test_scale_out could not
    find its registered model after an in-process ``cross_validate``, and after a module fixture
    that registered a model).
    """
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = tracking._tracking_uri, registry._registry_uri, {n: os.environ.get(n) for n in names}
    try:
        yield
    finally:
        tracking._tracking_uri, registry._registry_uri = saved[:2]
        for name, value in saved[2].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True)
def _restore_mlflow_uris():
    """Each test leaves MLflow's URIs as it found them (:func:`mlflow_uris_restored`)."""
    with mlflow_uris_restored():
        yield


def write_ct2_model(path: Path, tensors: dict[str, np.ndarray], spec: str = "WhisperSpec") -> Path:
    """Write ``tensors`` as a CTranslate2 ``model.bin`` (binary version 6, float16), as its converter lays it out."""
    import struct

    def name(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = [struct.pack("<I", 6), name(spec), struct.pack("<I", 3), struct.pack("<I", len(tensors))]
    for key, value in tensors.items():
        value = np.asarray(value)
        code = {np.dtype(np.float16): 4, np.dtype(np.float32): 0, np.dtype(np.int16): 2}[value.dtype]
        data = value.tobytes()
        out += [name(key), struct.pack("<B", value.ndim), struct.pack(f"<{value.ndim}I", *value.shape),
                struct.pack("<BI", code, len(data)), data]
    out.append(struct.pack("<I", 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(out))
    return path


def tiny_whisper_tensors(layers: int = 2, d: int = 32, ffn: int = 64, n_mels: int = 80, seed: int = 0,
                         positions: int = 1500) -> dict[str, np.ndarray]:
    """Random CTranslate2-named tensors of a tiny Whisper encoder (float16, 2 heads of 16), as the packages hold."""
    rng = np.random.default_rng(seed)

    def r(*shape, scale=0.2):
        return (scale * rng.standard_normal(shape)).astype(np.float16)

    t = {"encoder/conv1/weight": r(d, n_mels, 3), "encoder/conv1/bias": r(d),
         "encoder/conv2/weight": r(d, d, 3), "encoder/conv2/bias": r(d),
         "encoder/num_heads": np.array(2, np.int16),
         "encoder/position_encodings/encodings": r(positions, d)}
    for i in range(layers):
        p = f"encoder/layer_{i}"
        qkv_b = r(3 * d)
        qkv_b[d:2 * d] = 0  # Whisper's key projection has no bias
        t.update({f"{p}/self_attention/linear_0/weight": r(3 * d, d), f"{p}/self_attention/linear_0/bias": qkv_b,
                  f"{p}/self_attention/linear_1/weight": r(d, d), f"{p}/self_attention/linear_1/bias": r(d),
                  f"{p}/self_attention/layer_norm/gamma": (1 + r(d)), f"{p}/self_attention/layer_norm/beta": r(d),
                  f"{p}/ffn/linear_0/weight": r(ffn, d), f"{p}/ffn/linear_0/bias": r(ffn),
                  f"{p}/ffn/linear_1/weight": r(d, ffn), f"{p}/ffn/linear_1/bias": r(d),
                  f"{p}/ffn/layer_norm/gamma": (1 + r(d)), f"{p}/ffn/layer_norm/beta": r(d)})
    t.update({"encoder/layer_norm/gamma": 1 + r(d), "encoder/layer_norm/beta": r(d),
              "decoder/embeddings/weights": r(4, d)})  # a decoder variable the reader must skip
    return t


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A CTranslate2 folder holding a tiny random Whisper encoder: a valid ``features.encoder`` name."""
    folder = tmp_path_factory.mktemp("tiny-whisper")
    write_ct2_model(folder / "model.bin", tiny_whisper_tensors())
    (folder / "config.json").write_text("{}")
    return folder


def wait_for_ping(server, port: int, what: str, timeout: float = 180) -> None:
    """Wait until the model server process ``server`` answers ``/ping`` on 127.0.0.1:``port``.

    Fails the test with the server's stderr if it exits first, or after ``timeout`` seconds.
    """
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        assert server.poll() is None, server.stderr.read().decode()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{what} did not answer /ping"
        time.sleep(0.5)


def small_registered_model(tmp: Path, name: str = "tones", actors=tuple(range(1, 7))) -> dict:
    """A small from-scratch model (``utterance_mlp``, no encoder) trained on tones, registered as
    ``name``'s champion in a sqlite MLflow under ``tmp``: for tests of serving and batch plumbing,
    where what the model is does not matter and loading it must be cheap.

    Returns:
        ``{"root" (the corpus), "uri" (tracking URI), "version", "model_uri", "fit", "prep"}``.
    """
    import mlflow

    from ser_tasks.config import PipelineConfig
    from ser_tasks.learn import tracking
    from ser_tasks.learn.models import MODEL_INPUTS
    from ser_tasks.learn.training import fit
    from ser_tasks.serve import registry
    from ser_tasks.serve.predict import Preprocessing, log_emotion_model

    root = make_ravdess_like(tmp / "corpus", actors=actors, emotions=("01", "05"), takes=4)
    cfg = PipelineConfig.model_validate({"features": {"encoder": None, "f0": False},
                                         "train": {"model": "utterance_mlp"}}).with_overrides({
        "audio.duration": 1.5, "augment.variants": 0, "train.epochs": 4, "train.batch_size": 16,
        "train.ensemble": 1})
    store = extracted_store(root, cfg, str(tmp / "f.zarr"))
    result = fit(store.view(), cfg.train, tmp / "out", verbose=0)
    prep = Preprocessing(cfg.audio, cfg.features, MODEL_INPUTS[cfg.train.model],
                         tuple(store.open().attrs["vocabulary"]), cfg.train.model)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with mlflow_uris_restored():
        tracking.setup(uri, name)
        with mlflow.start_run():
            info = log_emotion_model(result.model_path, result.normalizer_path, prep, name)
        registry.promote(name, int(info.registered_model_version))
    return {"root": root, "uri": uri, "version": int(info.registered_model_version), "model_uri": info.model_uri,
            "fit": result, "prep": prep}
