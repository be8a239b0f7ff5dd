import io
import os
from pathlib import Path

import fsspec
import pandas as pd
import pytest
import soundfile as sf

from conftest import make_ravdess_like, sine, write_wav
from ser_tasks.corpus.manifest import COLUMNS, build_manifest, detect_corpus


def test_ravdess_tree_with_bad_names_lists_skips_with_reasons(tmp_path):
    root = make_ravdess_like(tmp_path / "c", actors=(1, 2), takes=2)
    write_wav(root / "Actor_01" / "03-01-09-01-01-01-01.wav", sine(200))  # emotion 09 does not exist
    write_wav(root / "Actor_01" / "notes.wav", sine(200))
    (root / "Actor_01" / "readme.txt").write_text("not audio")
    m = build_manifest(str(root))
    assert m.corpus == "ravdess"
    assert len(m.clips) == 8 and list(m.clips.columns) == COLUMNS
    assert set(m.clips["speaker"]) == {"ravdess:01", "ravdess:02"}
    assert set(m.clips["sex"]) == {"male", "female"}
    reasons = dict(zip(m.skipped["path"].map(os.path.basename), m.skipped["reason"]))
    assert set(reasons) == {"03-01-09-01-01-01-01.wav", "notes.wav"}
    assert "emotion code '09'" in reasons["03-01-09-01-01-01-01.wav"]
    assert m.summary()["per_emotion"] == {"angry": 4, "neutral": 4}


def test_same_clip_in_two_formats_is_skipped_as_duplicate(tmp_path):
    root = tmp_path / "c"
    write_wav(root / "03-01-05-01-01-01-01.wav", sine(200))
    sf.write(root / "03-01-05-01-01-01-01.flac", sine(200), 16000)
    write_wav(root / "03-01-05-01-01-01-02.wav", sine(200))
    m = build_manifest(str(root))
    assert len(m.clips) == 2
    assert m.skipped["reason"].str.contains("duplicate").all() and len(m.skipped) == 1


def test_folder_layout_is_detected_and_recovers_speakers(tmp_path):
    root = tmp_path / "kaggle"
    write_wav(root / "Angry" / "03-01-05-01-01-01-07.wav", sine(300))
    write_wav(root / "Angry" / "1001_DFA_ANG_XX.wav", sine(300))
    write_wav(root / "Surprised" / "OAF_back_ps.wav", sine(300))
    write_wav(root / "Happy" / "mystery.wav", sine(300))
    write_wav(root / "Other" / "x.wav", sine(300))
    m = build_manifest(str(root))
    assert m.corpus == "folders"
    by_name = {os.path.basename(p): r for p, r in zip(m.clips["path"], m.clips.to_dict("records"))}
    assert by_name["03-01-05-01-01-01-07.wav"]["speaker"] == "ravdess:07"
    assert by_name["03-01-05-01-01-01-07.wav"]["corpus"] == "ravdess"
    assert by_name["1001_DFA_ANG_XX.wav"]["speaker"] == "crema_d:1001"
    assert by_name["OAF_back_ps.wav"]["emotion"] == "surprised"
    assert pd.isna(by_name["mystery.wav"]["speaker"]) and by_name["mystery.wav"]["emotion"] == "happy"
    # a subfolder is read on its own: "Other" follows no scheme, and says how to name it
    assert m.skipped["reason"].str.contains("no known corpus naming scheme among the 1 files of").all()


def test_forced_corpus_skips_what_does_not_parse(ravdess_like):
    with pytest.raises(ValueError, match="none of 48 audio files parses as tess"):
        build_manifest(str(ravdess_like), corpus="tess")
    with pytest.raises(ValueError, match="unknown corpus"):
        build_manifest(str(ravdess_like), corpus="iemocap")


def test_unrecognisable_root_and_missing_root(tmp_path):
    write_wav(tmp_path / "a" / "hello.wav", sine(200))
    with pytest.raises(ValueError, match="--corpus"):
        build_manifest(str(tmp_path / "a"))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        build_manifest(str(tmp_path / "missing"))


def test_symlinked_actor_folders_are_followed(tmp_path):
    real = make_ravdess_like(tmp_path / "real", actors=(1, 2), takes=1)
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(real / "Actor_01", linked / "Actor_01")
    m = build_manifest(str(linked))
    assert len(m.clips) == 2 and set(m.clips["speaker"]) == {"ravdess:01"}


