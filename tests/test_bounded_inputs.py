"""Users' text files are read in bounded memory and every decoding or size problem names file and line (issue 22,
item 6): a 10 MB one-line note in a CSV or JSONL file, a non-UTF-8 byte in a manifest or a caption file, an empty
reference caption; and a note is clipped to the words its tokenizers can keep before it is tokenized."""

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from kdjax.data import jsonl, knowledge, lines, notes, synthetic_notes, tokenizers
from kdjax.errors import InputError
from tests import runs

MB = 1 << 20


def _notes_file(path, fmt: str, big: str) -> None:
    rows = [(n.text, str(n.label)) for n in synthetic_notes.generate_notes(6, 0)]
    rows.insert(2, (big, "1"))
    if fmt == "csv":
        path.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in rows), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in rows),
                        encoding="utf-8")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_10mb_note_is_named_or_skipped_in_bounded_memory(tmp_path, fmt):
    path = tmp_path / f"notes.{fmt}"
    _notes_file(path, fmt, "fever " * (10 * MB // 6))
    line = 4 if fmt == "csv" else 3  # the CSV has a header
    with pytest.raises(notes.BadInputError, match=rf"notes.{fmt}:{line}: line of 10485\d+ bytes is longer than"):
        notes.load_notes(str(path), max_note_bytes=MB)
    tracemalloc.start()
    got, bad = notes.load_notes(str(path), max_note_bytes=MB // 4, on_bad="skip")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(got) == 6 and len(bad.rows) == 1 and bad.rows[0].startswith(f"{path}:{line}: line of")
    assert peak < 4 * MB, peak  # the 10 MB line was never held whole


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_note_over_the_limit_but_within_the_line_is_a_bad_row(tmp_path, fmt):
    path = tmp_path / f"notes.{fmt}"
    _notes_file(path, fmt, "fever " * 200)  # 1200 bytes
    line = 4 if fmt == "csv" else 3
    with pytest.raises(notes.BadInputError, match=rf"notes.{fmt}:{line}: note of 1200 bytes is longer than "
                                                  r"data.max_note_bytes=1000"):
        notes.load_notes(str(path), max_note_bytes=1000)
    got, bad = notes.load_notes(str(path), max_note_bytes=1000, on_bad="skip")
    assert len(got) == 6 and len(bad.rows) == 1
    assert len(notes.load_notes(str(path), max_note_bytes=2000)[0]) == 7


def test_read_lines_reports_size_and_decoding_per_line(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"ok\n" + b"a" * 100 + b"\n" + b"caf\xe9\n" + b"last")
    assert list(lines.read_lines(str(p), 50, limit_name="K")) == [
        (1, "ok", None), (2, None, "line of 101 bytes is longer than 50 (K)"),
        (3, None, "not UTF-8 (invalid continuation byte at byte 3 of the line)"), (4, "last", None)]


def test_manifest_with_a_non_utf8_byte_names_file_and_line(tmp_path):
    p = tmp_path / "manifest.jsonl"
    p.write_bytes(b'{"audio": "a.wav", "split": "train"}\n{"audio": "caf\xe9.wav", "split": "train"}\n')
    with pytest.raises(InputError, match=r"manifest.jsonl:2: not UTF-8"):
        jsonl.read_rows(str(p), ("audio", "split"))


def _evaluate(*args):
    return subprocess.run([sys.executable, "-m", "kdjax.evaluate", *args], env=runs.env(1), cwd=runs.REPO,
                          capture_output=True, text=True, timeout=300)


def test_evaluate_names_file_and_line_for_bad_bytes_and_empty_references(tmp_path):
    preds, refs = tmp_path / "p.jsonl", tmp_path / "r.jsonl"
    preds.write_bytes(b'{"id": 1, "caption": "a dog barks"}\n{"id": 2, "caption": "rain \xff falls"}\n')
    refs.write_text('{"id": 1, "captions": ["a dog is barking"]}\n{"id": 2, "captions": ["rain", ""]}\n')
    p = _evaluate("--predictions", str(preds), "--references", str(refs), "--metrics", "bleu_1")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"{preds}:2: not UTF-8" in p.stderr
    preds.write_text('{"id": 1, "caption": "a dog barks"}\n{"id": 2, "caption": "rain falls"}\n')
    p = _evaluate("--predictions", str(preds), "--references", str(refs), "--metrics", "bleu_1")
    assert p.returncode == 2 and f"{refs}:2: an empty reference caption (id 2)" in p.stderr


def test_clipping_a_note_to_its_tokenizers_length_changes_no_encoding(tmp_path, minilm_dir):
    """Each whitespace word is at least one token, so the first max_length words hold every token kept."""
    texts = [n.text for n in synthetic_notes.generate_notes(40, 3)]
    texts.append(" ".join(texts) * 20)  # far longer than any max_length
    wordpiece = tokenizers.train_wordpiece(texts[:40], 300, str(tmp_path / "wp"))
    for tok in (wordpiece, tokenizers.load(minilm_dir)):
        for length in (8, 40, 128):
            for raw in texts:  # as DSG-KD's encoder does: clip the user's text, then preprocess it
                text = knowledge.preprocess_note(raw)
                clipped = knowledge.preprocess_note(knowledge.clip_words(raw, length))
                spans, cspans = knowledge.latin_words(text), knowledge.latin_words(clipped)
                a = knowledge.encode(tok, text, spans, length, 32)
                b = knowledge.encode(tok, clipped, cspans, length, 32)
                for k in a:
                    np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} at max_length {length}")
    assert knowledge.clip_words("a  b\nc d", 3) == "a  b\nc" and knowledge.clip_words("a b", 5) == "a b"


def test_dataset_csvs_name_file_and_line(tmp_path):
    from kdjax.data import tfds_builders
    from kdjax.vggcaps import build

    caps = ",".join(f"caption_{k}" for k in range(1, 6))
    for name in ("development", "validation", "evaluation"):
        (tmp_path / f"clotho_captions_{name}.csv").write_bytes(
            f"file_name,{caps}\na.wav,{','.join(['a dog barks'] * 5)}\n".encode())
    dev = tmp_path / "clotho_captions_development.csv"
    dev.write_bytes(dev.read_bytes() + b"b.wav,rain \xe9,x,x,x,x\n")
    with pytest.raises(InputError, match=r"clotho_captions_development.csv:3: not UTF-8"):
        tfds_builders.clotho_rows(str(tmp_path))
    quoted = tmp_path / "q.csv"  # a quote never closed runs over many lines, each short, until the field limit
    quoted.write_text('a,b\n1,"never closed\n' + "more text\n" * 200)
    with pytest.raises(InputError, match=r"q.csv:\d+: malformed CSV \(field larger than field limit"):
        list(lines.csv_rows(str(quoted), max_bytes=1000))
    vgg = tmp_path / "vggsound.csv"
    vgg.write_bytes(b"abc,1,dog,train\n" + b"x" * (5 * MB) + b",2,cat,test\n")
    with pytest.raises(InputError, match=r"vggsound.csv:2: line of 5242892 bytes is longer than"):
        build.read_csv(str(vgg))
