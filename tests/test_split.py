import pandas as pd
import pytest

from ser_tasks.config import SplitConfig
from ser_tasks.corpus.split import LeakageError, assign_split, check_disjoint, split_table


def corpus(n_speakers=24, clips=10, unknown=0):
    rows = []
    for s in range(1, n_speakers + 1):
        for c in range(clips):
            rows.append({"clip_id": f"r/{s}-{c}", "speaker": f"r:{s:02d}", "sex": "male" if s % 2 else "female"})
    for u in range(unknown):
        rows.append({"clip_id": f"u/{u}", "speaker": None, "sex": None})
    return pd.DataFrame(rows)


def test_no_speaker_on_two_sides_and_fractions_of_speakers():
    clips, notes = assign_split(corpus(), SplitConfig())
    sides = clips.groupby("speaker")["split"].nunique()
    assert (sides == 1).all()
    per = clips.groupby("split")["speaker"].nunique().to_dict()
    assert per == {"train": 17, "val": 2, "test": 5} and notes == []


def test_split_is_seeded_and_stratified_by_sex():
    a, _ = assign_split(corpus(), SplitConfig(seed=3))
    b, _ = assign_split(corpus(), SplitConfig(seed=3))
    c, _ = assign_split(corpus(), SplitConfig(seed=4))
    assert a["split"].tolist() == b["split"].tolist()
    assert a["split"].tolist() != c["split"].tolist()
    for split in ("train", "val", "test"):
        sexes = a[a["split"] == split].drop_duplicates("speaker")["sex"].value_counts()
        assert sexes.max() - sexes.min() <= 1 and len(sexes) == 2, split


def test_four_speakers_give_one_each_to_val_and_test():
    clips, _ = assign_split(corpus(4), SplitConfig())
    assert clips.groupby("split")["speaker"].nunique().to_dict() == {"train": 2, "val": 1, "test": 1}


def test_two_speakers_no_validation_one_speaker_refused():
    clips, _ = assign_split(corpus(2), SplitConfig())
    assert set(clips["split"]) == {"train", "test"}
    with pytest.raises(ValueError, match="at least 2 speakers"):
        assign_split(corpus(1), SplitConfig())


def test_unknown_speakers_are_split_by_clip_and_noted():
    clips, notes = assign_split(corpus(6, unknown=10), SplitConfig())
    assert any("clip-disjoint" in n for n in notes)
    check_disjoint(clips)


@pytest.mark.parametrize("column, value", [("speaker", "r:01"), ("clip_id", "r/1-0")])
def test_check_disjoint_refuses_leaks(column, value):
    clips, _ = assign_split(corpus(6), SplitConfig())
    other = clips[clips[column] == value].iloc[[0]].copy()
    other["split"] = "test" if clips.loc[clips[column] == value, "split"].iloc[0] != "test" else "train"
    if column == "clip_id":
        other["speaker"] = "r:99"
    with pytest.raises(LeakageError, match=column.replace("clip_id", "source clip")):
        check_disjoint(pd.concat([clips, other]))


def test_split_table_lists_every_speaker_once():
    clips, _ = assign_split(corpus(6), SplitConfig())
    table = split_table(clips)
    assert len(table) == 6 and table["clips"].sum() == 60


def test_fixed_speakers_keep_their_side_and_new_ones_are_dealt_by_shortfall():
    clips = pd.DataFrame({"clip_id": [f"c{i}" for i in range(20)],
                          "speaker": [f"s{i // 2}" for i in range(20)], "sex": ["female", "male"] * 10})
    first, _ = assign_split(clips, SplitConfig())
    fixed = dict(zip(first["speaker"], first["split"], strict=True))
    more = pd.concat([clips, pd.DataFrame({"clip_id": [f"n{i}" for i in range(6)],
                                           "speaker": [f"new{i}" for i in range(6)], "sex": "female"})])
    grown, notes = assign_split(more, SplitConfig(), fixed=fixed)
    kept = grown[grown["speaker"].isin(list(fixed))]
    assert dict(zip(kept["speaker"], kept["split"], strict=True)) == fixed
    assert "6 new speaker group(s)" in notes[0]
    per_split = grown.drop_duplicates("speaker")["split"].value_counts().to_dict()
    assert per_split == {"train": 11, "test": 3, "val": 2}  # 16 speakers at 70/10/20


def test_split_is_stratified_by_corpus_in_proportion_to_its_speakers():
    rows = []
    for corpus, n in (("big", 30), ("small", 10)):
        for i in range(n):
            rows.append({"clip_id": f"{corpus}/{i}", "speaker": f"{corpus}:{i}", "corpus": corpus,
                         "sex": "male" if i % 2 else "female"})
    clips, _ = assign_split(pd.DataFrame(rows), SplitConfig())
    speakers = clips.groupby(["split", "corpus"])["speaker"].nunique().to_dict()
    # 20 % test of 40 speakers, each corpus in its share: 6 + 2; training keeps about 70 % of each
    assert speakers[("test", "big")] == 6 and speakers[("test", "small")] == 2
    assert speakers[("val", "big")] + speakers.get(("val", "small"), 0) == 4
    assert 20 <= speakers[("train", "big")] <= 21 and 7 <= speakers[("train", "small")] <= 8
