import keras
import numpy as np
import pytest
import zarr

from ser_tasks.learn.data import (
    SpeakerNorm,
    ZarrSequence,
    assemble,
    input_shape,
    iter_chunks,
    resident_tf_dataset,
)
from ser_tasks.learn.training import fit_normalizer
from ser_tasks.store.zarr_store import StoreView


@pytest.fixture
def group(tmp_path):
    """A hand-made store group: 50 rows in chunks of 8, split 0/1/2, row r's features = r."""
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    n, chunk = 50, 8
    rows = np.arange(n, dtype=np.float32)
    g.create_array("log_mel", shape=(n, 4, 6), chunks=(chunk, 4, 6), dtype="float32")[:] = \
        rows[:, None, None] + np.arange(4, dtype=np.float32)[None, :, None] * 100
    for name, offset in (("zcr", 0.0), ("rms", 1000.0)):
        g.create_array(name, shape=(n, 6), chunks=(chunk, 6), dtype="float32")[:] = rows[:, None] + offset
    g.create_array("emotion", shape=(n,), chunks=(chunk,), dtype="int16")[:] = np.arange(n) % 3
    g.create_array("split", shape=(n,), chunks=(chunk,), dtype="int8")[:] = np.r_[
        np.zeros(30), np.ones(10), 2 * np.ones(10)]
    status = np.ones(n, dtype=np.int8)
    status[5] = -1  # a failed row is never served
    g.create_array("status", shape=(n,), chunks=(chunk,), dtype="int8")[:] = status
    g.create_array("variant", shape=(n,), chunks=(chunk,), dtype="int16")[:] = np.arange(n) % 2
    g.attrs["vocabulary"] = ["a", "b", "c"]
    return g


def rows(group, split, originals_only=False):
    """The split's rows through a fresh read view."""
    return StoreView(group).rows(split, originals_only)


def test_rows_of_a_split_exclude_failures(group):
    train = rows(group, "train")
    assert train.size == 29 and 5 not in train


def test_held_out_rows_can_be_limited_to_original_clips(group):
    assert rows(group, "test").tolist() == list(range(40, 50))
    assert rows(group, "test", originals_only=True).tolist() == [40, 42, 44, 46, 48]


def test_sequence_serves_every_row_once_per_epoch_and_reshuffles(group):
    idx = rows(group, "train")
    seq = ZarrSequence(StoreView(group), idx, "log_mel", batch_size=4, shuffle=True, seed=1)
    assert len(seq) == 8
    served = np.concatenate([seq[i][0][:, 0, 0, 0] for i in range(len(seq))])
    labels = np.concatenate([seq[i][1] for i in range(len(seq))])
    assert sorted(served.astype(int).tolist()) == idx.tolist()
    assert (labels == served.astype(int) % 3).all()  # labels travel with their rows
    first = seq.order.copy()
    seq.on_epoch_end()
    assert sorted(seq.order.tolist()) == idx.tolist() and seq.order.tolist() != first.tolist()
    assert len(seq.reader.cache) <= 2  # never more than two chunks held


def test_unshuffled_sequence_is_in_store_order(group):
    idx = rows(group, "test")
    seq = ZarrSequence(StoreView(group), idx, "zcr_rms", batch_size=64)
    x, y = seq[0]
    assert x.shape == (10, 6, 2) and input_shape(StoreView(group), "zcr_rms") == (6, 2)
    assert x[:, 0, 0].tolist() == idx.tolist() and (x[:, 0, 1] == idx + 1000).all()
    assert seq.labels.tolist() == (idx % 3).tolist()


