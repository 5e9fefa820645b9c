"""The captioning suite's interfaces: the trainer's evaluation hook, the CLI, the HF evaluate modules."""

import json

import evaluate as hf_evaluate
import grain
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from kdjax.data import caption_corpus
from kdjax.metrics import captioning
from kdjax.metrics import hf_evaluate as hfe
from kdjax.train.task import Task
from kdjax.train.trainer import Trainer
import kdjax.evaluate as cli

CHEAP = ("bleu_1", "bleu_4", "rouge_l", "cider_d")


def _toy_captioner(tmp_path):
    """A 'captioner' that learns which of 3 fixed captions goes with a one-hot input: enough to see
    the trainer's evaluation decode tokens and score them with the suite."""
    captions = ["a dog barks", "a bell rings loudly", "water is running"]
    vocab = sorted({w for c in captions for w in c.split()}) + ["<pad>"]
    table = np.full((3, 4), len(vocab) - 1, np.int32)
    for i, c in enumerate(captions):
        table[i, :len(c.split())] = [vocab.index(w) for w in c.split()]
    refs = [[captions[i % 3], captions[i % 3] + " twice"] for i in range(12)]
    examples = [{"x": np.eye(3, dtype=np.float32)[i % 3], "y": np.int32(i % 3), "index": np.int32(i)}
                for i in range(12)]
    model = nnx.Linear(3, 3, rngs=nnx.Rngs(0))

    def loss_fn(m, teacher, batch, rngs):
        logits = m(batch["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), {}

    def predict_fn(m, batch):
        return {"tokens": jnp.asarray(table)[jnp.argmax(m(batch["x"]), -1)], "index": batch["index"]}

    decode = lambda toks: [" ".join(vocab[t] for t in row if t != len(vocab) - 1) for row in toks]
    info: dict = {}
    hook = captioning.CaptionTaskEvaluator({"dev": refs}, decode, metrics=CHEAP + ("spice",),
                                           tokenization="loae", info=info)
    task = Task(model=model, loss_fn=loss_fn, predict_fn=predict_fn,
                train_data=grain.MapDataset.source(examples), eval_data={"dev": grain.MapDataset.source(examples)},
                evaluate=hook, info=info)
    cfg = ml_collections.ConfigDict({
        "seed": 0, "mesh": {"data": -1, "fsdp": 1, "tensor": 1},
        "optim": {"lr": 0.5, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "clip_norm": 0.0,
                  "warmup_ratio": 0.0, "decay": "constant", "end_lr": 0.0, "groups": {}},
        "train": {"batch_size": 4, "epochs": 0, "steps": 30, "log_every": 10, "checkpoint_every": 0,
                  "keep_checkpoints": 1, "early_stopping": {"metric": "", "mode": "max", "patience": 0}},
        "eval": {"every": 30, "every_epochs": 0, "batch_size": 4}})
    return Trainer(cfg, task, str(tmp_path)), hook, refs, captions


def test_trainer_evaluation_runs_the_suite(tmp_path):
    trainer, hook, refs, captions = _toy_captioner(tmp_path)
    result = trainer.run()
    dev = result.metrics["dev"]
    assert hook.last_predictions["dev"] == [captions[i % 3] for i in range(12)]  # it learned the mapping
    direct = captioning.evaluate(hook.last_predictions["dev"], refs, metrics=CHEAP, tokenization="loae")
    for k in CHEAP:
        assert dev[k] == pytest.approx(direct.scores[k] / 100, abs=1e-12)
    report = json.load(open(result.report_path))
    assert "stanford-corenlp-3.6.0.jar" in report["info"]["caption_metrics/dev"]["unavailable"]["spice"]
    assert report["info"]["caption_metrics/dev"]["tokenization"] == "loae"


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cli_prints_the_thesis_columns_and_writes_json(tmp_path, capsys):
    preds, refs = caption_corpus.build(40, (1, 5), seed=4)
    _write_jsonl(tmp_path / "p.jsonl", [{"id": f"clip{i}", "caption": p} for i, p in enumerate(preds)])
    # references one line per caption, in another order: joined on id
    _write_jsonl(tmp_path / "r.jsonl", [{"id": f"clip{i}", "caption": r} for i in reversed(range(40)) for r in refs[i]])
    out = tmp_path / "scores.json"
    cli.main(["--predictions", str(tmp_path / "p.jsonl"), "--references", str(tmp_path / "r.jsonl"),
              "--out", str(out), "--tokenization", "loae", "--metrics", ",".join(CHEAP + ("spice", "spider")),
              "--per_item"])
    printed = capsys.readouterr().out
    for col in ("BL-1", "BL-4", "RG-L", "CD", "SP", "SD"):
        assert col in printed
    saved = json.load(open(out))
    direct = captioning.evaluate(preds, [list(reversed(r)) for r in refs], metrics=CHEAP, tokenization="loae")
    for k in CHEAP:
        assert saved["scores"][k] == pytest.approx(direct.scores[k], abs=1e-9)
    assert saved["tokenization"] == "loae" and set(saved["unavailable"]) == {"spice", "spider"}
    assert saved["ids"][0] == "clip0" and len(saved["per_item"]["cider_d"]) == 40


def test_cli_names_bad_rows(tmp_path):
    _write_jsonl(tmp_path / "p.jsonl", [{"id": 1, "caption": "a dog"}, {"id": 2, "caption": "a cat"}])
    _write_jsonl(tmp_path / "r.jsonl", [{"id": 1, "captions": ["a dog barks"]}])
    args = ["--predictions", str(tmp_path / "p.jsonl"), "--references", str(tmp_path / "r.jsonl"),
            "--tokenization", "loae"]
    with pytest.raises(ValueError, match="1 predictions have no references .*ids 2"):
        cli.main(args)
    (tmp_path / "r.jsonl").write_text('{"id": 1, "captions": ["a"]}\n{"id": 2, "captions": [}\n')
    with pytest.raises(ValueError, match="r.jsonl:2: invalid JSON"):
        cli.main(args)
    _write_jsonl(tmp_path / "r.jsonl", [{"id": 1, "captions": ["a"]}, {"id": 2, "refs": ["b"]}])
    with pytest.raises(ValueError, match="r.jsonl:2: none of the keys"):
        cli.main(args)


@pytest.mark.parametrize("family,metrics", [("caption_coco", ("bleu_1", "bleu_4", "rouge_l", "meteor", "cider_d")),
                                            ("caption_spice", ("spice", "spider", "spider_fl")),
                                            ("caption_fense", ("sbert",))])
def test_hf_evaluate_modules_load_by_path(family, metrics, minilm_dir):
    preds, refs = caption_corpus.build(20, (1, 3), seed=5)
    module = hf_evaluate.load(hfe.path(family))
    out = module.compute(predictions=preds, references=refs, tokenization="loae", sbert_model=minilm_dir)
    direct = captioning.evaluate(preds, refs, metrics=module.METRICS, tokenization="loae",
                                 config=captioning.MetricConfig(sbert_model=minilm_dir))
    assert out["tokenization"] == "loae" and out["unavailable"] == direct.unavailable
    for k in metrics:
        if k in direct.scores:
            assert out[k] == pytest.approx(direct.scores[k], abs=1e-9)
        else:
            assert k in out["unavailable"] and k not in out
    assert set(metrics) <= set(out) | set(out["unavailable"])
