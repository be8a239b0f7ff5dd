"""The model search behind ``benchmarks/accuracy.yaml``: one actor-disjoint development split, in memory.

Trains one candidate on RAVDESS actors 9-24 and scores it on actors 5-8. Actors 1-4 are left out
entirely, so the search never saw one fold's test actors. (Every fold of the 6-fold
cross-validation holds some actors that trained or scored a candidate here; say so when quoting.)
The data are the rows of a split-agnostic store (``augment.scope: all``, 4 copies per clip); each
epoch draws one row per training clip, the schedule is a cosine decay over ``--epochs`` with Adam,
and the last epoch is scored on the originals of the development actors. No class weights.

Candidates (``--model``):

- ``compact``: the body of ``compact_cnn`` (2D, ``ser_tasks/learn/models.py``);
- ``tdnn-strided``: the ``tdnn`` layers on full-rate (10 ms) frames, the first convolution with
  stride 2 (20 ms);
- ``tdnn``: the ``tdnn`` of the zoo: frames averaged 4 at a time (40 ms) first.

``--norm utterance`` standardises each clip's bands over its own frames before the training-set
normalisation (per-utterance CMVN).

Usage (the store as written by ``ser evaluate ... --variants 4``)::

    .venv/bin/python benchmarks/model_search.py ser-out/eval-features.zarr --model tdnn --epochs 60 --lr 3e-3

Prints the development UA every 5 epochs and a JSON line of the settings, final scores and time.
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np
from keras import layers

from ser_tasks.learn import metrics
from ser_tasks.store.zarr_store import FeatureStore


def stats_pool(x):
    """Mean and standard deviation over time (axis 1), concatenated."""
    std = layers.Lambda(lambda t: keras.ops.sqrt(keras.ops.var(t, axis=1) + 1e-5))(x)
    return layers.Concatenate()([layers.GlobalAveragePooling1D()(x), std])


def head(x):
    """Dropout 0.3, Dense 128 ReLU, dropout 0.3 (as the zoo's models)."""
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu")(x)
    return layers.Dropout(0.3)(x)


def compact(x):
    """``compact_cnn``'s body on ``(batch, mels, T, 1)``."""
    for i, filters in enumerate((16, 32, 64, 128)):
        x = layers.Conv2D(filters, 3, strides=2 if i == 0 else 1, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        if i > 0:
            x = layers.MaxPooling2D(2, padding="same")(x)
    _, bands, _, channels = x.shape
    x = layers.Reshape((-1, bands * channels))(layers.Permute((2, 1, 3))(x))
    return head(stats_pool(x))


def tdnn(x, pool: int):
    """The zoo's ``tdnn`` layers; ``pool == 1`` strides the first convolution by 2 instead."""
    x = layers.Permute((2, 1))(layers.Reshape((x.shape[1], x.shape[2]))(x))
    if pool > 1:
        x = layers.AveragePooling1D(pool, padding="same")(x)
    for i, (filters, kernel, dilation) in enumerate(((128, 5, 1), (128, 3, 2), (128, 3, 3), (256, 1, 1))):
        stride = 2 if (i == 0 and pool == 1) else 1
        x = layers.Conv1D(filters, kernel, strides=stride, dilation_rate=dilation, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
    return head(stats_pool(x))


class OneRowPerClip(keras.utils.PyDataset):
    """Batches of in-memory rows, one drawn row per clip per epoch (seeded)."""

    def __init__(self, x, y, rows, clips, batch_size, seed=0):
        """Serve ``x``/``y`` at ``rows``; ``clips`` holds every row's clip id. Draws the first epoch."""
        super().__init__()
        self.x, self.y, self.rows, self.clips, self.bs = x, y, rows, clips[rows], batch_size
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def on_epoch_end(self):
        """Draw the next epoch: one row per clip, in random order."""
        order = self.rng.permutation(self.rows.size)
        _, first = np.unique(self.clips[order], return_index=True)
        self.current = self.rng.permutation(self.rows[order[first]])

    def __len__(self):
        """Batches per epoch: one row per clip, ``batch_size`` rows a batch."""
        return int(np.ceil(self.current.size / self.bs))

    def __getitem__(self, i):
        """Batch ``i`` of this epoch: ``(x, y)``."""
        r = self.current[i * self.bs:(i + 1) * self.bs]
        return self.x[r], self.y[r]


def main() -> None:
    """Parse arguments, train one candidate, print its development scores."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", help="a split-agnostic feature store (ser evaluate's)")
    ap.add_argument("--group", default=None)
    ap.add_argument("--model", choices=("compact", "tdnn-strided", "tdnn"), default="tdnn")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--norm", choices=("global", "utterance"), default="global")
    ap.add_argument("--dev-actors", default="5,6,7,8")
    ap.add_argument("--exclude-actors", default="1,2,3,4")
    args = ap.parse_args()

    keras.utils.set_random_seed(0)
    view = FeatureStore.locate(args.store, args.group).view()
    x = view.features("log_mel")[:].astype(np.float32)  # (rows, mels, T)
    y = view.labels()
    variant, clips = view.column("variant"), view.column("clip_id")
    actor = np.array([int(s.rsplit(":", 1)[-1]) for s in view.column("speaker")])
    vocab = view.vocabulary
    dev = [int(a) for a in args.dev_actors.split(",")]
    excluded = [int(a) for a in args.exclude_actors.split(",") if a]
    test = np.flatnonzero(np.isin(actor, dev) & (variant == 0))
    train = np.flatnonzero(~np.isin(actor, dev + excluded))
    if args.norm == "utterance":
        x = (x - x.mean(2, keepdims=True)) / (x.std(2, keepdims=True) + 1e-3)
    mean, std = x[train].mean((0, 2), keepdims=True), x[train].std((0, 2), keepdims=True)
    x = ((x - mean) / (std + 1e-6))[..., None]

    inputs = keras.Input(x.shape[1:])
    body = {"compact": compact, "tdnn-strided": lambda t: tdnn(t, 1), "tdnn": lambda t: tdnn(t, 4)}[args.model]
    model = keras.Model(inputs, layers.Dense(len(vocab), activation="softmax")(body(inputs)))
    data = OneRowPerClip(x, y, train, clips, args.batch_size)
    rate = keras.optimizers.schedules.CosineDecay(args.lr, len(data) * args.epochs)
    model.compile(keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    scores: dict = {}

    class Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % 5 == 0 or epoch + 1 == args.epochs:
                pred = model.predict(x[test], verbose=0, batch_size=128).argmax(1)
                scores.update(metrics.scores(y[test], pred, vocab), train_accuracy=logs["accuracy"])
                print(f"  epoch {epoch + 1}: development UA {scores['ua']:.3f}  WA {scores['wa']:.3f}  "
                      f"training accuracy {logs['accuracy']:.3f}", flush=True)

    t0 = time.time()
    model.fit(data, epochs=args.epochs, verbose=0, callbacks=[Report()])
    seconds = time.time() - t0
    print(json.dumps({**vars(args), "params": model.count_params(), "train_rows": int(train.size),
                      "dev_clips": int(test.size), "ua": round(scores["ua"], 4), "wa": round(scores["wa"], 4),
                      "macro_f1": round(scores["macro_f1"], 4), "train_accuracy": round(scores["train_accuracy"], 4),
                      "seconds": round(seconds, 1), "seconds_per_epoch": round(seconds / args.epochs, 2)}))


if __name__ == "__main__":
    main()