def test_normalizer_matches_numpy_over_training_rows(group):
    idx = rows(group, "train")
    norm = fit_normalizer(StoreView(group), idx, "log_mel")
    x = assemble("log_mel", {"log_mel": group["log_mel"][:]})[idx].astype(np.float64)
    np.testing.assert_allclose(norm.mean, x.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(norm.variance, x.var(axis=(0, 2, 3)), rtol=1e-6)
    assert norm.mean.shape == (4,) and norm.rows == 29
    with pytest.raises(ValueError, match="zero training rows"):
        fit_normalizer(StoreView(group), np.array([], dtype=int), "log_mel")


def test_unknown_input_raises(group):
    with pytest.raises(ValueError, match="unknown model input"):
        ZarrSequence(StoreView(group), rows(group, "train"), "chroma")[0]


def test_class_weights_travel_as_sample_weights(group):
    idx = rows(group, "train")
    seq = ZarrSequence(StoreView(group), idx, "log_mel", batch_size=8, class_weights={0: 1.0, 1: 2.0, 2: 0.5})
    x, y, w = seq[0]
    assert w.dtype == np.float32 and w.tolist() == [{0: 1.0, 1: 2.0, 2: 0.5}[int(c)] for c in y]


def test_one_row_per_clip_is_drawn_afresh_each_epoch(group):
    idx = rows(group, "train")  # 29 rows; clips of 3 adjacent rows (the original and two copies)
    clips = np.array([f"c{r // 3}" for r in range(50)])
    seq = ZarrSequence(StoreView(group), idx, "log_mel", batch_size=4, shuffle=True, seed=3, one_per_clip=clips)
    draws = []
    for _ in range(6):
        order = seq.order
        assert len(order) == len(set(clips[idx])) == 10  # one row per clip, every clip
        assert sorted(clips[order].tolist()) == sorted(set(clips[idx].tolist()))
        assert set(order.tolist()) <= set(idx.tolist())  # never a row outside the given ones
        draws.append(tuple(sorted(order.tolist())))
        seq.on_epoch_end()
    assert len(set(draws)) > 1  # a different copy is drawn in some epoch


@pytest.mark.parametrize("mixup_alpha", [0.0, 0.4])
def test_resident_rows_serve_the_same_batches_as_streaming(group, mixup_alpha):
    idx = rows(group, "train")
    clips = np.array([f"c{r // 3}" for r in range(50)])
    kw = dict(batch_size=4, shuffle=True, seed=5, one_per_clip=clips, class_weights={0: 1.0, 1: 2.0, 2: 0.5},
              mixup_alpha=mixup_alpha)
    streamed = ZarrSequence(StoreView(group), idx, "log_mel", **kw)
    resident = ZarrSequence(StoreView(group), idx, "log_mel", memory_limit_mib=1, **kw)
    assert resident.resident and not streamed.resident and not resident.reader.cache
    for _ in range(3):  # several epochs: each draws other copies, in the same order for both
        assert resident.order.tolist() == streamed.order.tolist()
        for i in range(len(streamed)):
            for a, b in zip(resident[i], streamed[i], strict=True):
                np.testing.assert_array_equal(a, b)
        resident.on_epoch_end()
        streamed.on_epoch_end()
    row_bytes = 4 * int(np.prod(input_shape(StoreView(group), "log_mel")))
    too_small = idx.size * row_bytes / 2**20 * 0.99  # one row short of fitting: streams
    assert not ZarrSequence(StoreView(group), idx, "log_mel", memory_limit_mib=too_small).resident


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the in-graph feed is TensorFlow's fast path")
@pytest.mark.parametrize("mixup_alpha", [0.0, 0.4])
def test_resident_tf_dataset_serves_the_sequence_batches_epoch_after_epoch(group, mixup_alpha):
    idx = rows(group, "train")
    clips = np.array([f"c{r // 3}" for r in range(50)])
    seq = ZarrSequence(StoreView(group), idx, "log_mel", batch_size=4, shuffle=True, seed=5, one_per_clip=clips,
                       class_weights={0: 1.0, 1: 2.0, 2: 0.5}, memory_limit_mib=1, mixup_alpha=mixup_alpha)
    batches = list(resident_tf_dataset(seq, 3).as_numpy_iterator())
    assert len(batches) == 3 * len(seq)
    for e in range(3):  # each epoch draws other copies: the dataset must follow, batch for batch
        for i in range(len(seq)):
            for a, b in zip(batches[e * len(seq) + i], seq[i], strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-6)
        seq.on_epoch_end()
    with pytest.raises(ValueError, match="resident"):
        resident_tf_dataset(ZarrSequence(StoreView(group), idx, "log_mel"), 1)


def test_mixup_mixes_each_row_with_a_partner_of_its_epoch(group):
    idx = rows(group, "train")
    kw = dict(batch_size=32, shuffle=True, seed=2, class_weights={0: 1.0, 1: 2.0, 2: 0.5})
    plain = ZarrSequence(StoreView(group), idx, "log_mel", **kw)
    mixed = ZarrSequence(StoreView(group), idx, "log_mel", mixup_alpha=0.4, n_classes=4, **kw)
    for _ in range(2):
        assert mixed.order.tolist() == plain.order.tolist()  # mixup leaves the serving order alone
        partners, lam = mixed._mix
        assert sorted(partners.tolist()) == sorted(mixed.order.tolist()) and np.all((lam >= 0) & (lam <= 1))
        x0, y0, w0 = plain[0]
        x, y, w = mixed[0]
        n = len(y0)
        # row r's features are r (+100 per band): a mixed row is lam * r + (1 - lam) * partner
        np.testing.assert_allclose(x[:, 0, 0, 0], lam[:n] * x0[:, 0, 0, 0] + (1 - lam[:n]) * partners[:n], rtol=1e-6)
        assert y.shape == (n, 4) and y.dtype == np.float32 and np.allclose(y.sum(axis=1), 1)
        np.testing.assert_allclose(y[np.arange(n), y0], np.where(y0 == partners[:n] % 3, 1, lam[:n]), rtol=1e-6)
        table = np.array([1.0, 2.0, 0.5], np.float32)
        np.testing.assert_allclose(w, lam[:n] * w0 + (1 - lam[:n]) * table[partners[:n] % 3], rtol=1e-6)
        mixed.on_epoch_end()
        plain.on_epoch_end()
    assert not np.allclose(mixed._mix[1], ZarrSequence(StoreView(group), idx, "log_mel", mixup_alpha=0.4,
                                                       **{**kw, "seed": 3})._mix[1])
    with pytest.raises(ValueError, match="mixup_alpha"):
        ZarrSequence(StoreView(group), idx, "log_mel", mixup_alpha=-1)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the in-graph feed is TensorFlow's fast path")
def test_fit_on_the_resident_dataset_moves_to_the_next_epoch_order(group):
    # Keras keeps one iterator across epochs only when steps_per_epoch is given; without it the
    # second epoch would replay the first epoch's order.
    idx = rows(group, "train")
    seq = ZarrSequence(StoreView(group), idx, "log_mel", batch_size=4, shuffle=True, seed=1, memory_limit_mib=1)
    seen = []
    inputs = keras.Input(shape=input_shape(StoreView(group), "log_mel"))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs)))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", run_eagerly=True)
    orig_step = model.train_step

    def step(data):
        seen.append(np.asarray(data[0])[:, 0, 0, 0].astype(int))  # row r's features start at r
        return orig_step(data)

    model.train_step = step
    model.fit(resident_tf_dataset(seq, 2), epochs=2, steps_per_epoch=len(seq), shuffle=False, verbose=0)
    np.testing.assert_array_equal(np.concatenate(seen), np.concatenate([seq.order_for(0), seq.order_for(1)]))
    assert not np.array_equal(seq.order_for(0), seq.order_for(1))


