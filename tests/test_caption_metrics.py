"""The captioning suite against pycocoevalcap 1.2 (its own PTB tokenizer, Bleu, Rouge, Cider, Meteor),
on a 600-item corpus of real caption text with 1-5 references per item."""

import json
import stat
import sys

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from kdjax.data import caption_corpus
from kdjax.metrics import captioning
from kdjax.metrics.captioning import java, tokenize

NGRAM = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d")
TOL = 1e-6  # on pycocoevalcap's scale (x1); kdjax reports x100


def _coco(preds, refs, tokenized=False, meteor=None):
    """pycocoevalcap's pipeline: PTB-tokenise references and candidates, then each scorer."""
    gts = {i: [{"caption": r} for r in rs] for i, rs in enumerate(refs)}
    res = {i: [{"caption": p}] for i, p in enumerate(preds)}
    if tokenized:
        gts = {i: [c["caption"] for c in v] for i, v in gts.items()}
        res = {i: [c["caption"] for c in v] for i, v in res.items()}
    else:
        gts, res = PTBTokenizer().tokenize(gts), PTBTokenizer().tokenize(res)
    out = {}
    b, bi = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        out[f"bleu_{n + 1}"] = (b[n], np.array(bi[n]))
    r, ri = Rouge().compute_score(gts, res)
    out["rouge_l"] = (r, np.array(ri))
    c, ci = Cider().compute_score(gts, res)
    out["cider_d"] = (c, np.array(ci))
    if meteor is not None:
        m, mi = meteor.compute_score(gts, res)
        out["meteor"] = (m, np.array(mi))
    return out


def _assert_equal(ours: captioning.CaptionEvaluation, ref: dict, report: dict | None = None):
    for name, (corpus, items) in ref.items():
        d_corpus = abs(ours.scores[name] / 100 - corpus)
        d_items = float(np.abs(ours.per_item[name] / 100 - items).max())
        if report is not None:
            report[name] = max(d_corpus, d_items)
        assert d_corpus <= TOL and d_items <= TOL, (name, d_corpus, d_items)


@pytest.fixture(scope="module")
def corpus():
    preds, refs = caption_corpus.build(600, (1, 5), seed=1)
    assert len(preds) >= 500 and {len(r) for r in refs} == {1, 2, 3, 4, 5}
    assert sum(p == "" for p in preds) > 0  # the degenerate candidates are in
    return preds, refs


def test_ptb_suite_equals_pycocoevalcap(corpus, capsys):
    preds, refs = corpus
    their_meteor = Meteor()  # its JVM loads the paraphrase table while kdjax's does the same
    ours = captioning.evaluate(preds, refs, metrics=NGRAM + ("meteor",), tokenization="ptb", per_item=True)
    diffs = {}
    _assert_equal(ours, _coco(preds, refs, meteor=their_meteor), diffs)
    assert ours.tokenization == "ptb" and ours.num_items == 600 and not ours.unavailable
    with capsys.disabled():
        print("\nmax |kdjax - pycocoevalcap| (x1):", json.dumps({k: f"{v:.1e}" for k, v in diffs.items()}))


def test_ptb_tokenizer_is_the_coco_one(corpus):
    preds, refs = corpus
    texts = preds[:200] + ['A “quoted” (boxed) $1.00 dog\'s bark—loud...', "", "e.g. U.S. a/b", "x ||| y"]
    theirs = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    assert tokenize.ptb(texts) == [theirs[i][0] for i in range(len(texts))]
    assert tokenize.ptb(["Loud (barking)."]) == ["loud -lrb- barking -rrb-"]  # COCO keeps lower-cased brackets


def test_loae_tokenization_scores_equal_pycocoevalcap_on_the_same_tokens(corpus):
    preds, refs = corpus
    assert tokenize.loae(["A Dog's  bark—LOUD (really)!", "“Hi”, $5"]) == ["a dogs barkloud really", "hi 5"]
    ours = captioning.evaluate(preds, refs, metrics=NGRAM, tokenization="loae", per_item=True)
    t = lambda xs: tokenize.loae(xs)
    _assert_equal(ours, _coco(t(preds), [t(r) for r in refs], tokenized=True))
    assert ours.tokenization == "loae"
    ptb = captioning.evaluate(preds, refs, metrics=("bleu_4",), tokenization="ptb")
    assert ptb.scores["bleu_4"] != ours.scores["bleu_4"]  # the tokenisation matters, hence recorded


