"""EffAAC's word-level KD (issue 26 part 5): beside L_seq (cross-entropy on the teacher's caption of a clip), the
student's decoder also matches the teacher's next-token distributions along that caption,

    L_word = sum_t KL(p_teacher(. | audio, caption_<t) || p_student(. | audio, caption_<t)),

a sparse forward KL over the teacher's top-k with a "rest" bucket (`kdjax.losses.token_kd.sparse_token_kd`),
weighted by `kd.word.weight`.

The teacher (a Multi2Cap captioner: a LLaMA decoder with its BPE vocabulary) and the student (a word vocabulary)
tokenize differently. The teacher's distributions are computed once per clip, teacher-forced on its own cached
caption and stored as a top-k cache in its vocabulary (`write_cache`, beside the embedding/caption cache); at batch
time they are moved to the student's words by the caption's character offsets (`student_fields`, with
`kdjax.data.token_alignment`): where the student's next word starts a span both tokenizations share, the teacher's
top-k at the position predicting that span's first token, mapped to student words by text. The first word is
predicted from a pseudo position on both sides (the teacher's last prompt token, the student's BOS).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx

from kdjax import paths
from kdjax.data import token_alignment, tokenizers
from kdjax.errors import InputError
from kdjax.teachers import cache as cache_lib
from kdjax.teachers import topk

FIELDS = ("word_logprobs", "word_ids", "word_rest", "word_mask")  # a batch's fields (with `ao_` for audio-only clips)


def weight(cfg: ml_collections.ConfigDict) -> float:
    """kd.word.weight (0 in a config written before the key existed)."""
    return float(cfg.kd.word.weight) if "word" in cfg.kd else 0.0


def enabled(cfg: ml_collections.ConfigDict) -> bool:
    return weight(cfg) > 0


def cache_dir(cfg: ml_collections.ConfigDict, captions_dir: str) -> str:
    """Beside the teacher's caption cache: <captions_dir>_word_top<k>."""
    return f"{captions_dir.rstrip('/')}_word_top{int(cfg.kd.word.top_k)}"


def caption_length(cfg: ml_collections.ConfigDict) -> int:
    """Teacher tokens cached per caption, its EOS included: twice the longer of what the teacher generated
    (teacher.generate.max_new_tokens) and what the student reads (data.max_caption_tokens words; an imported
    teacher's captions need not be its own, and a word can be several teacher tokens). Longer captions are cut."""
    return 2 * max(int(cfg.teacher.generate.max_new_tokens), int(cfg.data.max_caption_tokens))


def write_cache(cfg: ml_collections.ConfigDict, teacher, ttok, clips: Callable[[list[str]], tuple[np.ndarray, ...]],
                captions: Callable[[str], str], ids: Sequence[str], out: str) -> dict:
    """The teacher's top-k (`kd.word.top_k`) next-token log-probabilities along its own caption of every clip in
    `ids` (`clips(ids)`: a fixed-size batch of their waves and masks at the teacher's rate; `captions(id)`: the cached
    caption), teacher-forced: row position j predicts the caption's teacher token j, the last its EOS. Resumable."""
    k, length, b = int(cfg.kd.word.top_k), caption_length(cfg), int(cfg.teacher.batch_size)
    gdef, state = nnx.split(teacher.model)

    @jax.jit
    def run(state, wave, mask, caption_ids, caption_mask):
        logits = nnx.merge(gdef, state)(wave, mask, caption_ids, caption_mask)["logits"]
        return topk.top_k(logits, k)

    def compute(part: list[str]) -> list[dict]:
        wave, mask = clips(part)
        ids, lens = tokenizers.encode_captions(ttok, [captions(i) for i in part], length)
        ids = np.concatenate([ids, np.repeat(ids[-1:], b - len(part), 0)])
        lens = np.concatenate([lens, np.repeat(lens[-1:], b - len(part), 0)])
        cmask = (np.arange(length)[None] < lens[:, None]).astype(np.int32)
        v, x, r = (np.asarray(a) for a in run(state, wave, mask, ids, cmask))
        return [topk.row(i, v[j, :lens[j]], x[j, :lens[j]], r[j, :lens[j]]) for j, i in enumerate(part)]

    # what makes a row: the teacher and the caption length (not the set of clips: audio-only clips added later extend
    # both caches, each row computed from its own clip's caption)
    workdir = cfg.teacher.workdir if "://" in cfg.teacher.workdir else os.path.abspath(cfg.teacher.workdir)
    return topk.fill(out, list(ids), compute, k, batch_size=b, shard_size=b * 16,
                     teacher=f"multi2cap {workdir} (teacher-forced on its captions)",
                     fingerprint={"teacher": workdir, "caption_tokens": length})


