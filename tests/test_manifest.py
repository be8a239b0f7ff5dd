import io
import os

import fsspec
import pandas as pd
import pytest
import soundfile as sf

from conftest import make_ravdess_like, sine, write_wav
from ser_tasks.manifest import COLUMNS, build_manifest, detect_corpus


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
    assert m.skipped["reason"].str.contains("not an emotion").all()


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
    from ser_tasks.audio import load_audio

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
    from ser_tasks.split import assign_split

    m = build_manifest(str(ravdess_like))
    m.clips, _ = assign_split(m.clips, SplitConfig(seed=0))
    f0 = m.fingerprint()
    m.clips, _ = assign_split(m.clips.drop(columns="split"), SplitConfig(seed=1))
    assert m.fingerprint() != f0
