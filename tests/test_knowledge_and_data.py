"""Domain words, knowledge masks per tokenizer, the synthetic notes and the notes loader."""

import numpy as np
import pytest

from kdjax.data import knowledge, notes as notes_lib, synthetic_notes, tokenizers


def test_latin_words_and_preprocess():
    text = "5세 남아, fever있었으며 SpO2 91 % (cough) seizure."
    clean = knowledge.preprocess_note(text + "\r\n다음 줄")
    assert "\n" not in clean and "\r" not in clean
    words = [clean[a:b] for a, b in knowledge.latin_words(clean)]
    # English glued to Korean or to brackets is separated and found; "SpO2" has a digit: not a word.
    assert words == ["fever", "cough", "seizure"]
    assert knowledge.preprocess_note("BT 37.9 .") == "BT 37.9 ."  # decimals stay whole


def test_word_list_and_module_finders(tmp_path):
    f = tmp_path / "terms.txt"
    f.write_text("Fever\nseizure\n")
    find = knowledge.resolve_finder(f"file:{f}")
    text = "fever and SEIZURE now"
    assert [text[a:b] for a, b in find(text)] == ["fever", "SEIZURE"]
    assert knowledge.resolve_finder("kdjax.data.knowledge:latin_words") is knowledge.latin_words
    with pytest.raises(ValueError, match="unknown domain-word finder"):
        knowledge.resolve_finder("nonsense")


def test_knowledge_masks_follow_each_tokenizer(tmp_path, minilm_dir):
    notes = synthetic_notes.generate_notes(300, 5)
    texts = [n.text for n in notes]
    student = tokenizers.train_wordpiece(texts, 800, str(tmp_path / "tok"))
    teacher = tokenizers.load(minilm_dir)
    text = "9 세 여아 , intussusception 의심 vomiting 동반 today"
    spans = knowledge.latin_words(text)
    assert [text[a:b] for a, b in spans] == ["intussusception", "vomiting", "today"]
    es = knowledge.encode(student, text, spans, 40, 32)
    et = knowledge.encode(teacher, text, spans, 40, 32)
    for enc, tok in ((es, student), (et, teacher)):
        toks = tok.convert_ids_to_tokens(enc["input_ids"].tolist())
        for k, word in enumerate(["intussusception", "vomiting", "today"], start=1):
            pieces = [t for t, w in zip(toks, enc["word_ids"]) if w == k]
            assert "".join(p.replace("##", "") for p in pieces).lower() == word
    # Word k is the same word under both tokenizations, whatever its subword count in each.
    assert set(np.unique(es["word_ids"])) == set(np.unique(et["word_ids"])) == {0, 1, 2, 3}


def test_knowledge_mask_limits():
    offsets = np.array([[0, 0], [0, 3], [4, 7], [8, 11], [0, 0], [0, 0]])
    spans = [(0, 3), (4, 7), (8, 11)]
    m = knowledge.knowledge_mask(offsets, spans, max_words=2)
    assert m.tolist() == [0, 1, 2, 0, 0, 0]  # special/pad tokens never belong to a word
    # A word truncated away has no tokens.
    m = knowledge.knowledge_mask(offsets[:3], spans, max_words=32)
    assert m.tolist() == [0, 1, 2]


def test_synthetic_notes_are_deterministic_with_table_2_1_mix():
    a = synthetic_notes.generate_notes(1500, 7)
    b = synthetic_notes.generate_notes(1500, 7)
    assert a == b
    assert a != synthetic_notes.generate_notes(1500, 8)
    mix = synthetic_notes.language_mix([n.text for n in a])
    assert abs(mix["korean"] - 0.43) < 0.03
    assert abs(mix["english"] - 0.23) < 0.03
    assert abs(mix["other"] - 0.33) < 0.03
    assert 0.15 < mix["medical_of_english"] < 0.25
    pos = np.mean([n.label for n in a])
    assert 0.35 < pos < 0.65
    # Labels depend on the English medical terms: urgent terms make emergencies far more likely.
    urgent = set(synthetic_notes.URGENT_TERMS)
    has = np.array([any(w in urgent for w in n.text.split()) for n in a])
    lab = np.array([n.label for n in a])
    assert lab[has].mean() > lab[~has].mean() + 0.4


def test_notes_loader_reports_bad_rows(tmp_path):
    csv_path = tmp_path / "notes.csv"
    csv_path.write_bytes("text,label\n"
                         "fever 있음,1\n"
                         ",0\n"  # line 3: empty text
                         "cough,7\n".encode()  # line 4: label outside the set
                         + b"bad \xff\xfe bytes,1\n"  # line 5: not UTF-8
                         + "\"multi\nline note\",0\n".encode())
    # Bytes are decoded before parsing, so the undecodable line is the first error reported.
    with pytest.raises(notes_lib.BadInputError, match=r"notes\.csv:5: not UTF-8"):
        notes_lib.load_notes(str(csv_path))
    notes, bad = notes_lib.load_notes(str(csv_path), on_bad="skip")
    assert [n.text for n in notes] == ["fever 있음", "multi\nline note"]
    assert [n.label for n in notes] == [1, 0]
    assert len(bad.rows) == 3
    assert any(r.endswith("notes.csv:3: empty text") for r in bad.rows)
    assert any("notes.csv:4: label '7' is not in the label set" in r for r in bad.rows)
    assert any("notes.csv:5: not UTF-8" in r for r in bad.rows)
    clean = tmp_path / "clean.csv"
    clean.write_text("text,label\nok,1\n  ,0\n")
    with pytest.raises(notes_lib.BadInputError, match=r"clean\.csv:3: empty text"):
        notes_lib.load_notes(str(clean))

    jl = tmp_path / "notes.jsonl"
    jl.write_text('{"text": "a", "label": 1}\n{broken\n{"text": "b", "label": "0"}\n[1]\n')
    with pytest.raises(notes_lib.BadInputError, match=r"notes\.jsonl:2: invalid JSON"):
        notes_lib.load_notes(str(jl))
    notes, bad = notes_lib.load_notes(str(jl), on_bad="skip")
    assert [(n.text, n.label) for n in notes] == [("a", 1), ("b", 0)]
    assert len(bad.rows) == 2 and "notes.jsonl:4: not a JSON object" in bad.rows[1]

    missing = tmp_path / "cols.csv"
    missing.write_text("body,y\nx,1\n")
    with pytest.raises(notes_lib.BadInputError, match=r"cols\.csv: missing columns \['label', 'text'\]"):
        notes_lib.load_notes(str(missing))


def test_split_ratios_are_deterministic():
    notes = synthetic_notes.generate_notes(100, 1)
    a = notes_lib.split_notes(notes, (0.8, 0.1, 0.1), 42)
    b = notes_lib.split_notes(notes, (0.8, 0.1, 0.1), 42)
    assert [len(x) for x in a] == [80, 10, 10]
    assert a == b
    assert sorted(n.text for x in a for n in x) == sorted(n.text for n in notes)
