"""`python -m kdjax.vggcaps analyse` on caption sets laid out as AudioCaps, Clotho and WavCaps releases
(made here, with audio of known length) and on the embedded set."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from kdjax.errors import InputError
from kdjax.vggcaps import analysis
from tests import runs


def _clotho(root):
    for name, clips in (("development", {"a.wav": 3.0, "b.wav": 5.0}), ("validation", {"c.wav": 4.0}),
                        ("evaluation", {})):
        os.makedirs(root / name, exist_ok=True)
        lines = ["file_name,caption_1,caption_2,caption_3,caption_4,caption_5"]
        for f, seconds in clips.items():
            soundfile.write(root / name / f, np.zeros(int(seconds * 16000), np.float32), 16000)
            lines.append(f"{f}," + ",".join(f"a dog barks {'loudly ' * k}outside" for k in range(5)))
        (root / f"clotho_captions_{name}.csv").write_text("\n".join(lines) + "\n")


def _audiocaps(root):
    os.makedirs(root, exist_ok=True)
    for name, rows in (("train", [("1", "yt1", "30", "Rain falls on a roof."), ("2", "yt1", "30", "Heavy rain"),
                                  ("3", "yt2", "0", "A man speaks while a car passes by")]),
                       ("val", []), ("test", [])):
        text = "audiocap_id,youtube_id,start_time,caption\n" + "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows)
        (root / f"{name}.csv").write_text(text)


def _wavcaps(root):
    os.makedirs(root / "json_files" / "FreeSound", exist_ok=True)
    data = {"num_captions_per_audio": 1, "data": [
        {"id": "fs1", "caption": "Birds chirp in a forest.", "duration": 12.0},
        {"id": "fs2", "caption": "An engine idles and then revs up.", "duration": 30.0}]}
    (root / "json_files" / "FreeSound" / "fsd_final.json").write_text(json.dumps(data))


def test_analyse_three_layouts(tmp_path):
    _clotho(tmp_path / "clotho")
    _audiocaps(tmp_path / "audiocaps")
    _wavcaps(tmp_path / "wavcaps")
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "kdjax.vggcaps", "analyse", f"--data=clotho:{tmp_path / 'clotho'}",
                        f"--data=AC=audiocaps:{tmp_path / 'audiocaps'}", f"--data=wavcaps:{tmp_path / 'wavcaps'}",
                        "--data=embedded", f"--out={out}"], env=runs.env(1), cwd=runs.REPO, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.load(open(out / "analysis.json"))
    assert list(res) == ["clotho", "AC", "wavcaps", "embedded"]
    clotho, ac, wav = res["clotho"]["statistics"], res["AC"]["statistics"], res["wavcaps"]["statistics"]
    # Clotho: 3 clips of 3, 5 and 4 s, 5 captions each of 4..8 words
    assert (clotho["rows"], clotho["audio_clips"], clotho["captions"]) == (3, 3, 15)
    assert clotho["audio_seconds_mean"] == pytest.approx(4.0) and clotho["audio_seconds_std"] == pytest.approx(
        np.std([3.0, 5.0, 4.0]))
    assert clotho["caption_words_mean"] == pytest.approx(6.0) and clotho["audio_missing"] == 0
    # AudioCaps: two captions of one clip are one row; no audio files, so no lengths (never guessed)
    assert (ac["rows"], ac["audio_clips"], ac["captions"], ac["audio_missing"]) == (2, 2, 3, 2)
    assert ac["audio_seconds_mean"] is None and ac["caption_words_mean"] == pytest.approx((5 + 2 + 8) / 3)
    # WavCaps: durations from its JSON
    assert wav["audio_seconds_mean"] == pytest.approx(21.0) and wav["captions"] == 2
    assert res["embedded"]["statistics"]["extra_modality"] == "image" and clotho["extra_modality"] == "-"
    for part, keys in analysis.MEASURES.items():
        assert set(keys) <= set(res["clotho"][part])
    assert "| clotho | 3 | 3 | 4.00 ± 0.82 | 15 | 6.00 ± 1.41 | - |" in p.stdout
    nouns, verbs = res["clotho"]["nouns"], res["clotho"]["verbs"]
    assert nouns["dog"] == 15 and nouns.get("barks", 0) + verbs.get("barks", 0) == 15  # tagged either way
    assert set(nouns) | set(verbs) <= {"dog", "barks"}
    for png in ("readability.png", "diversity.png", "clotho_nouns.png", "clotho_verbs.png", "AC_nouns.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_name_the_file(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "x.json").write_text('{"data": [{"id": "a"}]}')
    with pytest.raises(InputError, match=r"x.json: data\[0\] needs id and caption"):
        analysis.load("wavcaps", str(tmp_path / "w"))
    with pytest.raises(InputError, match="clotho_captions_development.csv: missing"):
        analysis.load("clotho", str(tmp_path))
    with pytest.raises(InputError, match="unknown caption-set layout 'macs'"):
        analysis.load("macs", str(tmp_path))
