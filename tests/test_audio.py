import io

import numpy as np
import pytest
import soundfile as sf

from conftest import dominant_freq, sine, write_wav
from ser_tasks.config import AudioConfig
from ser_tasks.signal.audio import (
    AudioError,
    decode_audio,
    fix_length,
    load_audio,
    read_flac16,
    resample,
    speech,
    speech_bounds,
    trim_silence,
)


def test_stereo_is_mixed_down_and_resampled_keeping_frequency(tmp_path):
    left, right = sine(440, sr=48_000), sine(440, sr=48_000, amp=0.1)
    path = tmp_path / "st.flac"
    sf.write(path, np.stack([left, right], axis=1), 48_000)
    y = load_audio(str(path), 16_000)
    assert y.dtype == np.float32 and y.shape == (16_000,)
    assert abs(dominant_freq(y) - 440) < 1.0
    assert abs(np.abs(y).max() - 0.3) < 0.02  # mean of 0.5 and 0.1


def test_unreadable_and_empty_files_raise_naming_the_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(AudioError, match="broken.wav"):
        load_audio(str(bad), 16_000)
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32))
    with pytest.raises(AudioError, match="empty.wav"):
        load_audio(str(empty), 16_000)
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError) as err:
        load_audio(str(missing), 16_000)
    assert str(err.value) == f"{missing}: cannot read (No such file or directory)"


def test_a_local_file_decodes_by_path_as_through_fsspec(tmp_path):
    """Local files go to libsndfile by path (no Python read callback); the samples must not change."""
    path = write_wav(tmp_path / "a.flac", sine(440, 0.5, sr=48_000), sr=48_000)
    by_path = load_audio(str(path), 16_000)
    assert np.array_equal(load_audio(path.as_uri(), 16_000), by_path)
    assert np.array_equal(load_audio(f"simplecache::{path.as_uri()}", 16_000), by_path)  # an fsspec chain


def test_trim_removes_leading_and_trailing_silence():
    tone = sine(300, 0.5)
    y = np.concatenate([np.zeros(8000, np.float32), tone, np.zeros(16000, np.float32)])
    out = trim_silence(y, 30)
    assert abs(len(out) - len(tone)) < 1024
    assert trim_silence(y, None) is y
    silent = np.zeros(4000, np.float32)
    assert trim_silence(silent, 30) is silent


def test_fix_length_pads_and_crops_around_the_centre():
    y = np.arange(1, 11, dtype=np.float32)
    padded = fix_length(y, 14)
    assert padded.tolist() == [0, 0] + list(range(1, 11)) + [0, 0]
    assert fix_length(y, 4).tolist() == [4, 5, 6, 7]
    assert fix_length(y, 10).tolist() == y.tolist()


