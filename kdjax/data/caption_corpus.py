"""A deterministic captioning corpus built from real caption text, for testing and benchmarking metrics.

The texts are the 805 distinct English descriptions of Tux Paint's stamps (tuxpaint-stamps-default,
GPL-2; `assets/caption_texts/`), one-line captions of objects, animals and scenes with the punctuation
real captions carry (quotes, parentheses, dashes, currency, contractions). Each item's references are
its description and perturbed copies of it; its candidate is a perturbed copy too, sometimes of another
description, sometimes degenerate (one word, repeated words, empty), so every branch of the metrics
(no overlap, brevity penalty, clipping, zero-length) is reached.
"""

from __future__ import annotations

import os

import numpy as np

TEXTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "caption_texts",
                          "tuxpaint_en.txt")


def texts() -> list[str]:
    """The distinct descriptions, in file order."""
    with open(TEXTS_FILE, encoding="utf-8") as f:
        return list(dict.fromkeys(line.strip() for line in f if line.strip()))


def _perturb(words: list[str], rng: np.random.Generator, vocab: list[str], strength: int) -> list[str]:
    words = list(words)
    for _ in range(strength):
        op = rng.integers(7)
        if not words:
            words = [vocab[rng.integers(len(vocab))]]
            continue
        i = int(rng.integers(len(words)))
        if op == 0 and len(words) > 1:  # drop a word
            del words[i]
        elif op == 1 and i + 1 < len(words):  # swap neighbours
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == 2:  # substitute a word from elsewhere in the corpus
            words[i] = vocab[rng.integers(len(vocab))]
        elif op == 3:  # repeat a word (exercises clipping)
            words.insert(i, words[i])
        elif op == 4 and len(words) > 3:  # truncate (exercises the brevity penalty)
            words = words[: max(2, i)]
        elif op == 5:  # change case
            words[i] = words[i].upper() if rng.random() < 0.3 else words[i].lower()
        else:  # insert a word
            words.insert(i, vocab[rng.integers(len(vocab))])
    return words


def build(num_items: int, refs: int | tuple[int, int] = (1, 5), seed: int = 0
          ) -> tuple[list[str], list[list[str]]]:
    """(predictions, references) for `num_items` items; `refs` is a count or an inclusive range."""
    pool = texts()
    vocab = sorted({w for t in pool for w in t.split()})
    rng = np.random.default_rng(seed)
    lo, hi = (refs, refs) if isinstance(refs, int) else refs
    preds, all_refs = [], []
    for i in range(num_items):
        base = pool[i % len(pool)].split()
        n_refs = int(rng.integers(lo, hi + 1))
        item_refs = [" ".join(base)] + [" ".join(_perturb(base, rng, vocab, int(rng.integers(1, 5))))
                                        for _ in range(n_refs - 1)]
        roll = rng.random()
        if roll < 0.02:
            cand = ""
        elif roll < 0.05:
            cand = vocab[rng.integers(len(vocab))]
        elif roll < 0.08:
            cand = " ".join([base[0]] * int(rng.integers(2, 8)))
        elif roll < 0.2:
            cand = " ".join(_perturb(pool[rng.integers(len(pool))].split(), rng, vocab, 2))
        else:
            cand = " ".join(_perturb(base, rng, vocab, int(rng.integers(0, 6))))
        preds.append(cand)
        all_refs.append(item_refs)
    return preds, all_refs
