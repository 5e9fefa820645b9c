"""Sentence-BERT and FENSE on kdjax's BERT against sentence-transformers and a PyTorch error detector."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
import transformers

from kdjax.data import caption_corpus
from kdjax.metrics import captioning
from kdjax.metrics.captioning import fense


@pytest.fixture(scope="module")
def st_model(minilm_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_dir, device="cpu")


def test_sentence_embeddings_match_sentence_transformers(minilm_dir, st_model, capsys):
    texts = caption_corpus.texts()[:90] + ["", "a", "Dog!!", "word " * 400]  # the last one is truncated
    ours = fense.SentenceEmbedder(minilm_dir, batch_size=32).encode(texts)
    theirs = st_model.encode(texts, batch_size=32)
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    with capsys.disabled():
        print(f"\nSBERT parity on all-MiniLM-L6-v2: min cosine {cos.min():.9f}, "
              f"max |diff| {np.abs(ours - theirs).max():.2e}")
    assert cos.min() >= 1 - 1e-5
    assert np.abs(ours - theirs).max() < 1e-4  # MiniLM ends with Normalize: unit vectors both sides


class _TorchEchecker(torch.nn.Module):
    """FENSE's BERTFlatClassifier layout: `encoder` (BertModel) and `clf` on the first token."""

    def __init__(self, cfg):
        super().__init__()
        self.encoder = transformers.BertModel(cfg)
        self.dropout = torch.nn.Dropout(cfg.hidden_dropout_prob)
        self.clf = torch.nn.Linear(cfg.hidden_size, 5)

    def forward(self, input_ids, attention_mask, token_type_ids):
        h = self.encoder(input_ids, attention_mask, token_type_ids).last_hidden_state[:, 0]
        return self.clf(self.dropout(h))


@pytest.fixture(scope="module")
def echecker(minilm_dir, tmp_path_factory):
    """A random small error detector saved the way FENSE saves its released checkpoints."""
    root = tmp_path_factory.mktemp("echecker")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64)
    model = _TorchEchecker(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ckpt = root / "echecker_test.ckpt"
    torch.save({"model_type": "bert-tiny-test", "num_classes": 5, "state_dict": model.state_dict()}, ckpt)
    model_dir = root / "bert-tiny-test"
    model_dir.mkdir()
    cfg.to_json_file(model_dir / "config.json")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(minilm_dir, name), model_dir / name)
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    return model, tok, str(ckpt), str(model_dir)


def _torch_probs(model, tok, texts):
    enc = tok(texts, truncation=True, padding="max_length", max_length=64, return_tensors="pt")
    with torch.no_grad():
        return torch.sigmoid(model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]))[:, -1].numpy()


def test_echecker_conversion_matches_pytorch(echecker):
    model, tok, ckpt, model_dir = echecker
    texts = caption_corpus.texts()[:70] + ["", "a a a a a a", "word " * 100]
    ours = fense.ErrorChecker(ckpt, model_dir, batch_size=32).error_probs(texts)
    np.testing.assert_allclose(ours, _torch_probs(model, tok, texts), atol=1e-5)


def test_fense_and_fer_equal_an_independent_computation(echecker, st_model, minilm_dir):
    model, tok, ckpt, model_dir = echecker
    preds, refs = caption_corpus.build(60, (1, 5), seed=3)
    probs = np.sort(_torch_probs(model, tok, preds))
    gap = int(np.argmax(np.diff(probs[15:45]))) + 15  # a threshold far from every probability, mid-range
    threshold = float((probs[gap] + probs[gap + 1]) / 2)
    cfg = captioning.MetricConfig(sbert_model=minilm_dir, echecker=ckpt, echecker_model_dir=model_dir,
                                  error_threshold=threshold)
    res = captioning.evaluate(preds, refs, metrics=("sbert", "fense", "fer"), tokenization="loae",
                              per_item=True, config=cfg)
    # reference: sentence-transformers embeddings (normalised, as FENSE encodes), the torch detector
    emb_c = st_model.encode(preds, normalize_embeddings=True)
    sb = np.array([np.mean(st_model.encode(rs, normalize_embeddings=True) @ emb_c[i]) for i, rs in enumerate(refs)])
    err = (_torch_probs(model, tok, preds) > threshold).astype(float)
    assert 0 < err.sum() < len(err)
    np.testing.assert_allclose(res.per_item["sbert"] / 100, sb, atol=1e-5)
    np.testing.assert_allclose(res.per_item["fer"] / 100, err)
    np.testing.assert_allclose(res.per_item["fense"] / 100, sb * (1 - 0.9 * err), atol=1e-5)
    assert res.scores["fense"] == pytest.approx(100 * np.mean(sb * (1 - 0.9 * err)), abs=1e-3)
    assert not res.notes  # a model was given: no fallback note
    assert res.models["echecker"].endswith("(bert-tiny-test)")


def test_without_echecker_sb_is_reported_and_fense_is_not(minilm_dir, monkeypatch):
    for var in ("KDJAX_ECHECKER", "KDJAX_ECHECKER_MODEL_DIR", "KDJAX_SBERT_MODEL"):
        monkeypatch.delenv(var, raising=False)
    res = captioning.evaluate(["a dog barks"], [["a dog is barking"]], metrics=("sbert", "fense", "spider_fl"),
                              tokenization="loae")
    assert set(res.scores) == {"sbert"} and 50 < res.scores["sbert"] <= 100
    assert "echecker" in res.unavailable["fense"] and "spider_fl" in res.unavailable
    assert any("all-MiniLM-L6-v2" in n for n in res.notes)  # FENSE's TinyBERT was not given: said so


def test_sentence_transformers_dir_errors(tmp_path):
    from kdjax.convert import sentence_transformers

    with pytest.raises(FileNotFoundError, match="modules.json"):
        sentence_transformers.from_pretrained(str(tmp_path))
    (tmp_path / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "",
                                                        "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(ValueError, match="Transformer -> Pooling"):
        sentence_transformers.from_pretrained(str(tmp_path))
