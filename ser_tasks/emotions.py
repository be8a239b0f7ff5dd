"""The one emotion vocabulary, and each corpus's mapping onto it.

Canonical labels follow the names RAVDESS uses (the corpus with the most classes here), plus
``boredom`` for EmoDB. Index order is fixed, so a label index means the same thing in every store;
a store's own vocabulary is the subset of labels its manifest contains, in this order.
"""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
    "boredom",
)

#: RAVDESS emotion field (Livingstone & Russo 2018): 8 classes.
RAVDESS: dict[str, str] = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}
#: CREMA-D emotion code (Cao et al. 2014): 6 classes.
CREMA_D: dict[str, str] = {
    "ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad",
}
#: TESS last name field; ``ps`` is "pleasant surprise".
TESS: dict[str, str] = {
    "angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
    "neutral": "neutral", "sad": "sad", "ps": "surprised", "pleasant_surprise": "surprised",
    "pleasant_surprised": "surprised", "surprise": "surprised", "surprised": "surprised",
}
#: SAVEE emotion prefix of the sentence code (Haq & Jackson 2009).
SAVEE: dict[str, str] = {
    "a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprised",
}
#: EmoDB emotion letter (German initials: Wut/Ärger, Langeweile, Ekel, Angst, Freude, Trauer, Neutral).
EMODB: dict[str, str] = {
    "W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral",
}
#: Folder names of folder-per-emotion layouts (lower-cased), e.g. the combined Kaggle set.
FOLDER_NAMES: dict[str, str] = {
    "neutral": "neutral", "calm": "calm",
    "happy": "happy", "happiness": "happy", "joy": "happy",
    "sad": "sad", "sadness": "sad",
    "angry": "angry", "anger": "angry",
    "fear": "fearful", "fearful": "fearful",
    "disgust": "disgust", "disgusted": "disgust",
    "surprise": "surprised", "surprised": "surprised", "ps": "surprised",
    "boredom": "boredom", "bored": "boredom",
}


def vocabulary(labels: list[str] | set[str]) -> list[str]:
    """The labels present, in canonical order (a store's class list; index = class id)."""
    present = set(labels)
    return [e for e in EMOTIONS if e in present]
