"""Audio loading: formats, rates, channels, and clear errors on bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from mlx_audio_stack.audio import as_audio, load_audio, stream_audio
from mlx_audio_stack.errors import AudioError
from mlx_audio_stack.paths import DEMO_CLIP


def test_formats_rates_and_channels(tmp_path):
    x = load_audio(DEMO_CLIP)
    assert x.dtype == np.float32 and x.ndim == 1 and abs(len(x) / 16000 - 10.43) < 0.01
    stereo48 = np.stack([x, x], axis=1)
    import librosa

    up = librosa.resample(x, orig_sr=16000, target_sr=48000)
    sf.write(tmp_path / "s48.wav", np.stack([up, up], axis=1), 48000)
    sf.write(tmp_path / "a.ogg", x, 16000)
    y = load_audio(tmp_path / "s48.wav")
    assert abs(len(y) - len(x)) <= 2
    n = min(len(x), len(y))
    assert np.corrcoef(x[:n], y[:n])[0, 1] > 0.99
    assert len(load_audio(tmp_path / "a.ogg")) == len(x)
    assert as_audio(stereo48, input_sr=16000).shape == x.shape
    blocks = list(stream_audio(DEMO_CLIP, block_s=3.0))
    assert len(blocks) == 4 and sum(map(len, blocks)) == len(x)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    junk = tmp_path / "notes.wav"
    junk.write_text("this is not audio")
    with pytest.raises(AudioError, match="notes.wav: not a readable audio file"):
        load_audio(junk)
    data = DEMO_CLIP.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="cut.flac"):
        load_audio(cut)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.1, np.nan, 0.2] * 100, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or inf"):
        load_audio(nan)
    assert np.isfinite(load_audio(nan, nonfinite="zero")).all()
    with pytest.raises(AudioError, match=r"expected shape"):
        as_audio(np.zeros((2, 2, 2)))