class Aligner:
    """Moves a clip's cached teacher top-k to the student's words (`fields`)."""

    def __init__(self, cache_dir_: str, teacher_tok, student_tok, cap_len: int):
        if not (paths.isdir(cache_dir_) and cache_lib.done_ids(cache_dir_)):
            raise InputError(f"{cache_dir_}: no word-level teacher cache (kd.word.weight > 0 writes it from a "
                             "teacher.kind='multi2cap' teacher)")
        self.cache = cache_lib.OutputCache(cache_dir_)
        self.k = int(self.cache.fields[topk.IDS]["shape"][1])
        self.ttok, self.stok, self.cap_len = teacher_tok, student_tok, int(cap_len)
        self.vmap = token_alignment.vocab_map(teacher_tok, student_tok)
        self.starts = token_alignment.word_starts(student_tok)

    def fields(self, clip_id: str, caption: str, prefix: str = "") -> dict[str, np.ndarray]:
        """The student's (cap_len, k) log-probabilities and word ids (-1 absent), (cap_len,) rest log-mass and mask:
        position t holds the teacher's distribution for the student's caption word t (as L_seq's logits[t]
        predict it), where that word starts a span both tokenizations share."""
        row = self.cache.get(clip_id)
        n = len(row[topk.IDS])  # teacher positions cached: tokens (and EOS) the teacher predicted
        t = self.ttok(caption, add_special_tokens=False, return_offsets_mapping=True)
        s = self.stok(caption, add_special_tokens=False, return_offsets_mapping=True)
        none = [(0, 0)]
        # sequences with a pseudo token in front; position p predicts token p + 1
        t_off = np.asarray(none + list(t["offset_mapping"])[:n - 1] + none, np.int64)
        lp, rest = (_and_a_zero_row(row[name][:len(t_off) - 1]) for name in (topk.LOGPROBS, topk.REST))
        idx = np.concatenate([np.asarray(row[topk.IDS][:len(t_off) - 1]), np.full((1, self.k), -1, np.int32)])
        s_ids = ([self.stok.bos_token_id] + list(s["input_ids"]) + [self.stok.eos_token_id])[:self.cap_len + 1]
        s_off = np.asarray((none + list(s["offset_mapping"]) + none)[:len(s_ids)], np.int64)
        moved = token_alignment.student_topk(caption, t_off, s_off, s_ids, lp, idx, self.vmap, self.starts, rest)
        out = {"word_logprobs": np.zeros((self.cap_len, self.k), np.float32),
               "word_ids": np.full((self.cap_len, self.k), -1, np.int32),
               "word_rest": np.zeros((self.cap_len,), np.float32), "word_mask": np.zeros((self.cap_len,), np.float32)}
        m = min(self.cap_len, len(s_ids) - 1)
        for name, key in zip(FIELDS, ("topk_logprobs", "topk_ids", "topk_rest", "topk_mask")):
            out[name][:m] = moved[key][:m]
        return {prefix + name: v for name, v in out.items()}

    def stats(self, captions: Callable[[str], str], ids: Sequence[str], limit: int = 1000) -> dict[str, Any]:
        """How much of the teacher's captions word KD reaches, over the first `limit` clips: the student's caption
        tokens (EOS included) with a teacher distribution, and the mean teacher mass that found a student word."""
        part = list(ids)[:limit]
        fields = [self.fields(i, captions(i)) for i in part]
        _, lens = tokenizers.encode_captions(self.stok, [captions(i) for i in part], self.cap_len)
        on = [f["word_mask"] > 0 for f in fields]
        mass = [np.sum(np.exp(f["word_logprobs"][m]) * (f["word_ids"][m] >= 0), -1) for f, m in zip(fields, on)]
        aligned = int(sum(m.sum() for m in on))
        return {"clips": len(part), "aligned_tokens": aligned, "caption_tokens": int(lens.sum()),
                "mean_mapped_mass": round(float(np.mean(np.concatenate(mass))), 4) if aligned else 0.0}


def _and_a_zero_row(a: np.ndarray) -> np.ndarray:
    """float32 `a` and one zero row after it: the last sequence position predicts nothing."""
    return np.concatenate([np.asarray(a, np.float32), np.zeros((1,) + a.shape[1:], np.float32)])
