"""Nouns and verbs of captions (the PyPI-installed perceptron tagger) and their word clouds."""

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from kdjax.vggcaps import words


def test_tags_a_caption():
    tagged = dict(words.tag("The thunderous crack of the ball against the wall reverberates as two players "
                            "immerse themselves in the rhythm of their squash game."))
    assert {w for w, t in tagged.items() if t.startswith("NN")} == {"crack", "ball", "wall", "players", "rhythm",
                                                                   "squash", "game"}
    assert {w for w, t in tagged.items() if t.startswith("VB")} == {"reverberates", "immerse"}
    assert tagged["."] == "."


def test_counts_and_cloud(tmp_path):
    nouns, verbs = words.nouns_and_verbs(["The dog runs to the gate.", "Birds sing and a car passes.", ""])
    assert nouns == Counter({"dog": 1, "gate": 1, "birds": 1, "car": 1})
    assert verbs == Counter({"runs": 1, "sing": 1, "passes": 1})
    path = words.word_cloud_png(nouns, str(tmp_path / "nouns.png"), width=200, height=100)
    img = np.asarray(Image.open(path).convert("L"))
    assert img.shape == (100, 200) and (img < 200).mean() > 0.01  # something is drawn on the white
    with pytest.raises(ValueError, match="no words to draw"):
        words.word_cloud_png(Counter(), str(tmp_path / "none.png"))
