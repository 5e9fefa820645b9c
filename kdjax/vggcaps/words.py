"""The nouns and verbs of a caption set and their word clouds (thesis Figures 3.4 and 3.5).

Part-of-speech tags come from an averaged-perceptron tagger (Penn Treebank tags) that installs from PyPI with
its trained weights: the model file of `textblob-aptagger`, run by NLTK's perceptron tagger (the same
feature set; NLTK's own model file would have to be downloaded at run time, which is not possible offline).
"""

from __future__ import annotations

import functools
import os
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|[^\w\s]")


@functools.cache
def tagger() -> Any:
    import importlib.util
    import pickle

    from nltk.tag.perceptron import PerceptronTagger

    spec = importlib.util.find_spec("textblob_aptagger")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the part-of-speech model comes with textblob-aptagger: "
                                  "pip install --no-deps textblob-aptagger==0.2.0")
    with open(os.path.join(os.path.dirname(spec.origin), "trontagger-0.1.0.pickle"), "rb") as f:
        weights, tagdict, classes = pickle.load(f, encoding="latin1")  # written by Python 2
    t = PerceptronTagger(load=False)
    t.model.weights, t.tagdict = weights, tagdict
    t.classes = t.model.classes = set(classes)
    return t


def tag(text: str) -> list[tuple[str, str]]:
    """(token, Penn Treebank tag) pairs; punctuation is its own token."""
    tokens = _TOKEN.findall(text)
    return tagger().tag(tokens) if tokens else []


def nouns_and_verbs(texts: Iterable[str]) -> tuple[Counter, Counter]:
    """Counts of the lower-cased nouns (NN*) and verbs (VB*) over all captions."""
    nouns: Counter = Counter()
    verbs: Counter = Counter()
    for text in texts:
        for word, t in tag(text):
            if not word[0].isalnum():
                continue
            if t.startswith("NN"):
                nouns[word.lower()] += 1
            elif t.startswith("VB"):
                verbs[word.lower()] += 1
    return nouns, verbs


def word_cloud_png(counts: Counter, path: str, width: int = 800, height: int = 400) -> str:
    """A word cloud of `counts` (font size by frequency), deterministic for the same counts."""
    from wordcloud import WordCloud

    if not counts:
        raise ValueError(f"{path}: no words to draw")
    WordCloud(width=width, height=height, background_color="white", random_state=0,
              max_words=200).generate_from_frequencies(dict(counts)).to_file(path)
    return path
