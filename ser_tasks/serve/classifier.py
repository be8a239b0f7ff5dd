"""Emotions from waveforms in plain Python: the classifier the registered model, ``ser predict`` and ``ser serve`` wrap.

:class:`EmotionClassifier` holds the Keras model and its :class:`Preprocessing`. Its interface follows
SpeechBrain's ``EncoderClassifier`` (``classify_file``, ``classify_batch``; speechbrain.inference,
Ravanelli et al. 2021): one file, or a batch of waveforms, in; one :class:`Prediction` per input out.
No pandas frame and no MLflow call is needed to use it once loaded; :meth:`EmotionClassifier.load`
takes any model URI MLflow resolves (``models:/ser-emotion@champion``, ``runs:/<id>/model``, a folder).

Every clip goes through the functions extraction uses (one implementation): mono, resample
(:mod:`ser_tasks.signal.audio`), trim and refuse silence (:func:`ser_tasks.signal.audio.speech_bounds`),
pad or crop to ``audio.duration`` (:func:`ser_tasks.signal.audio.fix_length`), features
(:mod:`ser_tasks.signal.features`), model input (:func:`ser_tasks.learn.data.assemble`), then the Keras
model, whose first layer holds the training rows' normalisation. Speech longer than the training
duration is scored in windows (:func:`window_bounds`) and their probabilities averaged.

The registered model (:class:`ser_tasks.serve.predict.EmotionModel`) is an adapter over this class: it
decodes the rows of an untrusted request (paths only under allowed roots, size limits) and shapes
the answer as a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ser_tasks.config import AudioConfig, FeatureConfig
from ser_tasks.errors import InputError
from ser_tasks.signal import audio, features

#: Rows per call of the Keras model; batches are padded to it, so the graph is traced once.
BATCH = 64


@dataclass(frozen=True)
class Preprocessing:
    """What turns a file into the model's input, saved beside the model as ``preprocessing.json``.

    Attributes:
        audio, features: the extraction settings the model was trained on.
        input_name: the model input (``log_mel``, ``mfcc``, ``zcr_rms``, ``frames`` or ``log_mel_prosody``;
            :data:`ser_tasks.learn.data.INPUTS`).
        vocabulary: class labels, in the order of the model's outputs.
        model: the zoo model's name.
        speaker_norm: the model was trained on input normalised per speaker (``train.speaker_norm``):
            inputs are normalised by the statistics of the clips given for their speaker
            (:func:`predict_frame`). Models saved before the setting existed read ``False``.
        corpus_norm: the model was trained on input normalised per corpus (``train.corpus_norm``):
            all the inputs of one call are normalised together, as one corpus.
    """

    audio: AudioConfig
    features: FeatureConfig
    input_name: str
    vocabulary: tuple[str, ...]
    model: str
    speaker_norm: bool = False
    corpus_norm: bool = False

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"audio": self.audio.model_dump(mode="json"), "features": self.features.model_dump(mode="json"),
                "input_name": self.input_name, "vocabulary": list(self.vocabulary), "model": self.model,
                "speaker_norm": self.speaker_norm, "corpus_norm": self.corpus_norm}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        """Inverse of :meth:`to_dict`."""
        return cls(AudioConfig(**data["audio"]), FeatureConfig.stored(data["features"]), data["input_name"],
                   tuple(data["vocabulary"]), data["model"], bool(data.get("speaker_norm", False)),
                   bool(data.get("corpus_norm", False)))

    def model_input(self, y: np.ndarray) -> np.ndarray:
        """Model input of one clip's speech, padded or cropped to ``audio.duration`` as extraction does.

        Args:
            y: ``(samples,)`` float32 speech at ``audio.sample_rate`` (any length; an encoder sees
                the speech without the padding, as in the store).

        Returns:
            ``(1, ...)`` float32, as :func:`ser_tasks.learn.data.assemble` builds it from stored rows.
        """
        from ser_tasks.learn.data import arrays_for, assemble

        speech = audio.speech_span(y.shape[0], self.audio.n_samples)
        y = audio.fix_length(y, self.audio.n_samples)
        arrays = features.extract(y, self.audio.sample_rate, self.features, names=arrays_for(self.input_name),
                                  speech=speech)
        return assemble(self.input_name, {k: v[np.newaxis] for k, v in arrays.items()})


def window_bounds(n: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Windows over ``n`` samples of speech.

    One window ``(0, n)`` when ``n <= window`` (padded later, as in training). Otherwise windows of
    ``window`` samples starting every ``hop`` samples, and one more ending at ``n`` when the speech
    runs on past the last of them by at least a quarter of a hop: every window is whole, and at
    most ``hop // 4`` samples of tail go unscored (trimming's frame granularity alone leaves a few
    milliseconds, which must not add a near-copy of the last window).

    Args:
        n: length of the speech, in samples.
        window: window length in samples (> 0).
        hop: samples between the starts of consecutive windows (> 0).

    Returns:
        ``[(start, stop), ...]`` in samples, in order.

    Raises:
        InputError: a window or hop that is not positive.
    """
    if window <= 0 or hop <= 0:
        raise InputError(f"window ({window}) and hop ({hop}) must be positive numbers of samples")
    if n <= window:
        return [(0, n)]
    starts = list(range(0, n - window + 1, hop))
    if n - (starts[-1] + window) >= max(1, hop // 4):
        starts.append(n - window)
    return [(s, s + window) for s in starts]




def _probabilities(model, x: np.ndarray) -> np.ndarray:
    """``(n, k)`` float32 probabilities, :data:`BATCH` rows a call, the last batch padded.

    One input shape, so the graph is traced once however many files come.
    """
    n = x.shape[0]
    padded = np.concatenate([x, np.zeros((-n % BATCH, *x.shape[1:]), x.dtype)]) if n % BATCH else x
    out = [np.asarray(model.predict_on_batch(padded[i:i + BATCH])) for i in range(0, len(padded), BATCH)]
    return np.concatenate(out)[:n]


def speaker_group(speaker, index: int) -> str:
    """The normalisation group of input ``index``: its speaker when it names one, else the input alone."""
    return f"speaker:{speaker}" if isinstance(speaker, str) and speaker else f"row:{index}"


def recording_means(probs: np.ndarray, owners: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each recording's probabilities: the mean over its windows.

    Args:
        probs: ``(windows, k)`` probabilities of every scored window.
        owners: ``(windows,)`` int, the recording (0 .. n - 1) each window belongs to.
        n: how many recordings.

    Returns:
        ``(means, counts)``: ``(n, k)`` float64, NaN for a recording with no window, and ``(n,)``
        int64 windows per recording.
    """
    owners = np.asarray(owners, dtype=np.int64)
    counts = np.bincount(owners, minlength=n)
    means = np.full((n, probs.shape[1]), np.nan)
    if owners.size:
        sums = np.zeros_like(means)
        np.add.at(sums, owners, probs.astype(np.float64))
        scored = counts > 0
        means[scored] = sums[scored] / counts[scored, None]
    return means, counts


@dataclass(frozen=True)
class Prediction:
    """The emotion of one input.

    Attributes:
        emotion: the most probable label; ``""`` when the input could not be scored.
        probabilities: label -> probability (float, summing to 1), in the model's label order;
            empty when the input could not be scored.
        windows: how many windows of the speech were scored and averaged (0 when none).
        error: empty when scored, else one sentence naming the input and the reason.
    """

    emotion: str
    probabilities: dict[str, float]
    windows: int
    error: str = ""


class EmotionClassifier:
    """A trained emotion model with the preprocessing it was trained with: waveforms in, emotions out.

    Args:
        keras_model: the Keras model (input as :meth:`Preprocessing.model_input` builds it, output
            ``(n, k)`` probabilities).
        preprocessing: the audio, feature and normalisation settings it was trained with.

    Attributes:
        keras_model, preprocessing: as given.
    """

    def __init__(self, keras_model, preprocessing: Preprocessing):
        """Hold the model and its preprocessing (nothing is loaded or built here)."""
        self.keras_model = keras_model
        self.preprocessing = preprocessing

    @classmethod
    def load(cls, model_uri: str) -> EmotionClassifier:
        """The classifier of a registered model version, a logged model or a downloaded model folder.

        Loaded through MLflow (:func:`mlflow.pyfunc.load_model`), so an encoder that travelled with
        the model is built too.

        Args:
            model_uri: ``models:/<name>@champion``, ``models:/<name>/<version>``, ``runs:/<run>/model``
                or a local folder of a logged model.

        Raises:
            MlflowException: the URI names no model MLflow can load.
            TypeError: the model is not one this project registered.
        """
        import mlflow

        loaded = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        classifier = getattr(loaded, "classifier", None)
        if not isinstance(classifier, EmotionClassifier):
            raise TypeError(f"{model_uri} is not an emotion model of this project")
        return classifier

    @property
    def labels(self) -> tuple[str, ...]:
        """The class labels, in the order of the model's outputs."""
        return tuple(self.preprocessing.vocabulary)

    @property
    def sample_rate(self) -> int:
        """The rate, in Hz, at which the model hears audio (inputs at another rate are resampled)."""
        return self.preprocessing.audio.sample_rate

    def windows(self, y: np.ndarray, name: str, window: int | None = None, hop: int | None = None,
                windowed: bool = True) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
        """The model inputs of one decoded recording, one per window of its speech.

        Silent windows inside a long recording are skipped (a pause says nothing of the emotion).

        Args:
            y: ``(samples,)`` float32 at :attr:`sample_rate`.
            name: what an error names (a path, a row).
            window: window length in samples [default ``audio.duration``].
            hop: samples between window starts [default half the window].
            windowed: ``False`` scores one ``audio.duration`` crop around the centre, as extraction
                stores a clip.

        Returns:
            ``(inputs, spans)``: each input ``(1, ...)`` float32, and its ``(start, end)`` in seconds
            of the recording.

        Raises:
            AudioError: no speech (silent, or shorter than ``audio.min_speech_seconds``).
            InputError: a window or hop that is not positive.
        """
        cfg = self.preprocessing.audio
        sr = cfg.sample_rate
        window = window or cfg.n_samples
        hop = hop or window // 2
        start, stop = audio.speech_bounds(y, cfg, name)
        bounds = window_bounds(stop - start, window, hop) if windowed else [(0, stop - start)]
        loud = [(s, e) for s, e in bounds
                if len(bounds) == 1 or np.max(np.abs(y[start + s:start + e])) >= 10 ** (cfg.silence_floor_dbfs / 20)]
        inputs = [self.preprocessing.model_input(y[start + s:start + e]) for s, e in loud]
        return inputs, [((start + s) / sr, (start + e) / sr) for s, e in loud]

    def check_population(self, recordings: int) -> None:
        """Refuse to score fewer than 2 recordings at once with a corpus-normalised model.

        One recording normalised by its own statistics is all zeros: the model would answer a constant.

        Args:
            recordings: how many distinct recordings one call scores.

        Raises:
            InputError: the model was trained with ``train.corpus_norm`` and ``recordings < 2``.
        """
        if self.preprocessing.corpus_norm and recordings < 2:
            raise InputError("a corpus-normalised model scores a population: give it at least 2 readable files at once")

    def probabilities(self, x: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities of model inputs, normalised as the model was trained.

        Args:
            x: ``(n, ...)`` float32 model inputs (:meth:`windows`).
            groups: ``(n,)`` the speaker of each input, for a model trained with ``train.speaker_norm``
                (each group normalised by its own statistics; ``None``: each input its own group).
                A model trained with ``train.corpus_norm`` normalises all ``n`` together (call
                :meth:`check_population` first); others ignore it.

        Returns:
            ``(n, k)`` float32, rows summing to 1, columns in :attr:`labels` order.
        """
        prep = self.preprocessing
        if prep.speaker_norm or prep.corpus_norm:
            from ser_tasks.learn.data import normalise_groups

            if prep.corpus_norm:
                groups = np.zeros(len(x), np.int64)
            elif groups is None:
                groups = np.arange(len(x))
            x = normalise_groups(x, np.asarray(groups), prep.input_name)
        return _probabilities(self.keras_model, x)

    def classify_batch(self, waveforms: Sequence[np.ndarray] | np.ndarray, sample_rate: int | None = None,
                       speakers: Sequence[str] | None = None, windowed: bool = True) -> list[Prediction]:
        """Emotions of several recordings already decoded.

        Args:
            waveforms: a sequence of ``(samples,)`` float arrays in [-1, 1] (lengths may differ), or
                one ``(n, samples)`` array; mono.
            sample_rate: their rate in Hz [default :attr:`sample_rate`]; others are resampled.
            speakers: ``(n,)`` the speaker of each, for a speaker-normalised model (``""``: unknown,
                normalised alone); ``None``: all unknown.
            windowed: score speech longer than ``audio.duration`` in windows (see :meth:`windows`).

        Returns:
            One :class:`Prediction` per waveform, in order. A waveform with no speech, or not
            1-D, gets a prediction whose ``error`` says so; the others are scored.

        Raises:
            InputError: ``speakers`` of another length than ``waveforms``; a corpus-normalised model
                given fewer than 2 scorable waveforms.
        """
        waveforms = list(waveforms)
        if speakers is not None and len(speakers) != len(waveforms):
            raise InputError(f"{len(speakers)} speakers for {len(waveforms)} waveforms")
        rate = sample_rate or self.sample_rate
        inputs, owners, errors = [], [], {}
        for i, y in enumerate(waveforms):
            name = f"waveform {i}"
            try:
                y = np.asarray(y, dtype=np.float32)
                if y.ndim != 1 or not np.isfinite(y).all():
                    raise audio.AudioError(f"{name}: not a 1-D waveform of finite samples (shape {y.shape})")
                if rate != self.sample_rate:
                    y = audio.resample(y, rate, self.sample_rate).astype(np.float32)
                row_inputs, _ = self.windows(y, name, windowed=windowed)
                inputs += row_inputs
                owners += [i] * len(row_inputs)
            except audio.AudioError as exc:
                errors[i] = str(exc)
        if inputs:
            self.check_population(len(set(owners)))
        groups = np.asarray([speaker_group(speakers[o] if speakers is not None else None, o) for o in owners])
        probs = (self.probabilities(np.concatenate(inputs), groups) if inputs
                 else np.zeros((0, len(self.labels)), np.float32))
        means, counts = recording_means(probs, owners, len(waveforms))
        return [self._prediction(means[i], int(counts[i])) if counts[i]
                else Prediction("", {}, 0, errors.get(i, f"waveform {i}: no window could be scored"))
                for i in range(len(waveforms))]

    def _prediction(self, mean: np.ndarray, windows: int) -> Prediction:
        """A scored recording's prediction from its mean probabilities ``(k,)``."""
        return Prediction(self.labels[int(mean.argmax())], dict(zip(self.labels, mean.tolist())), windows)

    def classify_file(self, path: str, storage_options: dict | None = None, windowed: bool = True) -> Prediction:
        """The emotion of one audio file (WAV, FLAC, OGG, MP3, AIFF; any rate, mono or not).

        Args:
            path: local path or fsspec URL (this is the caller's own file: no allowed roots apply).
            storage_options: fsspec options for a remote ``path``.
            windowed: as in :meth:`classify_batch`.

        Raises:
            AudioError: the file cannot be read or decoded, or holds no speech; the message names it.
            InputError: the model is corpus-normalised (it needs a population: use :meth:`classify_batch`).
        """
        self.check_population(1)  # before reading: a corpus-normalised model cannot score one file
        y = audio.load_audio(path, self.sample_rate, storage_options)
        inputs, _ = self.windows(y, path, windowed=windowed)
        probs = self.probabilities(np.concatenate(inputs), np.zeros(len(inputs), np.int64))
        return self._prediction(probs.astype(np.float64).mean(axis=0), len(inputs))
