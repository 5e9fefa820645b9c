"""Batch inference from a trained workdir (`--mode=predict`, `--mode=caption`; kdjax.systems.inference): inputs as
files, directories and manifests; every path checked before anything is written; unreadable inputs named, skipped
and counted; long clips whole, never cropped; the workdir only read. (The captioners' and DSG-KD's modes are
tested beside their trained runs: the audio tagger's in test_audio_tagging, the captioners' in test_effaac and
test_multi2cap, DSG-KD's in test_trainer_runs.)"""

import pytest

from kdjax.systems import inference


def test_listing_inputs_names_what_it_cannot_use(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="a directory without audio files"):
        inference.list_inputs([str(tmp_path / "empty")], "audio")
    (tmp_path / "a.csv").write_text("text\nx\n")
    with pytest.raises(Exception, match=r"a.csv: not an audio file .* or a manifest \(.jsonl\)"):
        inference.list_inputs([str(tmp_path / "a.csv")], "audio")
    (tmp_path / "notes.csv").write_text("id,body\n7,fever and cough\n,\n")
    items = inference.list_inputs([str(tmp_path / "notes.csv")], "text", text_column="body")
    assert [(i.id, i.text) for i in items] == [("7", "fever and cough"), ("notes.csv:3", "")]
    with pytest.raises(Exception, match="no column 'text'"):
        inference.list_inputs([str(tmp_path / "notes.csv")], "text")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(Exception, match="x.png: not an audio file"):
        inference.list_inputs([str(tmp_path / "x.png")], "audio")
