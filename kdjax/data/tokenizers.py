"""Tokenizers: a user's HF tokenizer directory, or a WordPiece vocabulary trained on the corpus.

Training one is for runs without a pretrained model (smoke tests, random-init students); it is
deterministic for a given corpus and size and is saved as a normal HF tokenizer directory.
"""

from __future__ import annotations

import os
from typing import Iterable


def load(path: str):
    """AutoTokenizer.from_pretrained(path); kdjax needs a fast tokenizer (character offsets)."""
    from transformers import AutoTokenizer

    if not os.path.isdir(path):
        raise FileNotFoundError(f"tokenizer directory not found: {path}")
    tok = AutoTokenizer.from_pretrained(path)
    if not tok.is_fast:
        raise ValueError(f"{path}: a fast tokenizer (tokenizer.json) is needed for character offsets")
    return tok


def train_wordpiece(texts: Iterable[str], vocab_size: int, out_dir: str, lowercase: bool = False):
    """Train a BERT-style WordPiece tokenizer on `texts` and save it to out_dir (reused if present)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if os.path.isfile(os.path.join(out_dir, "tokenizer.json")):
        return load(out_dir)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    norms = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
    tok.normalizer = normalizers.Sequence(norms)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(list(texts), trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False))
    from tokenizers.processors import TemplateProcessing

    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    os.makedirs(out_dir, exist_ok=True)
    fast.save_pretrained(out_dir)
    return load(out_dir)
