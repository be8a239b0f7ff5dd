"""Folds of the three protocols: who is held out, what is trained on, and what never leaks."""

import numpy as np
import pytest

from ser_tasks.learn.folds import PROTOCOLS, make_folds, natural_key, speaker_blocks, summarize


def rows(actors=24, clips_per_actor=6, variants=2):
    """RAVDESS-like store rows: ``actors`` speakers, each clip followed by its augmented copies."""
    spk, clip, var = [], [], []
    for a in range(1, actors + 1):
        for c in range(clips_per_actor):
            for v in range(1 + variants):
                spk.append(f"ravdess:{a:02d}"), clip.append(f"a{a}-c{c}"), var.append(v)
    n = len(spk)
    return np.array(spk), np.array(clip), np.array(var), np.ones(n, dtype=bool)


def test_natural_order_puts_2_before_10():
    assert sorted(["s10", "s2", "s1"], key=natural_key) == ["s1", "s2", "s10"]


def test_cv_actor_on_ravdess_is_six_folds_of_four_consecutive_actors():
    spk, clip, var, ok = rows()
    folds = make_folds("cv-actor", spk, clip, var, ok, n_folds=6)
    assert [f.test_speakers for f in folds][:2] == [tuple(f"ravdess:{a:02d}" for a in range(1, 5)),
                                                     tuple(f"ravdess:{a:02d}" for a in range(5, 9))]
    seen = np.concatenate([f.test for f in folds])
    assert sorted(seen.tolist()) == np.flatnonzero(var == 0).tolist()  # every original tested exactly once
    for f in folds:
        assert not set(spk[f.train]) & set(spk[f.test])
        assert (var[f.test] == 0).all()
        # training takes every row, copies included, of the other 20 actors
        assert f.train.size == 20 * 6 * 3 and set(spk[f.train]) == set(spk) - set(f.test_speakers)


def test_clip_split_keeps_copies_with_their_clip_but_mixes_speakers():
    spk, clip, var, ok = rows()
    folds = make_folds("clip-split", spk, clip, var, ok, n_folds=6, seed=1)
    for f in folds:
        assert not set(clip[f.train]) & set(clip[f.test]) and (var[f.test] == 0).all()
        assert set(spk[f.train]) & set(spk[f.test])  # the leak this protocol exists to show
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == np.flatnonzero(var == 0).tolist()


def test_row_split_partitions_rows_so_copies_of_test_clips_are_trained_on():
    spk, clip, var, ok = rows()
    folds = make_folds("row-split", spk, clip, var, ok, n_folds=6, seed=1)
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(len(spk)))
    f = folds[0]
    assert not set(f.train) & set(f.test) and f.train.size + f.test.size == len(spk)
    assert set(clip[f.train]) & set(clip[f.test])  # the notebooks' leak


def test_failed_rows_are_neither_trained_nor_tested():
    spk, clip, var, ok = rows(actors=6)
    ok[[0, 4, 10]] = False
    for protocol in PROTOCOLS:
        for f in make_folds(protocol, spk, clip, var, ok, n_folds=3):
            assert ok[f.train].all() and ok[f.test].all()


def test_protocol_errors_are_explicit():
    spk, clip, var, ok = rows(actors=4)
    with pytest.raises(ValueError, match="4 known speakers cannot fill 6"):
        make_folds("cv-actor", spk, clip, var, ok, n_folds=6)
    with pytest.raises(ValueError, match="unknown protocol"):
        make_folds("leave-one-out", spk, clip, var, ok)
    spk[0] = ""
    with pytest.raises(ValueError, match="no known speaker"):
        make_folds("cv-actor", spk, clip, var, ok, n_folds=2)
    with pytest.raises(ValueError, match="at least 2 folds"):
        speaker_blocks(["a", "b"], 1)


def test_summary_is_mean_and_sample_sd_over_folds():
    s = summarize([{"ua": 0.5, "wa": 0.6, "macro_f1": 0.4}, {"ua": 0.7, "wa": 0.6, "macro_f1": 0.6}])
    assert s["folds"] == 2 and s["ua_mean"] == pytest.approx(0.6) and s["ua_std"] == pytest.approx(np.sqrt(0.02))
    assert s["wa_std"] == 0.0
    assert summarize([{"ua": 0.5, "wa": 0.5, "macro_f1": 0.5}])["ua_std"] == 0.0
    with pytest.raises(ValueError):
        summarize([])


