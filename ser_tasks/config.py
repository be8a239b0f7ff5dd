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
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ser_tasks.emotions import EMOTIONS


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_range(name: str, value: tuple[float, float]) -> None:
    if value[0] > value[1]:
        raise ValueError(f"{name}: low {value[0]} is above high {value[1]}")


class AudioConfig(_Section):
    """Decoding and length normalisation.

    Attributes:
        sample_rate: target rate in Hz; every clip is resampled to it (soxr, high quality).
        duration: fixed clip length in seconds after trimming; shorter clips are zero-padded on both
            sides, longer ones cropped around the centre.
        trim_top_db: leading/trailing frames quieter than this many dB below the clip's peak are
            cut before padding (``librosa.effects.trim``); ``None`` keeps the silence.
        min_speech_seconds: a clip with less sound than this (after trimming) is a failure, in
            extraction and in prediction, not a row of padding.
        silence_floor_dbfs: a clip whose peak is below this level (dB re full scale) is silent,
            and a failure likewise. 16-bit quantisation noise sits near -96 dBFS; the quietest
            RAVDESS clip peaks at -46.8 dBFS, the quietest CREMA-D clip of the 30 actors here at
            -32.7, and CREMA-D's ``1076_MTI_SAD_XX`` is all zeros.
    """

    sample_rate: int = Field(16_000, ge=4_000, le=192_000)
    duration: float = Field(3.0, gt=0, le=60)
    trim_top_db: float | None = Field(30.0, gt=0)
    min_speech_seconds: float = Field(0.25, ge=0)
    silence_floor_dbfs: float = Field(-60.0, le=0)

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
    scope: Literal["train", "all"] = "train"
    seed: int = 0
    noise_prob: float = Field(0.5, ge=0, le=1)
    snr_db: tuple[float, float] = (10.0, 30.0)
    pitch_prob: float = Field(0.5, ge=0, le=1)
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    stretch_prob: float = Field(0.5, ge=0, le=1)
    stretch_rate: tuple[float, float] = (0.85, 1.15)
    shift_prob: float = Field(0.5, ge=0, le=1)
    shift_seconds: tuple[float, float] = (-0.25, 0.25)
    gain_prob: float = Field(0.5, ge=0, le=1)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    speed_prob: float = Field(0.0, ge=0, le=1)
    speed_rate: tuple[float, float] = (0.9, 1.1)

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

    ``f0``: also store an F0 contour (``f0``, :func:`ser_tasks.signal.features.f0_contour`, YIN), the pitch
    view that ``tdnn_prosody``, the default model, reads (docs/benchmarks.md, "Pitch and energy
    contours"); a store extracted without it keeps the name it had before the setting existed.
    ``f0_stride``: YIN runs on every ``f0_stride``-th frame only and the contour is interpolated
    back onto every frame; ``tdnn`` averages four frames before its first layer anyway, and YIN is
    the costliest part of a stored row. 1, every frame, is the default: 4 lost 0.54 point of UA on
    CREMA-D's folds, over the 0.5 a speed change was allowed (docs/benchmarks.md, "YIN on every
    fourth frame").

    ``encoder``: also store a pretrained speech encoder's pooled hidden states (``encoder``,
    ``(layers + 1, 2 * d_model)`` per row; :mod:`ser_tasks.signal.encoder`): a packaged name
    (``whisper-base``, ``whisper-tiny.en``), a local Hugging Face or CTranslate2 folder, or a hub
    id (``openai/whisper-base``). ``None`` (the default of stores made before it) stores none.
    The encoder reads the row's speech without the padding to ``audio.duration``; it needs
    ``audio.sample_rate`` 16,000. ``encoder_loudness_dbfs``: scale that speech to this RMS level
    (dB re full scale) before the encoder, so recording level does not reach it; ``None`` leaves
    the level as recorded. -23 dBFS won 1.3 points of UA on CREMA-D's folds, every fold up or
    level (docs/benchmarks.md, "Pretrained encoder").
    """

    n_fft: int = Field(512, ge=64)
    win_length: int = Field(400, ge=16)
    hop_length: int = Field(160, ge=1)
    n_mels: int = Field(64, ge=8, le=512)
    fmin: float = Field(50.0, ge=0)
    fmax: float | None = 8_000.0
    n_mfcc: int = Field(40, ge=1)
    top_db: float | None = Field(80.0, gt=0)
    f0: bool = False
    f0_stride: int = Field(1, ge=1, le=16)
    encoder: str | None = "whisper-base"
    encoder_loudness_dbfs: float | None = Field(-23.0, le=0)

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


#: Models whose input holds the F0 contour, so their store must be extracted with ``features.f0``.
F0_MODELS = ("tdnn_prosody",)
#: Models that read a pretrained encoder's pooled states, so their store needs ``features.encoder``.
ENCODER_MODELS = ("layer_weighted", "layer_concat", "linear_probe")
#: Model name -> the input it reads (see :data:`ser_tasks.learn.data.INPUTS`); here, not in
#: :mod:`ser_tasks.learn.models`, so that naming a model's input (``ser compare``) does not load Keras.
MODEL_INPUTS = {"compact_cnn": "log_mel", "tdnn": "log_mel", "notebook_cnn2d": "log_mel",
                "notebook_cnn1d": "zcr_rms", "notebook_deep_cnn1d": "frames", "utterance_mlp": "frames",
                "tdnn_prosody": "log_mel_prosody", "layer_weighted": "encoder_stats", "layer_concat": "encoder_stats",
                "linear_probe": "encoder_stats"}
#: Models whose convolution width, dropout rate, pooling, frame rate and per-clip band centring are
#: settings (``train.width``, ``train.dropout``, ``train.pooling``, ``train.frame_pool``, ``train.clip_norm``).
WIDE_MODELS = ("tdnn", "tdnn_prosody")

#: The split names, in the order rows are stored (the store's ``split`` codes 0, 1, 2).
SPLITS = ("train", "val", "test")


class SplitConfig(_Section):
    """Actor-disjoint split by fractions of the speakers (not of the clips)."""

    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.2, gt=0, lt=1)
    seed: int = 0
    stratify_by_sex: bool = True

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
    speaker_pattern: str | None = None

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
    work: four 64-row chunks by default (docs/benchmarks.md, "Measurements behind the code").
    """

    batch_rows: int = Field(64, ge=1, le=4096)
    chunks_per_task: int = Field(4, ge=1, le=1024)
    workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    retries: int = Field(2, ge=0)
    #: One writer per store group (:mod:`ser_tasks.store.lease`): the lease's time to live in seconds
    #: (renewed every third of it; a writer that died blocks the group this long at most), and how
    #: long a second writer waits for it before stopping with the holder's name.
    lease_seconds: float = Field(120.0, ge=5)
    lease_wait_seconds: float = Field(600.0, ge=0)


