"""Sentence-BERT similarity, the fluency-error detector and FENSE (Zhou et al. 2022).

- SB_i: mean over item i's references of the cosine similarity between L2-normalised sentence
  embeddings of candidate and reference (FENSE's `corpus_score`; its default encoder is
  paraphrase-TinyBERT-L6-v2), computed on the raw (untokenised) sentences, as FENSE does.
- Error detector ("echecker"): BERT, first-token features, linear layer with sigmoid outputs per
  error type; the last output is "has any error". error_i = P_last > 0.9 (FENSE's threshold); inputs are
  tokenised with truncation and padded to 64 tokens, as FENSE's `infer_preprocess` does.
- FENSE_i = SB_i * (1 - 0.9 error_i); SPIDEr-FL_i = SPIDEr_i * (1 - 0.9 error_i).

Both networks are kdjax's JAX BERT on converted weights, run in length-sorted batches of a fixed size
padded to multiples of 8 tokens (a corpus compiles a few shapes, not one per batch).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ERROR_THRESHOLD = 0.9
PENALTY = 0.9
ECHECKER_MAX_LEN = 64


def _bucket(n: int, limit: int) -> int:
    """Padded length: the next multiple of 8 (batches are length-sorted, so a corpus compiles a few
    shapes, and little compute goes to padding)."""
    return min(max(8, -(-n // 8) * 8), limit)


def _pad_rows(batch: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Pad the batch axis to `rows` (empty rows), so every batch has the same compiled shape."""
    n = len(batch["input_ids"])
    return {k: np.concatenate([v, np.zeros((rows - n,) + v.shape[1:], v.dtype)]) if n < rows else v
            for k, v in batch.items()}


class _Runner:
    """A jitted forward over (input_ids, attention_mask, token_type_ids) returning one array."""

    def __init__(self, model: nnx.Module, output: callable):
        gdef, state = nnx.split(model)
        self._state = state

        @jax.jit
        def fwd(state, ids, mask, types):
            return output(nnx.merge(gdef, state), ids, mask, types)

        self._fwd = fwd

    def __call__(self, enc: dict[str, np.ndarray]) -> np.ndarray:
        types = enc.get("token_type_ids", np.zeros_like(enc["input_ids"]))
        return np.asarray(self._fwd(self._state, jnp.asarray(enc["input_ids"]), jnp.asarray(enc["attention_mask"]),
                                    jnp.asarray(types)))


class SentenceEmbedder:
    """Embeddings of a sentence-transformers model directory, computed by kdjax (see
    kdjax.convert.sentence_transformers)."""

    def __init__(self, path: str, batch_size: int = 64):
        from kdjax.convert import sentence_transformers

        self.st = sentence_transformers.from_pretrained(path)
        self.path, self.batch_size = path, batch_size
        self._run = _Runner(self.st.model, lambda m, i, a, t: m(i, a, t)["sentence_embedding"])

    def encode(self, texts: list[str], normalize: bool = False) -> np.ndarray:
        """(len(texts), dim) float32 embeddings; `normalize` L2-normalises them (as FENSE asks)."""
        st = self.st
        if st.do_lower_case:
            texts = [t.lower() for t in texts]
        enc = st.tokenizer(list(texts), truncation=True, max_length=st.max_seq_length)
        lengths = np.array([len(x) for x in enc["input_ids"]])
        order = np.argsort(-lengths, kind="stable")
        out = np.zeros((len(texts), st.model.encoder.cfg.hidden_size), np.float32)
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            width = _bucket(int(lengths[idx].max()), st.max_seq_length)
            batch = st.tokenizer.pad({k: [enc[k][i] for i in idx] for k in enc}, padding="max_length",
                                     max_length=width, return_tensors="np")
            out[idx] = self._run(_pad_rows(dict(batch), self.batch_size))[:len(idx)]
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def sbert_similarity(embedder: SentenceEmbedder, cand: list[str], refs: list[list[str]]) -> np.ndarray:
    """Per-item SB: mean cosine similarity of the candidate with each reference."""
    flat = [r for rs in refs for r in rs]
    emb = embedder.encode(list(cand) + flat, normalize=True)
    c, r = emb[:len(cand)], emb[len(cand):]
    num_refs = np.array([len(x) for x in refs])
    item_of_ref = np.repeat(np.arange(len(cand)), num_refs)
    sims = np.einsum("nd,nd->n", c[item_of_ref].astype(np.float64), r.astype(np.float64))
    return np.bincount(item_of_ref, sims, minlength=len(cand)) / num_refs


class ErrorChecker:
    """FENSE's fluency-error detector converted from its released checkpoint.

    `checkpoint`: the .ckpt FENSE publishes (a torch-saved dict with `model_type`, `num_classes` and a
    `state_dict` of `encoder.*` BERT weights and a `clf` linear layer). `model_dir`: a Hugging Face
    directory of the checkpoint's `model_type` (e.g. bert-base-uncased) giving config.json and the
    tokenizer, which the checkpoint does not contain.
    """

    def __init__(self, checkpoint: str, model_dir: str, batch_size: int = 64):
        import kdjax.convert as kc
        from kdjax.convert.checkpoint_io import read_config
        from kdjax.data import tokenizers

        for p in (checkpoint, model_dir):
            if not os.path.exists(p):
                raise FileNotFoundError(f"echecker: {p} does not exist")
        try:
            import torch
        except ImportError as e:  # the released checkpoint is a torch pickle
            raise ImportError(f"reading {checkpoint} needs PyTorch (pip install torch)") from e
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise ValueError(f"{checkpoint}: not a FENSE echecker checkpoint (no 'state_dict')")
        tensors = {}
        for k, v in ckpt["state_dict"].items():
            if k.startswith("encoder."):
                tensors["bert." + k[len("encoder."):]] = v.float().numpy()
            elif k.startswith("clf."):
                tensors["classifier." + k[len("clf."):]] = v.float().numpy()
            else:
                raise ValueError(f"{checkpoint}: unexpected tensor {k!r} (expected encoder.* and clf.*)")
        num_classes = int(ckpt.get("num_classes", tensors["classifier.weight"].shape[0]))
        hf_cfg = read_config(model_dir)
        self.model, self.report = kc.load_bert(
            tensors, hf_cfg, task="sequence_classification", source=checkpoint, num_labels=num_classes,
            classifier_head="first_token", add_pooling_layer=any(".pooler." in k for k in tensors))
        self.model_type = ckpt.get("model_type", "?")
        self.tokenizer = tokenizers.load(model_dir)
        self.batch_size = batch_size
        self._run = _Runner(self.model, lambda m, i, a, t: jax.nn.sigmoid(m(i, a, t)["logits"])[:, -1])

    def error_probs(self, texts: list[str]) -> np.ndarray:
        out = []
        for s in range(0, len(texts), self.batch_size):
            chunk = list(texts[s:s + self.batch_size])
            enc = self.tokenizer(chunk, truncation=True, padding="max_length", max_length=ECHECKER_MAX_LEN,
                                 return_tensors="np")
            out.append(self._run(_pad_rows(dict(enc), self.batch_size))[:len(chunk)])
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def errors(self, texts: list[str], threshold: float = ERROR_THRESHOLD) -> np.ndarray:
        return (self.error_probs(texts) > threshold).astype(np.float64)


def penalize(scores: np.ndarray, errors: np.ndarray, penalty: float = PENALTY) -> np.ndarray:
    """score_i * (1 - penalty * error_i): FENSE from SB, SPIDEr-FL from SPIDEr."""
    return scores * (1.0 - penalty * errors)