def test_the_emobox_partition_holds_out_its_published_actors():
    from ser_tasks.learn.folds import EMOBOX_RAVDESS, load_partition

    spk, clip, var, ok = rows()
    folds = make_folds("cv-actor", spk, clip, var, ok, partition=load_partition("emobox"))
    assert [f.test_speakers for f in folds] == [tuple(f"ravdess:{a}" for a in EMOBOX_RAVDESS[k]) for k in range(1, 7)]
    assert folds[0].test_speakers == ("ravdess:01", "ravdess:11", "ravdess:20", "ravdess:21")
    seen = np.concatenate([f.test for f in folds])
    assert sorted(seen.tolist()) == np.flatnonzero(var == 0).tolist()
    for f in folds:
        assert not set(spk[f.train]) & set(spk[f.test])
    with pytest.raises(ValueError, match="unknown partition 'iemocap'"):
        load_partition("iemocap")
    assert load_partition("6") is None and load_partition(4) is None


def test_a_folds_file_names_speakers_with_or_without_their_corpus(tmp_path):
    from ser_tasks.learn.folds import load_partition

    spk, clip, var, ok = rows(actors=6)
    path = tmp_path / "folds.csv"
    path.write_text("fold,speaker\n1,01\n1,ravdess:04\n2,02\n2,05\n3,03\n")  # actor 06 trains in every fold
    folds = make_folds("cv-actor", spk, clip, var, ok, partition=load_partition(6, str(path)))
    assert [f.test_speakers for f in folds] == [("ravdess:01", "ravdess:04"), ("ravdess:02", "ravdess:05"),
                                                 ("ravdess:03",)]
    assert all("ravdess:06" in set(spk[f.train]) for f in folds)
    path.write_text("fold,speaker\n1,01\n2,99\n")
    with pytest.raises(ValueError, match=r"speaker\(s\) \['99'\] are not in the store"):
        make_folds("cv-actor", spk, clip, var, ok, partition=load_partition(6, str(path)))
    path.write_text("fold,actor\n1,01\n")
    with pytest.raises(ValueError, match="needs columns fold and speaker"):
        load_partition(6, str(path))
    path.write_text("fold,speaker\n1,01\n2,01\n")
    with pytest.raises(ValueError, match="in two folds"):
        load_partition(6, str(path))


def test_cross_corpus_leaves_each_corpus_out_and_scores_the_shared_classes():
    from ser_tasks.store.zarr_store import row_corpus

    spk = np.array(["ravdess:01"] * 4 + ["ravdess:02"] * 4 + ["crema_d:1001"] * 4 + [""] * 2)
    clip = np.array([f"ravdess/r{i}" for i in range(8)] + [f"crema_d/c{i}" for i in range(4)]
                    + ["emodb/e0", "emodb/e1"])
    var = np.zeros(spk.size, dtype=int)
    emotion = np.array([0, 1, 2, 7] * 2 + [0, 1, 2, 3] + [0, 8])  # calm(1)/surprised(7) only in RAVDESS
    assert row_corpus(spk, clip).tolist() == ["ravdess"] * 8 + ["crema_d"] * 4 + ["emodb"] * 2
    folds = make_folds("cross-corpus", spk, clip, var, np.ones(spk.size, bool), emotion=emotion)
    assert [f.held_out for f in folds] == ["crema_d", "emodb", "ravdess"]
    crema, emodb, rav = folds
    # trained on the held-out corpus's classes only: RAVDESS's surprised (7) and EmoDB's 8 stay out
    assert clip[crema.train].tolist() == ["ravdess/r0", "ravdess/r1", "ravdess/r2", "ravdess/r4", "ravdess/r5",
                                          "ravdess/r6", "emodb/e0"]
    assert emotion[crema.test].tolist() == [0, 1, 2]  # class 3 is not in the training corpora
    assert sorted(emotion[rav.train].tolist()) == [0, 0, 1, 2]  # CREMA-D's 3 is not RAVDESS's
    assert emotion[emodb.test].tolist() == [0]
    assert sorted(emotion[rav.test].tolist()) == [0, 0, 1, 1, 2, 2]  # 7 is RAVDESS's alone
    with pytest.raises(ValueError, match="at least 2 corpora"):
        make_folds("cross-corpus", spk[:8], clip[:8], var[:8], np.ones(8, bool), emotion=emotion[:8])
