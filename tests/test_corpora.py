import csv

import pytest

from ser_tasks.corpus.corpora import NAME_PARSERS, PARSERS, ParseError
from ser_tasks.corpus.corpora.crema_d import read_demographics
from ser_tasks.emotions import EMOTIONS


@pytest.mark.parametrize("corpus, path, expected", [
    ("ravdess", "/d/Actor_05/03-01-05-02-01-01-05.flac",
     dict(speaker="05", emotion="angry", sex="male", intensity="strong", sentence="Kids are talking by the door")),
    ("ravdess", "Actor_12/03-01-08-01-02-02-12.wav", dict(speaker="12", emotion="surprised", sex="female")),
    ("ravdess", "03-01-02-01-01-01-01.wav", dict(emotion="calm")),
    ("crema_d", "/x/1001_DFA_ANG_XX.wav",
     dict(speaker="1001", emotion="angry", intensity="unspecified", sentence="Don't forget a jacket")),
    ("crema_d", "1091_WSI_NEU_LO.wav", dict(emotion="neutral", intensity="low")),
    ("tess", "OAF_angry/OAF_back_angry.wav", dict(speaker="OAF", emotion="angry", sex="female")),
    ("tess", "yaf_date_ps.wav", dict(speaker="YAF", emotion="surprised")),
    ("tess", "YAF_pleasant_surprised/YAF_bath_pleasant_surprised.wav", dict(emotion="surprised")),
    ("savee", "DC_sa03.wav", dict(speaker="DC", emotion="sad", sex="male")),
    ("savee", "KL/su15.wav", dict(speaker="KL", emotion="surprised")),
    ("savee", "JE_a01.wav", dict(emotion="angry")),
    ("emodb", "wav/03a01Wa.wav", dict(speaker="03", emotion="angry", sex="male")),
    ("emodb", "16b10Lb.wav", dict(speaker="16", emotion="boredom", sex="female")),
    ("folders", "/k/Surprised/03-01-08-01-01-01-07.wav", dict(speaker="ravdess:07", emotion="surprised")),
    ("folders", "/k/Angry/1001_DFA_ANG_XX.wav", dict(speaker="crema_d:1001", emotion="angry")),
    ("folders", "/k/Happy/random_name.wav", dict(speaker=None, emotion="happy")),
])
def test_names_parse_to_labels(corpus, path, expected):
    info = PARSERS[corpus](path, None)
    for key, value in expected.items():
        assert getattr(info, key) == value, key
    assert info.emotion in EMOTIONS


@pytest.mark.parametrize("corpus, path, reason", [
    ("ravdess", "03-01-09-01-01-01-01.wav", "emotion code '09'"),
    ("ravdess", "03-01-05-01-01-01-25.wav", "actor '25'"),
    ("ravdess", "03-01-05-01-01-01.wav", "7 two-digit fields"),
    ("crema_d", "1001_XXX_ANG_XX.wav", "sentence code 'XXX'"),
    ("crema_d", "1001_DFA_BOR_XX.wav", "emotion code 'BOR'"),
    ("crema_d", "0999_DFA_ANG_XX.wav", "actor '0999'"),
    ("tess", "ZAF_back_angry.wav", "speaker"),
    ("tess", "OAF_back_bored.wav", "emotion 'bored'"),
    ("savee", "XX_a01.wav", "speaker 'XX'"),
    ("savee", "DC_q01.wav", "code 'q01'"),
    ("emodb", "03a01Xa.wav", "emotion letter 'X'"),
    ("emodb", "01a01Wa.wav", "speaker '01'"),
    ("folders", "/k/Misc/03-01-08-01-01-01-07.wav", "not an emotion"),
])
def test_bad_names_raise_with_reason(corpus, path, reason):
    with pytest.raises(ParseError, match=reason):
        PARSERS[corpus](path, None)


def test_name_parsers_do_not_claim_each_others_names():
    samples = {"ravdess": "03-01-05-02-01-01-05.wav", "crema_d": "1001_DFA_ANG_XX.wav", "emodb": "03a01Fa.wav",
               "savee": "DC_a01.wav", "tess": "OAF_back_angry.wav"}
    for owner, name in samples.items():
        accepted = []
        for corpus, parser in NAME_PARSERS.items():
            try:
                parser(name, None)
                accepted.append(corpus)
            except ParseError:
                pass
        assert accepted == [owner]


def test_every_real_crema_d_name_parses_with_sex(shared_data):
    meta_dir = shared_data / "crema-d-meta"
    sex = read_demographics(str(meta_dir / "VideoDemographics.csv"))
    assert len(sex) == 91 and set(sex.values()) == {"male", "female"}
    with open(meta_dir / "summaryTable.csv", newline="") as fh:
        names = [row["FileName"] for row in csv.DictReader(fh)]
    assert len(names) == 7442
    infos = [PARSERS["crema_d"](f"{n}.wav", {"sex": sex}) for n in names]
    assert {i.speaker for i in infos} == set(sex)
    assert all(i.sex in ("male", "female") for i in infos)
    assert {i.emotion for i in infos} == {"angry", "disgust", "fearful", "happy", "neutral", "sad"}
    males = {i.speaker for i in infos if i.sex == "male"}
    assert len(males) == 48  # REFERENCE.md: 48 male, 43 female actors


def test_demographics_without_columns_names_the_file(tmp_path):
    bad = tmp_path / "demo.csv"
    bad.write_text("Actor,Gender\n1001,Male\n")
    with pytest.raises(ValueError, match="demo.csv"):
        read_demographics(str(bad))