class TrainConfig(_Section):
    """Model choice and training schedule (Adam, class-weighted cross-entropy).

    The defaults are the recipe the project measured best (docs/benchmarks.md, "Pretrained
    encoder"): ``layer_weighted`` on Whisper base's pooled states (``features.encoder``), 60
    epochs on a cosine schedule from 1e-3, and an ensemble of 3 such models (seeds 0-2) whose
    probabilities are averaged; chosen on CREMA-D's folds (CREMA-D 0.638 against 0.543 for the
    from-scratch recipe). The from-scratch recipe, ``tdnn_prosody`` (``tdnn`` on the log-mel plus F0
    and energy rows) for 160 epochs from 3e-3 with 4 augmented copies and SpecAugment, is
    ``benchmarks/accuracy.yaml`` (docs/benchmarks.md, "What moved the number"). The SpecAugment
    settings apply to spectrogram models only. Nothing is selected on validation speakers: early
    stopping on the two validation actors of a RAVDESS split stopped at epoch 11 (UA 0.453
    against 0.634 on the same test actors).

    Attributes:
        schedule: ``"plateau"`` halves the learning rate when validation UA stalls and stops early
            (needs validation speakers to be meaningful); ``"cosine"`` decays it to zero over
            ``epochs`` (Loshchilov & Hutter 2017, without restarts) and keeps the last epoch: a
            fixed schedule that looks at no held-out speaker, as cross-validation needs.
        epoch_rows: ``"all"`` trains on every stored row of the training clips each epoch;
            ``"one_per_clip"`` on one of each clip's rows (original or a copy) drawn afresh every
            epoch, so augmentation adds variety without adding time per epoch.
        memory_mib: the training rows' decoded input is read once and held in RAM when it fits
            under this many MiB, else streamed from the store every epoch; 0 always streams. Held
            in RAM, a ``one_per_clip`` epoch reads no chunk it uses a fifth of, and under
            TensorFlow it is fed as in-graph batches (:func:`ser_tasks.learn.data.resident_tf_dataset`);
            the sizes and epoch times are in docs/benchmarks.md ("Measurements behind the code").
        spec_freq_masks, spec_freq_width, spec_time_masks, spec_time_width: SpecAugment in
            training (:class:`ser_tasks.learn.models.SpecAugment`): that many masks per example of up to
            ``spec_freq_width`` mel bands and ``spec_time_width`` frames (10 ms each at the default
            hop); off while both counts are 0. Spectrogram models only.
        mixup_alpha: mixup in training (:class:`ser_tasks.learn.data.ZarrSequence`; Zhang et al., ICLR
            2018): each example is mixed with another of its epoch by ``lam ~ Beta(alpha, alpha)``,
            inputs and one-hot labels alike; 0 (the default) turns it off.
        label_smoothing: train on ``(1 - e) * onehot + e / n_classes`` (Szegedy et al., CVPR
            2016; :func:`ser_tasks.learn.training.training_loss`); 0 (the default) turns it off.
        width: convolution channels of ``tdnn`` / ``tdnn_prosody`` (:func:`ser_tasks.learn.models.tdnn`;
            ``None``: 128, the measured default); any other model refuses a width.
        dropout: rate of the two dropout layers of ``tdnn`` / ``tdnn_prosody``, before and after
            the Dense 128 (``None``: 0.3, the rate they were measured with); any other model
            refuses a rate.
        pooling: pooling over time of ``tdnn`` / ``tdnn_prosody``: ``"stats"`` (mean and
            standard deviation, Snyder et al. 2018) or ``"attentive"`` (attention-weighted, Okabe
            et al. 2018; :class:`ser_tasks.learn.models.AttentiveStatisticsPooling`); ``None``: ``"stats"``,
            the measured default. Any other model refuses it.
        frame_pool: input frames ``tdnn`` / ``tdnn_prosody`` average into one before the first
            convolution (``None``: 4, i.e. 40 ms steps at the 10 ms hop, the measured default);
            8 halves the frames the convolutions see. Any other model refuses it.
        clip_norm: centre every log-mel band of ``tdnn`` / ``tdnn_prosody`` on its mean over the
            clip's frames after the training-set normalisation (cepstral mean normalisation on
            log-mel; :class:`ser_tasks.learn.models.ClipMeanNorm`); F0 and energy rows keep the
            training-set scale. Off by default. Any other model refuses it.
        voice_swap: probability that a training row is re-voiced: its speaker's per-band mean and
            sd exchanged for another training speaker's (:class:`ser_tasks.learn.data.VoiceSwap`; the
            speaker-level analogue of MixStyle, Zhou et al. ICLR 2021). Training only: the model
            still predicts from the clip alone. 0 (off) by default; not with ``speaker_norm``.
        speaker_adversary: adversarial training against the speaker: a speaker classifier on the
            pooled statistics of ``tdnn`` / ``tdnn_prosody`` behind gradient reversal, whose
            reversed gradient reaches this scale by the last epoch (Ganin & Lempitsky, ICML 2015;
            :func:`ser_tasks.learn.models.speaker_adversary`). Training only: the saved model is the
            emotion model alone. 0 (off) by default: at 0.3 and 0.1 it lost 2.5 and 1.5 points UA
            on CREMA-D's folds (docs/benchmarks.md, "Adversarial training against the speaker").
            Any other model refuses it, and so does mixup (a mixed row has no one speaker).
        speaker_norm: normalise the model input per speaker before the model (speaker-level mean
            and variance normalisation of every log-mel band, F0 and energy row over the
            speaker's original clips; :class:`ser_tasks.learn.data.SpeakerNorm`, Busso et al. 2013).
            Scoring normalises held-out speakers by their own clips' statistics (no labels), and
            prediction by the clips given per speaker (``ser predict --speaker-by``); a clip alone
            is normalised by its own statistics. Off by default: +4.4 points UA on CREMA-D's
            folds with every test speaker's clips, but far below the default on a clip alone
            (docs/benchmarks.md, "Per-speaker normalisation").
        corpus_norm: normalise the model input per corpus instead: every row minus the mean of
            its corpus's original clips, over their sd, as ``speaker_norm`` does per speaker
            (corpus normalisation, Schuller et al., "Cross-corpus acoustic emotion recognition:
            variances and strategies", IEEE Trans. Affective Computing 1(2), 2010). No label and no
            speaker is read: a held-out corpus is normalised by its own clips' statistics, and at
            prediction the files of one call (one ``ser predict`` / ``ser score`` run, one request
            to a served model) are normalised together, so they should be a population of
            recordings, not one clip. Off by default; not with ``speaker_norm`` or ``voice_swap``.
        ensemble: members trained one after another on the same rows with seeds ``seed``,
            ``seed + 1``, ...; the saved model averages their softmax outputs (one ``.keras``
            model, served like any other). 1 trains a single model. Training and scoring take
            that many times as long.
        where: ``"local"`` trains in the flow's process (folds one after another); ``"cluster"``
            runs each training (the model of ``ser run``, every fold of ``ser evaluate``) as a
            task on the Dask cluster (``--dask-address``, or a LocalCluster of
            ``extract.workers``), folds in parallel (:mod:`ser_tasks.learn.jobs`).
        resources: Dask resource annotations of a training task on the cluster, e.g.
            ``{"GPU": 1}`` so that only workers started with ``--resources GPU=1`` train.
        threads: TensorFlow threads per training task on the cluster; ``None``: the machine's
            cores divided by ``extract.workers`` for a LocalCluster, TensorFlow's own choice on
            a cluster given by address.
    """

    model: str = "layer_weighted"
    epochs: int = Field(60, ge=1)
    schedule: Literal["plateau", "cosine"] = "cosine"
    epoch_rows: Literal["all", "one_per_clip"] = "one_per_clip"
    batch_size: int = Field(32, ge=1)
    memory_mib: int = Field(2048, ge=0)
    learning_rate: float = Field(1e-3, gt=0)
    early_stopping_patience: int = Field(7, ge=1)
    lr_patience: int = Field(3, ge=1)
    lr_factor: float = Field(0.5, gt=0, lt=1)
    class_weights: bool = True
    spec_freq_masks: int = Field(1, ge=0)
    spec_freq_width: int = Field(8, ge=0)
    spec_time_masks: int = Field(1, ge=0)
    spec_time_width: int = Field(25, ge=0)
    mixup_alpha: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    width: int | None = Field(None, ge=1)
    dropout: float | None = Field(None, ge=0, lt=1)
    pooling: Literal["stats", "attentive"] | None = None
    frame_pool: int | None = Field(None, ge=1)
    clip_norm: bool = False
    voice_swap: float = Field(0.0, ge=0, le=1)
    speaker_adversary: float = Field(0.0, ge=0)
    speaker_norm: bool = False
    corpus_norm: bool = False
    seed: int = 0
    ensemble: int = Field(3, ge=1)
    where: Literal["local", "cluster"] = "local"
    resources: dict[str, float] = Field(default_factory=dict)
    threads: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _wide_only(self) -> TrainConfig:
        for key in ("width", "dropout", "pooling", "frame_pool", "clip_norm"):
            value = getattr(self, key)  # unset: None, or False for the flag (dropout 0.0 is a setting)
            if value is not None and value is not False and self.model not in WIDE_MODELS:
                raise ValueError(f"train.{key} is a setting of {', '.join(WIDE_MODELS)} only, not {self.model}")
        if self.speaker_adversary > 0 and self.model not in WIDE_MODELS:
            raise ValueError(f"train.speaker_adversary is a setting of {', '.join(WIDE_MODELS)} only, "
                             f"not {self.model}")
        if self.speaker_adversary > 0 and self.mixup_alpha > 0:
            raise ValueError("train.speaker_adversary needs one speaker per row; train.mixup_alpha mixes two")
        if self.voice_swap > 0 and self.speaker_norm:
            raise ValueError("train.voice_swap re-voices rows that train.speaker_norm would normalise the voice "
                             "out of; choose one")
        if self.corpus_norm and (self.speaker_norm or self.voice_swap > 0):
            raise ValueError("train.corpus_norm normalises by corpus; train.speaker_norm and train.voice_swap work "
                             "per speaker; choose one")
        return self

    @property
    def spec_augment(self) -> bool:
        """Whether SpecAugment masking is on."""
        return self.spec_freq_masks > 0 or self.spec_time_masks > 0


class TrackingConfig(_Section):
    """MLflow experiment and the registered model's name."""

    experiment: str = "ser"
    registered_model: str = "ser-emotion"


class PipelineConfig(_Section):
    """All settings of one pipeline run."""

    manifest: ManifestConfig = ManifestConfig()
    audio: AudioConfig = AudioConfig()
    augment: AugmentConfig = AugmentConfig()
    features: FeatureConfig = FeatureConfig()
    split: SplitConfig = SplitConfig()
    extract: ExtractConfig = ExtractConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()

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
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            if section not in data or key not in data[section]:
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
