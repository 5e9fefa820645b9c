"""Tokenizers: a user's HF tokenizer directory, or a WordPiece vocabulary built from the corpus.

Building one is for runs without a pretrained model (smoke tests, random-init students); it is
deterministic for a given corpus and size and is saved as a normal HF tokenizer directory.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from kdjax import paths


def load(path: str):
    """AutoTokenizer.from_pretrained(path); kdjax needs a fast tokenizer (character offsets)."""
    from transformers import AutoTokenizer

    if not paths.isdir(path):
        raise FileNotFoundError(f"tokenizer directory not found: {path}")
    with paths.local_copy(path) as local:  # from_pretrained reads local directories only
        tok = AutoTokenizer.from_pretrained(local)
    if not tok.is_fast:
        raise ValueError(f"{path}: a fast tokenizer (tokenizer.json) is needed for character offsets")
    return tok


def copy(src: str, out_dir: str):
    """The tokenizer saved in directory `src`, saved again in `out_dir` (kept if already there) and loaded from it: a
    later stage keeps an earlier stage's trained vocabulary where its own export and prediction read it."""
    if paths.isfile(paths.join(out_dir, "tokenizer.json")):
        return load(out_dir)
    return _save(load(src), out_dir)


def wordpiece_vocab(texts: Iterable[str], vocab_size: int, lowercase: bool = False,
                    max_piece: int = 8) -> list[str]:
    """A deterministic WordPiece vocabulary: specials, every character (word-initial and '##'
    continuation), then whole words, word-initial prefixes and '##' suffixes ranked by
    frequency x (length - 1), ties broken by the piece itself.

    (The `tokenizers` WordPiece trainer gives a different vocabulary in every process, which would
    make runs irreproducible.)
    """
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers

    norm = normalizers.Sequence([normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else []))
    pre = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(text)))
    chars = sorted({c for w in words for c in w})
    vocab = list(SPECIALS) + chars + [f"##{c}" for c in chars]
    scores: Counter[str] = Counter()
    for w, n in words.items():
        if len(w) > 1:
            scores[w] += n * (len(w) - 1)
        for k in range(2, min(len(w), max_piece + 1)):
            scores[w[:k]] += n * (k - 1)
            scores[f"##{w[-k:]}"] += n * (k - 1)
    seen = set(vocab)
    for piece, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size:
            break
        if piece not in seen:
            vocab.append(piece)
            seen.add(piece)
    return vocab


SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _save(fast, out_dir: str):
    """Save under a temporary name and rename: the processes of a multi-host job all build the same
    tokenizer, and none may read another's half-written files. The first rename wins; the others load it."""
    import shutil

    if paths.is_remote(out_dir):  # a bucket has no rename: the first writer's files stay, the others load them
        if not paths.isfile(paths.join(out_dir, "tokenizer.json")):
            with paths.local_dir(out_dir) as local:
                fast.save_pretrained(local)
        return load(out_dir)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{out_dir.rstrip(os.sep)}.tmp-{os.getpid()}"
    fast.save_pretrained(tmp)
    try:
        os.rename(tmp, out_dir)
    except OSError:  # already there (another process, or a previous run)
        shutil.rmtree(tmp, ignore_errors=True)
    return load(out_dir)


def train_wordpiece(texts: Iterable[str], vocab_size: int, out_dir: str, lowercase: bool = False):
    """Build a BERT-style WordPiece tokenizer for `texts` and save it to out_dir (reused if present)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    if paths.isfile(paths.join(out_dir, "tokenizer.json")):
        return load(out_dir)
    vocab = wordpiece_vocab(texts, vocab_size, lowercase)
    tok = Tokenizer(models.WordPiece({p: i for i, p in enumerate(vocab)}, unk_token="[UNK]"))
    norms = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
    tok.normalizer = normalizers.Sequence(norms)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    return _save(fast, out_dir)


WORD_SPECIALS = ("<unk>", "<s>", "</s>", "<pad>")  # ids 0-3, LLaMA's unk/bos/eos layout


def word_vocab(texts: Iterable[str], max_words: int | None = None, min_count: int = 1,
               lowercase: bool = True) -> list[str]:
    """Specials, then words (BERT pre-tokenisation: punctuation split off) by frequency, ties by the word."""
    from collections import Counter

    from tokenizers import pre_tokenizers

    pre = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(w for w, _ in pre.pre_tokenize_str(text.lower() if lowercase else text))
    ranked = [w for w, n in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count]
    return list(WORD_SPECIALS) + ranked[:max_words]


def train_word_level(texts: Iterable[str], out_dir: str, max_words: int | None = None, min_count: int = 1,
                     lowercase: bool = True):
    """A word-level tokenizer over caption text (EffAAC's student vocabulary; the decoder vocabulary of a
    random-init captioner), saved as a HF tokenizer directory (reused if present). No BOS/EOS is added
    by encoding; the caller places them."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if paths.isfile(paths.join(out_dir, "tokenizer.json")):
        return load(out_dir)
    vocab = word_vocab(texts, max_words, min_count, lowercase)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else []))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces, no space before punctuation
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")
    return _save(fast, out_dir)


def encode_captions(tok, captions: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Caption texts -> (ids (n, length) ending in EOS, padded with pad_token_id; lengths (n,) with EOS)."""
    ids = np.full((len(captions), length), tok.pad_token_id, np.int32)
    lens = np.zeros(len(captions), np.int32)
    for i, c in enumerate(captions):
        t = (tok(c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])[:length]
        ids[i, :len(t)], lens[i] = t, len(t)
    return ids, lens


def text_decoder(tok):
    """tokens (b, n) -> texts, cut at the first EOS, padding and special tokens dropped."""
    eos, pad = tok.eos_token_id, tok.pad_token_id

    def decode(tokens: np.ndarray) -> list[str]:
        out = []
        for row in np.asarray(tokens):
            ids = [int(t) for t in row]
            if eos in ids:
                ids = ids[:ids.index(eos)]
            out.append(tok.decode([t for t in ids if t != pad], skip_special_tokens=True).strip())
        return out

    return decode