@pytest.mark.parametrize("case", ["one_item", "identical", "no_overlap", "empty_and_single_words"])
def test_small_and_degenerate_corpora(case):
    preds, refs = {
        "one_item": (["a dog barks loudly"], [["a dog is barking", "dogs bark"]]),
        "identical": (["the same words here"] * 3, [["the same words here"]] * 3),
        "no_overlap": (["alpha beta", "gamma"], [["one two three"], ["four", "five six"]]),
        "empty_and_single_words": (["", "dog", "dog dog dog dog", "a"],
                                   [["a dog"], ["dog"], ["a dog barks"], ["", "a"]]),
    }[case]
    ours = captioning.evaluate(preds, refs, metrics=NGRAM, tokenization="loae", per_item=True)
    _assert_equal(ours, _coco(preds, refs, tokenized=True))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="2 predictions but 1"):
        captioning.evaluate(["a", "b"], [["a"]], metrics=("bleu_1",), tokenization="loae")
    with pytest.raises(ValueError, match="item 1: references must be a non-empty list"):
        captioning.evaluate(["a", "b"], [["a"], []], metrics=("bleu_1",), tokenization="loae")
    with pytest.raises(TypeError, match="item 0: reference 1 is int"):
        captioning.evaluate(["a"], [["a", 3]], metrics=("bleu_1",), tokenization="loae")
    with pytest.raises(ValueError, match="unknown metrics \\['bleu5'\\]"):
        captioning.evaluate(["a"], [["a"]], metrics=("bleu5",), tokenization="loae")
    with pytest.raises(ValueError, match="tokenization='nltk'"):
        captioning.evaluate(["a"], [["a"]], metrics=("bleu_1",), tokenization="nltk")


def test_spice_unavailable_names_the_files(tmp_path, monkeypatch):
    jar = tmp_path / "spice-1.0.jar"
    jar.write_bytes(b"")
    monkeypatch.setenv("KDJAX_SPICE_JAR", str(jar))
    res = captioning.evaluate(["a dog"], [["a dog barks"]], metrics=("cider_d", "spice", "spider"),
                              tokenization="loae")
    assert set(res.scores) == {"cider_d"}
    why = res.unavailable["spice"]
    assert "stanford-corenlp-3.6.0.jar" in why and "stanford-corenlp-3.6.0-models.jar" in why and str(jar) in why
    assert "SPICE" in res.unavailable["spider"]
    assert "n/a" in res.table() and "SP" in res.table()


FAKE_SPICE = """#!{python}
# Stands in for `java -jar spice-1.0.jar in.json -cache DIR -out out.json -subset -silent`: SPICE's
# output format with F = (number of words of the candidate) / 10, NaN for an empty candidate.
import json, sys
args = sys.argv[1:]
assert args[args.index("-jar") + 1].endswith("spice-1.0.jar") and "-subset" in args, args
items = json.load(open(args[args.index("-jar") + 2]))
out = [{{"image_id": it["image_id"], "scores": {{"All": {{"f": (len(it["test"].split()) / 10) if it["test"]
        else "NaN", "pr": 0, "re": 0}}}}}} for it in items]
json.dump(out, open(args[args.index("-out") + 1], "w"))
"""


def test_spice_runs_the_users_jar_and_spider_combines_per_item(tmp_path, monkeypatch):
    """The SPICE plumbing (input file, command line, output parsing, SPIDEr) with a stand-in for Java,
    since CoreNLP 3.6.0 is not obtainable here."""
    (tmp_path / "lib").mkdir()
    for name in ("spice-1.0.jar", "lib/stanford-corenlp-3.6.0.jar", "lib/stanford-corenlp-3.6.0-models.jar"):
        (tmp_path / name).write_bytes(b"")
    fake = tmp_path / "java"
    fake.write_text(FAKE_SPICE.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("KDJAX_JAVA", str(fake))
    preds, refs = ["a dog barks", "two cats", "birds sing in the morning"], [["a dog barks"], ["cats"], ["birds"]]
    res = captioning.evaluate(preds, refs, metrics=("cider_d", "spice", "spider"), tokenization="loae",
                              per_item=True, config=captioning.MetricConfig(spice_jar=str(tmp_path / "spice-1.0.jar")))
    np.testing.assert_allclose(res.per_item["spice"], [30.0, 20.0, 50.0])
    np.testing.assert_allclose(res.per_item["spider"], (res.per_item["cider_d"] + res.per_item["spice"]) / 2)
    assert res.scores["spider"] == pytest.approx(np.mean(res.per_item["spider"]))
    nan = captioning.evaluate([""], [["a"]], metrics=("spice",), tokenization="loae",
                              config=captioning.MetricConfig(spice_jar=str(tmp_path / "spice-1.0.jar")))
    assert np.isnan(nan.scores["spice"])  # as pycocoevalcap: NaN propagates, never a silent 0


def test_missing_jars_and_java_fail_plainly(tmp_path, monkeypatch):
    with pytest.raises(java.ToolUnavailable, match="meteor-1.5.jar"):
        java.locate(java.METEOR, str(tmp_path / "nope.jar"))
    monkeypatch.setenv("KDJAX_JAVA", "no-such-java-binary")
    with pytest.raises(java.ToolUnavailable, match="not on PATH"):
        tokenize.ptb(["a dog"])
    res = captioning.evaluate(["a dog"], [["a dog"]], metrics=("bleu_1", "meteor"), tokenization="loae")
    assert "bleu_1" in res.scores and "not on PATH" in res.unavailable["meteor"]