def test_frames_are_each_frames_log_mel_mfcc_zcr_and_rms_in_that_order():
    n, t = 2, 5
    arrays = {"log_mel": np.full((n, 3, t), 1.0), "mfcc": np.full((n, 2, t), 2.0), "zcr": np.full((n, t), 3.0),
              "rms": np.arange(n * t, dtype=float).reshape(n, t)}
    x = assemble("frames", arrays)
    assert x.shape == (n, t, 3 + 2 + 2) and x.dtype == np.float32
    assert x[0, 0].tolist() == [1, 1, 1, 2, 2, 3, 0] and x[1, 4, -1] == 9  # rms of row 1, frame 4


def _with_speakers(group, speakers, clips):
    group.create_array("speaker", data=np.array(speakers, dtype=str))
    group.create_array("clip_id", data=np.array(clips, dtype=str))
    return StoreView(group)


def test_speaker_norm_gives_each_speaker_zero_mean_and_unit_sd_over_its_originals(group):
    # rows 2c and 2c + 1 are clip c's original and copy; speakers of 10 rows each, the last one nameless
    n = group["log_mel"].shape[0]
    speakers = [f"corpus:{r // 10}" if r < 40 else "" for r in range(n)]
    view = _with_speakers(group, speakers, [f"c{r // 2}" for r in range(n)])
    norm = SpeakerNorm(view, "log_mel")
    raw = assemble("log_mel", {"log_mel": group["log_mel"][:]}).astype(np.float64)
    out = np.concatenate(list(iter_chunks(view, np.arange(n), "log_mel", norm)))
    for s in range(4):
        originals = [r for r in range(10 * s, 10 * s + 10, 2) if r != 5]
        np.testing.assert_allclose(out[originals].mean(axis=(0, 2, 3)), 0, atol=1e-5)
        np.testing.assert_allclose(out[originals].std(axis=(0, 2, 3)), 1, atol=1e-4)
        # a copy takes its speaker's statistics from the originals, not from itself
        mu, sd = raw[originals].mean(axis=(0, 2, 3)), raw[originals].std(axis=(0, 2, 3))
        np.testing.assert_allclose(out[10 * s + 1, :, :, 0], (raw[10 * s + 1, :, :, 0] - mu[:, None]) / sd[:, None],
                                   rtol=1e-4, atol=1e-4)
    # no speaker: the clip's own original; constant rows divide by sqrt(1e-6), not by 0
    np.testing.assert_allclose(out[40], 0, atol=1e-5)
    np.testing.assert_allclose(out[41], (raw[41] - raw[40]) / 1e-3, rtol=1e-4)


