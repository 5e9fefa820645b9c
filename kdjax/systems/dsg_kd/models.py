"""DSG-KD's models: the frozen teacher, the student classifier (with its projection onto the teacher's width)
and the layer map between them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from kdjax import assets
from kdjax.convert import from_pretrained
from kdjax.data import knowledge
from kdjax.errors import InputError
from kdjax.losses.dsg_kd import span_mean, word_onehot
from kdjax.models.bert import LOGICAL_AXES, BertConfig, BertModel, SequenceClassifier
from kdjax.models.invariants import ConfigError
from kdjax.train.sharding import scoped

# the student's BERT, plus the projection onto the teacher's width
STUDENT_AXES = (scoped("student", LOGICAL_AXES), (r"^hidden_proj\.kernel$", ("embed", None)))


class Student(nnx.Module):
    """The trainable part: the student classifier and, when widths differ, the projection of student
    hidden states onto the teacher's width (the thesis assumes equal widths)."""

    def __init__(self, student: SequenceClassifier, teacher_width: int, rngs: nnx.Rngs):
        self.student = student
        d = student.cfg.hidden_size
        self.hidden_proj = nnx.Linear(d, teacher_width, rngs=rngs) if teacher_width != d else None

    def project(self, x: jax.Array) -> jax.Array:
        return x if self.hidden_proj is None else self.hidden_proj(x)


def bert_init(side: ml_collections.ConfigDict, vocab_size: int, where: str, **extra) -> BertConfig:
    """The random-init BertConfig of `side` (`where` names it in errors: "student" or "teacher")."""
    kw = dict(side.init)
    kw["vocab_size"] = vocab_size
    kw.update(extra)
    try:
        return BertConfig(**kw)
    except ConfigError as e:
        raise ConfigError(f"config {where}.init: {e}") from None


def build_teacher(cfg: ml_collections.ConfigDict, vocab_size: int) -> BertModel:
    t = cfg.teacher
    if t.workdir:
        return trained_encoder(t.workdir)
    if t.hf_dir:
        model = from_pretrained(assets.resolve(t.hf_dir), task="encoder")
        if t.get("num_layers", 0):
            model.keep_layers(int(t.num_layers))
    else:
        model = BertModel(bert_init(t, vocab_size, "teacher"), rngs=nnx.Rngs(cfg.seed + 1))
    return model


def build_student(cfg: ml_collections.ConfigDict, vocab_size: int) -> SequenceClassifier:
    s = cfg.student
    head = dict(num_labels=int(cfg.data.num_labels), classifier_head=s.classifier_head)
    if s.hf_dir:
        model = from_pretrained(assets.resolve(s.hf_dir), task="sequence_classification", seed=cfg.seed, **head)
        if s.get("num_layers", 0):
            model.keep_layers(int(s.num_layers))
        return model
    return SequenceClassifier(bert_init(s, vocab_size, "student", **head), rngs=nnx.Rngs(cfg.seed))


def trained_classifier(workdir: str) -> tuple[SequenceClassifier, object]:
    """The student classifier a DSG-KD run trained in `workdir` (its best parameters if kept, else its newest intact
    checkpoint) and the tokenizer it read with; built from the workdir's own config.json, nothing written."""
    from kdjax.systems.dsg_kd.data import trained_tokenizer
    from kdjax.train.restore import init_params, read_params, workdir_config

    src = workdir_config(workdir)
    if src.get("system") != "dsg_kd":
        raise InputError(f"{workdir}: a {src.get('system')!r} run, not a DSG-KD one")
    tok = trained_tokenizer(src.student, "student", workdir)
    model = build_student(src, len(tok))
    params, source = read_params(workdir)
    init_params(model, nnx.Param, params, source, prefix="student.")
    return model, tok


def trained_encoder(workdir: str) -> BertModel:
    """The encoder of `trained_classifier(workdir)`: a teacher kdjax fine-tuned on the domain."""
    try:
        return trained_classifier(workdir)[0].encoder
    except InputError as e:
        raise InputError(f"teacher.workdir={e}") from None


def word_embeddings(model: BertModel, tok, texts: list[str], finder, max_length: int, project=None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Last-layer embedding of every whitespace word (mean of its subwords), and whether it is a
    domain word; words cut off by truncation are dropped."""
    embs, dom = [], []
    for text in texts:
        spans = knowledge.all_words(text)[:128]
        domain = set(finder(text))
        enc = knowledge.encode(tok, text, spans, max_length, 128)
        out = model(jnp.asarray(enc["input_ids"][None]), jnp.asarray(enc["attention_mask"][None]),
                    jnp.asarray(enc["token_type_ids"][None]))
        pooled, counts = span_mean(out["last_hidden_state"], word_onehot(jnp.asarray(enc["word_ids"][None]), 128))
        pooled = project(pooled) if project is not None else pooled
        keep = np.asarray(counts[0]) > 0
        embs.append(np.asarray(pooled[0])[keep])
        dom.append(np.array([sp in domain for sp in spans] + [False] * (128 - len(spans)))[keep])
    return np.concatenate(embs), np.concatenate(dom)