def test_fsspec_url_root_reads_through_fsspec():
    fs = fsspec.filesystem("memory")
    for name in ("03-01-05-01-01-01-01.wav", "03-01-01-01-01-01-02.wav"):
        buf = io.BytesIO()
        sf.write(buf, sine(220), 16000, format="WAV")
        fs.pipe(f"/corpus/Actor_x/{name}", buf.getvalue())
    m = build_manifest("memory://corpus")
    assert len(m.clips) == 2 and m.clips["path"].str.startswith("memory://").all()
    from ser_tasks.signal.audio import load_audio

    assert load_audio(m.clips["path"][0], 16000).shape == (16000,)


def test_crema_demographics_found_in_root(tmp_path):
    write_wav(tmp_path / "AudioWAV" / "1002_DFA_ANG_XX.wav", sine(200))
    (tmp_path / "VideoDemographics.csv").write_text('ActorID,Age,Sex\n1002,21,"Female"\n')
    m = build_manifest(str(tmp_path))
    assert m.corpus == "crema_d" and m.clips["sex"].tolist() == ["female"]


def test_detect_prefers_majority():
    paths = ["a/03-01-05-01-01-01-01.wav", "b/03-01-05-01-01-01-02.wav", "c/DC_a01.wav"]
    assert detect_corpus(paths) == "ravdess"


def test_fingerprint_changes_with_split(ravdess_like):
    from ser_tasks.config import SplitConfig
    from ser_tasks.corpus.split import assign_split

    m = build_manifest(str(ravdess_like))
    m.clips, _ = assign_split(m.clips, SplitConfig(seed=0))
    f0 = m.fingerprint()
    m.clips, _ = assign_split(m.clips.drop(columns="split"), SplitConfig(seed=1))
    assert m.fingerprint() != f0


def _emodb_like(root, speakers=("03", "08", "09", "10"), letters="WTN"):
    for spk in speakers:
        for i, letter in enumerate(letters):
            write_wav(root / f"{spk}a0{i}{letter}a.wav", sine(220 + 20 * i))
    return root


def test_a_root_of_several_corpora_reads_each_subfolder_on_its_own(tmp_path):
    make_ravdess_like(tmp_path / "data" / "ravdess", actors=(1, 2, 3, 4), takes=2)
    _emodb_like(tmp_path / "data" / "emodb")
    write_wav(tmp_path / "data" / "misc" / "take1.wav", sine(200))
    m = build_manifest(str(tmp_path / "data"))
    assert m.corpus == "emodb+ravdess"
    assert m.clips.groupby("corpus")["clip_id"].size().to_dict() == {"emodb": 12, "ravdess": 16}
    assert set(m.clips.loc[m.clips["corpus"] == "emodb", "speaker"]) == {"emodb:03", "emodb:08", "emodb:09", "emodb:10"}
    assert m.clips["clip_id"].str.split("/").str[0].tolist() == m.clips["corpus"].tolist()
    # the union of the classes; a subfolder that follows no scheme is skipped with the reason
    assert set(m.clips["emotion"]) == {"neutral", "angry", "sad"}
    assert len(m.skipped) == 1 and "name it with --corpus NAME=" in m.skipped["reason"].iloc[0]
    assert any(n.startswith("corpora: emodb 12 clips, ravdess 16 clips") for n in m.notes)


def test_several_roots_named_or_detected_make_one_manifest(tmp_path):
    rav = make_ravdess_like(tmp_path / "r", actors=(1, 2), takes=2)
    emo = _emodb_like(tmp_path / "e")
    m = build_manifest([str(rav), f"emodb={emo}"])
    assert m.corpus == "emodb+ravdess" and len(m.clips) == 8 + 12
    assert m.root == f"{rav} emodb={emo}"
    with pytest.raises(ValueError, match="unknown corpus 'iemocap'"):
        build_manifest([f"iemocap={emo}"])