def test_speaker_normalised_rows_reach_the_sequence_and_the_normalizer(group):
    n = group["log_mel"].shape[0]
    view = _with_speakers(group, [f"x:{r % 3}" for r in range(n)], [f"c{r // 2}" for r in range(n)])
    norm = SpeakerNorm(view, "log_mel")
    idx = rows(group, "train")
    expected = np.concatenate(list(iter_chunks(view, idx, "log_mel", norm)))
    for memory in (0, 64):  # streamed and resident
        seq = ZarrSequence(view, idx, "log_mel", batch_size=64, memory_limit_mib=memory, speaker_norm=norm)
        np.testing.assert_array_equal(seq[0][0], expected)
    fitted = fit_normalizer(view, idx, "log_mel", norm)
    assert fitted.speaker_norm and fitted.to_dict()["speaker_norm"] is True
    np.testing.assert_allclose(fitted.mean, expected.astype(np.float64).mean(axis=(0, 2, 3)), rtol=1e-6)
    assert not fit_normalizer(view, idx, "log_mel").speaker_norm


def test_corpus_norm_groups_rows_by_the_corpus_of_their_clip_id_and_ignores_speakers(group):
    # rows 2c and 2c + 1 are clip c's original and copy; corpus a holds rows 0-19, corpus b the rest
    n = group["log_mel"].shape[0]
    clips = [f"{'a' if r < 20 else 'b'}/c{r // 2}" for r in range(n)]
    view = _with_speakers(group, [f"s{r % 7}" for r in range(n)], clips)
    norm = SpeakerNorm(view, "log_mel", by="corpus")
    assert norm.by == "corpus" and norm.mean.shape[0] == 2
    out = np.concatenate(list(iter_chunks(view, np.arange(n), "log_mel", norm)))
    for part in (range(0, 20), range(20, n)):
        originals = [r for r in part if r % 2 == 0 and r != 5]  # row 5 failed
        np.testing.assert_allclose(out[originals].mean(axis=(0, 2, 3)), 0, atol=1e-5)
        np.testing.assert_allclose(out[originals].std(axis=(0, 2, 3)), 1, atol=1e-4)
    assert not np.allclose(out, np.concatenate(list(iter_chunks(view, np.arange(n), "log_mel",
                                                                SpeakerNorm(view, "log_mel")))))
    fitted = fit_normalizer(view, rows(group, "train"), "log_mel", norm)
    assert fitted.corpus_norm and not fitted.speaker_norm and fitted.to_dict()["corpus_norm"] is True
    with pytest.raises(ValueError, match="'speaker' or 'corpus'"):
        SpeakerNorm(view, "log_mel", by="actor")
