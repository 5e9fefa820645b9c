"""Lexical diversity (VggCaps analysis, thesis Figure 3.3) against a hand-computed example and against the
`lexicalrichness` package's implementations of the same formulas."""

import math

import pytest

from kdjax.data.caption_corpus import texts as corpus_texts
from kdjax.metrics import lexical


def test_hand_computed_example():
    # N = 8 tokens, V = 5 types; "the" x3, "dog" x2, three words once: V(3)=1, V(2)=1, V(1)=3
    tokens = lexical.words("The dog barks; the dog runs. The end")
    assert tokens == ["the", "dog", "barks", "the", "dog", "runs", "the", "end"]
    assert lexical.spectrum(tokens) == {3: 1, 2: 1, 1: 3}
    assert lexical.ttr(tokens) == 5 / 8
    assert lexical.yule_k(tokens) == pytest.approx(1e4 * (9 + 4 + 3 - 8) / 64)  # 1250
    assert lexical.simpson_d(tokens) == pytest.approx((3 * 2 + 2 * 1) / (8 * 7))
    assert lexical.herdan_vm(tokens) == pytest.approx(math.sqrt((9 + 4 + 3) / 64 - 1 / 5))


def test_words_keep_inner_apostrophes_and_digits():
    assert lexical.words("A man's voice, then 2 dogs—don't stop!") == ["a", "man's", "voice", "then", "2",
                                                                     "dogs", "don't", "stop"]


def test_matches_lexicalrichness_on_real_captions():
    from lexicalrichness import LexicalRichness

    texts = corpus_texts()[:300]
    tokens = [w for t in texts for w in lexical.words(t)]
    ref = LexicalRichness(tokens, preprocessor=None, tokenizer=None)
    ours = lexical.diversity(texts)
    assert ours["tokens"] == ref.words and ours["types"] == ref.terms
    assert ours["ttr"] == pytest.approx(ref.ttr, rel=1e-12)
    assert ours["herdan_vm"] == pytest.approx(ref.herdanvm, rel=1e-9)
    assert ours["yule_k"] == pytest.approx(ref.yulek, rel=1e-9)
    assert ours["simpson_d"] == pytest.approx(ref.simpsond, rel=1e-9)


def test_a_repetitive_set_is_less_diverse():
    varied = lexical.diversity(["a dog barks near a busy road", "rain falls on a tin roof at night"])
    same = lexical.diversity(["a dog barks", "a dog barks", "a dog barks", "a dog barks"])
    assert varied["ttr"] > same["ttr"] and varied["yule_k"] < same["yule_k"]
    assert varied["simpson_d"] < same["simpson_d"]
    with pytest.raises(ValueError, match="at least 2"):
        lexical.simpson_d(["one"])