def test_kept_emotions_skip_the_others_with_the_reason(tmp_path):
    from ser_tasks.config import ManifestConfig

    rav = make_ravdess_like(tmp_path / "r", actors=(1, 2), emotions=("01", "04", "05"), takes=2)
    m = build_manifest(str(rav), config=ManifestConfig(emotions=["angry", "neutral"]))
    assert set(m.clips["emotion"]) == {"neutral", "angry"} and len(m.clips) == 8
    assert (m.skipped["reason"] == "emotion 'sad' is not among the kept emotions (neutral,angry)").all()
    assert len(m.skipped) == 4
    with pytest.raises(ValueError, match="unknown emotion"):
        ManifestConfig(emotions=["joy"])


def test_speaker_pattern_names_the_speakers_of_a_folder_layout(tmp_path):
    from ser_tasks.config import ManifestConfig
    from ser_tasks.corpus.split import assign_split

    root = tmp_path / "kaggle"
    for spk in ("SM1", "SM2", "SF3", "SF4"):
        for emotion in ("Angry", "Sad"):
            for take in (1, 2):
                write_wav(root / emotion / f"{spk}_F1_A0{take}.wav", sine(300))
    write_wav(root / "Angry" / "odd-name.wav", sine(300))
    m = build_manifest(str(root), config=ManifestConfig(speaker_pattern=r"^([A-Z]+\d+)_"))
    by_name = dict(zip(m.clips["path"].map(os.path.basename) + m.clips["emotion"], m.clips["speaker"]))
    assert by_name["SM1_F1_A01.wavangry"] == "folders:SM1" and by_name["SF4_F1_A02.wavsad"] == "folders:SF4"
    assert pd.isna(by_name["odd-name.wavangry"])
    assert any("1 file name(s) without a speaker do not match --speaker-pattern" in n for n in m.notes)
    clips, _ = assign_split(m.clips, __import__("ser_tasks.config").config.SplitConfig())
    named = clips.dropna(subset=["speaker"])
    assert named.groupby("speaker")["split"].nunique().max() == 1  # split by speaker, not by clip
    # whole match when the pattern has no group
    whole = build_manifest(str(root), config=ManifestConfig(speaker_pattern=r"^S[MF]\d"))
    assert "folders:SM1" in set(whole.clips["speaker"])


def test_a_new_corpus_is_one_recipe_and_the_manifest_builder_reads_it_without_knowing_it(tmp_path, monkeypatch):
    """A recipe brings its parser and its metadata (here a sex table found beside the clips): detection,
    named roots, speakers and notes follow from the registry entry alone."""
    from ser_tasks.corpus import corpora
    from ser_tasks.corpus.corpora.base import ClipInfo, ParseError, Recipe, stem

    def parse(path, meta=None):
        name = stem(path)
        if not name.startswith("toy-"):
            raise ParseError(f"not a toy name: {name}")
        _, speaker, emotion = name.split("-")
        return ClipInfo(key=name, speaker=speaker, emotion=emotion, sex=(meta or {}).get("sex", {}).get(speaker))

    def metadata(folders, storage_options=None, given=None):
        found = [f for f in folders if (Path(f) / "sexes.txt").exists()]
        if not found:
            return {}, None
        pairs = (line.split() for line in (Path(found[0]) / "sexes.txt").read_text().splitlines())
        return {"sex": dict(pairs)}, f"toy sex from {found[0]}"

    monkeypatch.setitem(corpora.RECIPES, "toy", Recipe("toy", parse, metadata=metadata))
    root = tmp_path / "mix"
    for speaker, emotion in (("s1", "angry"), ("s1", "sad"), ("s2", "angry")):
        write_wav(root / "toys" / f"toy-{speaker}-{emotion}.wav", sine(220, 0.5))
    (root / "toys" / "sexes.txt").write_text("s1 female\ns2 male\n")
    make_ravdess_like(root / "ravdess", actors=(1, 2), emotions=("01",), takes=1)
    m = build_manifest(str(root))
    toys = m.clips[m.clips["corpus"] == "toy"].sort_values("clip_id")
    assert list(toys["speaker"]) == ["toy:s1", "toy:s1", "toy:s2"] and list(toys["sex"]) == ["female", "female", "male"]
    assert set(m.clips["corpus"]) == {"toy", "ravdess"} and f"toy sex from {root / 'toys'}" in m.notes
    named = build_manifest(f"toy={root / 'toys'}")
    assert len(named.clips) == 3 and named.corpus == "toy"
