"""sentence-transformers model directories -> kdjax SentenceEncoder (+ its tokenizer and length limit).

A directory saved by sentence-transformers has `modules.json` listing Transformer -> Pooling
[-> Normalize]; the Transformer's files (config.json, weights, tokenizer, sentence_bert_config.json)
live at the module's path (the root in current releases, `0_Transformer/` in older ones) and the
pooling settings in the Pooling module's `config.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os

from kdjax.models.sentence_encoder import SentenceEncoder

_POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                 "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}


@dataclasses.dataclass(frozen=True)
class SentenceModel:
    model: SentenceEncoder
    tokenizer: object
    max_seq_length: int
    do_lower_case: bool
    path: str


def _read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def from_pretrained(path: str) -> SentenceModel:
    """Load a sentence-transformers directory; errors name the file that is missing or unsupported."""
    import kdjax.convert as kc
    from kdjax.data import tokenizers

    modules_file = os.path.join(path, "modules.json")
    if not os.path.isfile(modules_file):
        raise FileNotFoundError(f"{modules_file}: not a sentence-transformers directory (no modules.json)")
    modules = _read(modules_file)
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer" or "Pooling" not in kinds:
        raise ValueError(f"{modules_file}: expected Transformer -> Pooling [-> Normalize], got {kinds}")
    unsupported = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
    if unsupported:
        raise ValueError(f"{modules_file}: modules {unsupported} are not supported")
    tdir = os.path.join(path, modules[0]["path"])
    pooling_cfg = _read(os.path.join(path, modules[kinds.index("Pooling")]["path"], "config.json"))
    modes = [mode for key, mode in _POOLING_KEYS.items() if pooling_cfg.get(key)]
    if len(modes) != 1:
        raise ValueError(f"{path}: pooling config selects {modes or 'nothing'}; kdjax supports exactly one "
                         f"of {list(_POOLING_KEYS)}")
    st_cfg_file = os.path.join(tdir, "sentence_bert_config.json")
    st_cfg = _read(st_cfg_file) if os.path.isfile(st_cfg_file) else {}
    tok = tokenizers.load(tdir)
    max_len = int(st_cfg.get("max_seq_length") or min(tok.model_max_length, 512))
    encoder = kc.from_pretrained(tdir)
    return SentenceModel(SentenceEncoder(encoder, modes[0], "Normalize" in kinds), tok, max_len,
                         bool(st_cfg.get("do_lower_case", False)), path)