def test_decoding_errors_name_the_file_and_the_reason_not_the_file_object(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(AudioError) as err:
        load_audio(str(bad), 16_000)
    assert str(err.value) == f"{bad}: cannot decode audio (Error in WAV/W64/RF64 file. Malformed 'fmt ' chunk)"
    with pytest.raises(AudioError, match=r"^row 3: cannot decode audio"):
        decode_audio(b"garbage", 16_000, "row 3")


def test_bytes_decode_as_the_file_does(tmp_path):
    path = write_wav(tmp_path / "a.wav", sine(440, 0.5, sr=22_050), sr=22_050)
    assert np.array_equal(decode_audio(path.read_bytes(), 16_000), load_audio(str(path), 16_000))


def test_silent_and_too_short_clips_are_refused_with_the_measured_value():
    cfg = AudioConfig()
    with pytest.raises(AudioError, match=r"^z.wav: silent \(peak -inf dBFS, below the -60 dBFS floor\)"):
        speech(np.zeros(16_000, np.float32), cfg, "z.wav")
    with pytest.raises(AudioError, match="q.wav: silent .peak -66.0 dBFS"):
        speech(sine(300, 1.0, amp=10 ** (-66 / 20)), cfg, "q.wav")
    click = np.concatenate([np.zeros(8000, np.float32), sine(300, 0.01), np.zeros(8000, np.float32)])
    with pytest.raises(AudioError, match=r"c.wav: 0\.0\d\d s of sound, under the 0.25 s minimum"):
        speech(click, cfg, "c.wav")
    tone = np.concatenate([np.zeros(8000, np.float32), sine(300, 0.5), np.zeros(8000, np.float32)])
    start, stop = speech_bounds(tone, cfg, "t.wav")
    assert abs(start - 8000) < 512 and abs(stop - 16000) < 512
    assert np.array_equal(speech(tone, cfg, "t.wav"), tone[start:stop])
    # what is allowed is configurable
    assert speech(click, cfg.model_copy(update={"min_speech_seconds": 0.0}), "c.wav").size > 0


@pytest.mark.parametrize(("orig_sr", "n"), [(48000, 158_413), (44100, 70_001), (22050, 33_333), (8000, 12_345),
                                            (16000 / 2 ** (1 / 12), 40_000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resample_is_bit_identical_to_librosas_soxr_hq(orig_sr, n, dtype):
    """Decoding resamples through soxr directly; stored features must not change."""
    import librosa

    y = (0.3 * np.random.default_rng(n).standard_normal(n)).astype(dtype)
    ours = resample(y, orig_sr, 16000)
    ref = librosa.resample(y, orig_sr=orig_sr, target_sr=16000, res_type="soxr_hq")
    assert ours.dtype == ref.dtype == dtype
    np.testing.assert_array_equal(ours, ref)


def test_a_mono_file_decodes_to_its_one_channel(tmp_path):
    y = (0.5 * np.sin(np.arange(8000) * 0.05)).astype(np.float32)
    sf.write(tmp_path / "m.wav", y, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(str(tmp_path / "m.wav"), 16000), y)


@pytest.mark.parametrize(("channels", "n"), [(1, 48_001), (2, 30_000), (3, 4_097)])
def test_16_bit_flac_decodes_through_dr_flac_to_soundfiles_values(tmp_path, channels, n):
    """read_flac16 (miniaudio) must give libsndfile's float32 read exactly: full scale both ways,
    odd lengths, several channels; by path and from memory; load_audio's result unchanged."""
    rng = np.random.default_rng(n)
    pcm = rng.integers(-32768, 32768, size=(n, channels), dtype=np.int16)
    pcm[:4] = [[-32768], [32767], [0], [-1]]
    path = tmp_path / "x.flac"
    sf.write(path, pcm, 48_000, subtype="PCM_16")
    ref, rate = sf.read(path, dtype="float32", always_2d=True)
    for src in (str(path), io.BytesIO(path.read_bytes())):
        ours, ours_rate = read_flac16(src)
        assert ours_rate == rate == 48_000 and ours.dtype == np.float32
        np.testing.assert_array_equal(ours, ref)
    mono = ref.mean(axis=1)
    np.testing.assert_array_equal(load_audio(str(path), 48_000), mono)
    np.testing.assert_array_equal(decode_audio(path.read_bytes(), 16_000), resample(mono, 48_000, 16_000))


def test_flac_that_dr_flac_should_not_decode_goes_to_soundfile(tmp_path):
    """24-bit FLAC, other formats and a truncated stream are left to libsndfile (None), whose read
    then gives the values, or the error naming the file, that it gave before."""
    y = sine(440, 0.5, sr=48_000)
    deep = tmp_path / "deep.flac"
    sf.write(deep, y, 48_000, subtype="PCM_24")
    assert read_flac16(str(deep)) is None
    np.testing.assert_array_equal(load_audio(str(deep), 48_000), sf.read(deep, dtype="float32")[0])
    assert read_flac16(str(write_wav(tmp_path / "a.wav", y, sr=48_000))) is None
    whole = tmp_path / "whole.flac"
    sf.write(whole, (y * 20000).astype(np.int16), 48_000, subtype="PCM_16")
    cut = tmp_path / "cut.flac"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert read_flac16(str(cut)) is None  # fewer frames than its header says
    try:
        expected = sf.read(cut, dtype="float32", always_2d=True)[0].mean(axis=1)
    except sf.LibsndfileError:
        with pytest.raises(AudioError, match="cut.flac: cannot decode audio"):
            load_audio(str(cut), 48_000)
    else:
        np.testing.assert_array_equal(load_audio(str(cut), 48_000), expected)
