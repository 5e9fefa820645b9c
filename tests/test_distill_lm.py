"""distill_lm (issue 26): packing, the loss's composition (CE on next tokens within each packed sequence + alpha x
token-level KD, whose gradient reaches the student), and the tiny config's run end to end with held-out perplexity."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import distill_lm as config
from kdjax.data.packing import pack
from kdjax.losses.classification import cross_entropy
from kdjax.losses.token_kd import segment_mask, token_kd
from kdjax.systems import registry
from kdjax.systems.distill_lm import data as data_lib
from kdjax.systems.distill_lm.models import Student, llama
from kdjax.systems.distill_lm.task import make_loss, predict_fn
from tests import runs


def test_packing_keeps_every_token_in_order_and_marks_segments():
    seqs = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14, 15, 16], [], [17]]
    out = pack(seqs, 4)
    ids, seg = out["input_ids"], out["segment_ids"]
    assert ids.tolist() == [[5, 6, 7, 0], [8, 9, 0, 0], [10, 11, 12, 13], [14, 15, 16, 17]]
    assert seg.tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 2]]  # a long one cut in pieces
    with pytest.raises(ValueError, match="2 or more"):
        pack(seqs, 1)


def test_loss_is_next_token_ce_plus_alpha_kd_and_kd_reaches_the_student():
    cfg = config.get_config("tiny")
    vocab = 50
    student = Student(llama(cfg.student.random, vocab, 0))
    teacher = llama(cfg.teacher.random, vocab, 1)
    rows = pack([list(np.random.default_rng(i).integers(3, vocab, n)) for i, n in enumerate((9, 4, 12, 6))], 16)
    batch = {k: jnp.asarray(v) for k, v in rows.items()}
    ids, seg = batch["input_ids"], batch["segment_ids"]
    cfg.kd.alpha = 0.7
    loss, terms = make_loss(cfg.kd)(student, teacher, batch, nnx.Rngs(dropout=0))
    s, t = student.lm(ids, segment_ids=seg)["logits"], teacher(ids, segment_ids=seg)["logits"]
    targets = jnp.concatenate([ids[:, 1:], jnp.zeros_like(ids[:, :1])], 1)
    same_next = (seg > 0) & (jnp.concatenate([seg[:, 1:], jnp.zeros_like(seg[:, :1])], 1) == seg)
    assert float(terms["tokens"]) == float(same_next.sum()) == 9 + 4 + 12 + 6 - 4
    assert float(terms["ce"]) == pytest.approx(float(cross_entropy(s, targets, same_next)), rel=1e-5)
    assert float(terms["kd"]) == pytest.approx(float(token_kd(s, t, same_next)), rel=1e-5)
    assert float(loss) == pytest.approx(float(terms["ce"] + 0.7 * terms["kd"]), rel=1e-6)

    def grad(alpha):
        cfg.kd.alpha = alpha
        g, _ = nnx.grad(lambda m: make_loss(cfg.kd)(m, teacher, batch, nnx.Rngs(dropout=0)), has_aux=True)(student)
        return np.concatenate([np.ravel(x) for x in jax.tree.leaves(nnx.state(g, nnx.Param))])

    assert np.abs(grad(0.7) - grad(0.0)).max() > 1e-4  # the KD term moves the student
    pred = predict_fn(student, batch)
    assert float(pred["tokens"].sum()) == float(same_next.sum())


def test_hidden_state_mse_over_mapped_layers_through_learned_projections():
    """kd.hidden: the mean over layer pairs of the MSE between the student's hidden states, projected onto the
    teacher's width, and the teacher's, over every real token (numpy here); its gradient reaches the projections and
    the student's layers, not the teacher."""
    cfg = config.get_config("tiny")
    vocab = 50
    cfg.kd.alpha, cfg.kd.hidden.weight, cfg.kd.hidden.layer_map = 0.0, 2.0, "0:0,1:2"
    teacher = llama(cfg.teacher.random, vocab, 1)  # 2 layers, 64 wide; the student: 1 layer, 32 wide
    student = Student(llama(cfg.student.random, vocab, 0), 64, 2, rngs=nnx.Rngs(2))
    rows = pack([list(np.random.default_rng(i).integers(3, vocab, n)) for i, n in enumerate((9, 4, 12))], 16)
    batch = {k: jnp.asarray(v) for k, v in rows.items()}
    ids, seg = batch["input_ids"], batch["segment_ids"]
    loss, terms = make_loss(cfg.kd)(student, teacher, batch, nnx.Rngs(dropout=0))
    hs = student.lm(ids, segment_ids=seg, output_hidden_states=True)["hidden_states"]
    ht = teacher(ids, segment_ids=seg, output_hidden_states=True)["hidden_states"]
    real = np.asarray(seg) > 0
    want = []
    for i, (a, b) in enumerate([(0, 0), (1, 2)]):
        w, bias = np.asarray(student.hidden_proj[i].kernel[...]), np.asarray(student.hidden_proj[i].bias[...])
        d = (np.asarray(hs[a]) @ w + bias - np.asarray(ht[b])) ** 2
        want.append(d.mean(-1)[real].mean())
    assert float(terms["hidden"]) == pytest.approx(float(np.mean(want)), rel=1e-5)
    assert float(loss) == pytest.approx(float(terms["ce"] + 2.0 * terms["hidden"]), rel=1e-6) and "kd" not in terms
    g, _ = nnx.grad(lambda m: make_loss(cfg.kd)(m, teacher, batch, nnx.Rngs(dropout=0)), has_aux=True)(student)
    assert float(jnp.abs(g.hidden_proj[1].kernel[...]).max()) > 0
    cfg.kd.hidden.weight = 0.0
    g0, _ = nnx.grad(lambda m: make_loss(cfg.kd)(m, teacher, batch, nnx.Rngs(dropout=0)), has_aux=True)(student)
    layer = lambda gr: np.asarray(gr.lm.model.layers[0].mlp.down_proj.kernel[...])  # noqa: E731
    assert np.abs(layer(g) - layer(g0)).max() > 1e-6


@pytest.mark.parametrize("source", ["online", "topk"])
def test_chunked_loss_is_the_dense_loss_without_the_vocabulary_sized_logits(source):
    """kd.chunk_tokens > 0: the student's (and the online teacher's) final hidden states and head matrices go to the
    losses, which form logits a chunk at a time: same loss and gradients as the dense path, for a tied and an untied
    head."""
    cfg = config.get_config("tiny")
    vocab, k = 50, 8
    student = Student(llama({**cfg.student.random, "tie_word_embeddings": False}, vocab, 0))
    teacher = llama(cfg.teacher.random, vocab, 1)
    rows = pack([list(np.random.default_rng(i).integers(3, vocab, n)) for i, n in enumerate((9, 4, 12, 6))], 16)
    batch = {key: jnp.asarray(v) for key, v in rows.items()}
    if source == "topk":
        from kdjax.teachers import topk

        ids, seg = batch["input_ids"], batch["segment_ids"]
        v, x, r = topk.top_k(teacher(ids, segment_ids=seg)["logits"], k)
        batch.update({topk.LOGPROBS: v.astype(jnp.float16), topk.IDS: x, topk.REST: r.astype(jnp.float16),
                      "topk_mask": jnp.ones(ids.shape, jnp.float32)})
    cfg.kd.alpha, cfg.kd.kind = 0.5, "jsd"

    def value_and_grad(chunk):
        cfg.kd.chunk_tokens = chunk
        fn = lambda m: make_loss(cfg.kd)(m, teacher, batch, nnx.Rngs(dropout=0))  # noqa: E731
        (loss, terms), g = nnx.value_and_grad(fn, has_aux=True)(student)
        return float(loss), float(terms["kd"]), [np.asarray(a) for a in jax.tree.leaves(nnx.state(g, nnx.Param))]

    dense, chunked = value_and_grad(0), value_and_grad(5)
    assert chunked[0] == pytest.approx(dense[0], rel=1e-5) and chunked[1] == pytest.approx(dense[1], rel=1e-5)
    assert dense[1] > 0
    for a, b in zip(dense[2], chunked[2]):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


def test_tiny_run_resumes_exactly_reports_held_out_perplexity_and_exports_to_transformers(tmp_path):
    """Every term at once (online KD, hidden-state MSE, on-policy samples): it learns; cut back to its step-10
    checkpoint and resumed, it ends with the same parameters (the samples' random stream included); perplexity on
    the held-out splits; the export is the student in transformers."""
    import shutil

    wd = str(tmp_path / "run")
    flags = ("--config.train.steps=20", "--config.train.checkpoint_every=10", "--config.eval.every=0",
             "--config.kd.hidden.weight=0.5", "--config.kd.on_policy.fraction=0.5")
    runs.run("configs/distill_lm.py:tiny", wd, *flags)
    first = runs.final_params(wd)
    shutil.rmtree(os.path.join(wd, "checkpoints", "20"))
    p = runs.run("configs/distill_lm.py:tiny", wd, *flags)
    assert "resumed from step 10" in p.stderr
    again = runs.final_params(wd)
    assert int(first["__step__"]) == int(again["__step__"]) == 20 and first.keys() == again.keys()
    for k in first:
        np.testing.assert_array_equal(first[k], again[k], err_msg=k)
    report = json.load(open(os.path.join(wd, "report.json")))
    rows = [json.loads(x) for x in open(os.path.join(wd, "metrics.jsonl"))]
    train = [r for r in rows if r["split"] == "train"]
    assert train[-1]["ce"] < train[0]["ce"] and "kd" in train[0]  # it learns, with the KD terms on
    assert train[-1]["hidden"] < train[0]["hidden"]
    assert all(r["kd_on_policy"] > 0 and r["sampled_tokens"] > 0 for r in train)  # GKD's term, in the jitted step
    for split in ("dev", "test"):
        m = report["metrics"][split]
        assert m["perplexity"] == pytest.approx(np.exp(m["nll"]), rel=1e-6) and 1 < m["perplexity"] < report[
            "info"]["vocab"]
    info = report["info"]
    assert info["teacher"]["kind"] == "online" and info["target_tokens"]["train"] > 1000
    assert info["kd"]["hidden_pairs"] == [[0, 0], [1, 2]] and info["kd"]["hidden_projection"]
    assert sum(info["documents"].values()) == len(data_lib.documents(config.get_config("tiny").data))

    # --mode=export: the student in transformers gives kdjax's logits
    import torch
    import transformers

    from kdjax.systems.distill_lm.export import trained_student

    out = str(tmp_path / "export")
    runs.run_mode("export", wd, f"--out={out}")
    ours, tok = trained_student(wd)
    ids = np.asarray([tok("a red apple on a table", add_special_tokens=False)["input_ids"]])
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        want = theirs(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours(jnp.asarray(ids))["logits"]), want, atol=1e-4)
    assert transformers.AutoTokenizer.from_pretrained(out)("a red apple")["input_ids"][-3:] == tok(
        "a red apple", add_special_tokens=False)["input_ids"]


def test_config_is_checked_when_read():
    cfg = config.get_config("tiny")
    cfg.data.fractions = (0.5, 0.5, 0.5)
    cfg.kd.kind = "kl"
    cfg.student.from_teacher_layers = 2
    cfg.student.tokenizer = "wordpiece"  # another tokenizer with the online teacher
    cfg.kd.hidden.weight, cfg.kd.hidden.layer_map = 1.0, "0-1"
    with pytest.raises(Exception) as e:
        registry.validate(cfg)
    for key in ("data.fractions", "kd.kind", "student.from_teacher_layers", "student.tokenizer", "kd.hidden.weight",
                "kd.hidden.layer_map"):
        assert key in str(e.value)
    cfg = config.get_config("tiny")
    cfg.kd.source, cfg.kd.temperature = "topk", 2.0
    with pytest.raises(Exception, match="kd.rest"):
        registry.validate(cfg)
    cfg = config.get_config("tiny")
    cfg.kd.source, cfg.kd.kind = "sampled", "reverse_kl"  # draws estimate the forward KL only
    with pytest.raises(Exception, match=r"kd.source: 'sampled' estimates the forward KL"):
        registry.validate(cfg)
    for source, head, why in (("topk", 4, "set kd.source='sampled'"), ("sampled", 64, "leaves no draws")):
        cfg = config.get_config("tiny")
        cfg.kd.source, cfg.kd.sampled_head = source, head
        with pytest.raises(Exception, match=f"kd.sampled_head: .*{why}"):
            registry.validate(cfg)


@pytest.mark.parametrize("head", [0, 3])
def test_a_cache_of_draws_holds_the_teachers_frequencies_at_the_same_bytes(head, tmp_path):
    """kd.source='sampled': per position, the distinct tokens of k draws from the teacher and their frequencies (sum
    1, nothing outside), in the top-k cache's form and bytes; with kd.sampled_head the first entries are the teacher's
    most probable tokens and the draws share the mass outside them; the same documents draw the same tokens when the
    cache is written again; the step reads it as it reads the top-k."""
    from kdjax.systems.distill_lm.task import build
    from kdjax.teachers import topk

    cfg = config.get_config("tiny")
    cfg.kd.source, cfg.kd.top_k, cfg.kd.sampled_head = "sampled", 8, head
    task = build(cfg, str(tmp_path / "a"))
    t = task.info["teacher"]
    assert t["kind"] == "cached" and t["selection"] == "sampled" and t["bytes_per_token"] == topk.bytes_per_token(8)
    assert t["cache"].endswith("teacher_sampled")
    again = build(cfg, str(tmp_path / "b"))
    for r in (0, len(task.train_data) - 1):
        row = task.train_data[r]
        keep = row["topk_mask"] > 0
        ids, freq = row[topk.IDS][keep], np.exp(row[topk.LOGPROBS][keep].astype(np.float64))
        present = ids >= 0
        assert np.allclose(np.where(present, freq, 0).sum(-1), 1.0, atol=2e-3)  # float16 frequencies
        assert present[:, :max(head, 1)].all() and all(len(set(i[p])) == p.sum() for i, p in zip(ids, present))
        tail = 1 - freq[:, :head].sum(-1, keepdims=True)  # the mass the draws share
        counts = np.where(present, freq / tail * (8 - head), 0)[:, head:]
        assert np.allclose(counts, np.round(counts), atol=2e-2)  # whole numbers of the 8 - head draws
        assert np.all(row[topk.REST][keep].astype(np.float32) < -80)  # no mass outside the draws
        assert np.array_equal(row[topk.IDS], again.train_data[r][topk.IDS])
    batch = {k: jnp.asarray(v[None]) for k, v in task.train_data[0].items()}
    _, terms = make_loss(cfg.kd)(task.model, None, batch, nnx.Rngs(dropout=0))
    assert np.isfinite(float(terms["kd"])) and float(terms["kd"]) > 0


def test_cached_top_k_is_the_online_teachers_at_the_same_tokens(tmp_path):
    """Shared tokenizer, k = the whole vocabulary: each packed training row carries the teacher's log-probabilities
    of every token at every position that has a next token, as the online teacher computes them on that row (to
    float16), and the cached loss equals the online dense one."""
    from kdjax.systems.distill_lm.task import build
    from kdjax.teachers import topk

    cfg = config.get_config("tiny")
    vocab = len(data_lib.tokenizer(cfg, data_lib.split(data_lib.documents(cfg.data), tuple(cfg.data.fractions),
                                                       0)["train"], str(tmp_path / "online")))
    online = build(cfg, str(tmp_path / "online"))
    cfg.kd.source, cfg.kd.top_k = "topk", vocab
    cached = build(cfg, str(tmp_path / "cached"))
    assert cached.teacher is None and cached.info["teacher"]["kind"] == "cached"
    assert cached.info["teacher"]["bytes_per_token"] == 6 * vocab + 2
    loss = make_loss(cfg.kd)
    for r in (0, 5, len(cached.train_data) - 1):
        row = cached.train_data[r]
        assert np.array_equal(row["input_ids"], online.train_data[r]["input_ids"])
        batch = {k: jnp.asarray(v[None]) for k, v in row.items()}
        ids, seg = batch["input_ids"], batch["segment_ids"]
        np.testing.assert_array_equal(row["topk_mask"], np.asarray(segment_mask(seg))[0])
        want = jax.nn.log_softmax(online.teacher(ids, segment_ids=seg)["logits"], -1)[0]
        keep = row["topk_mask"] > 0
        got = np.full((len(keep), vocab), np.nan, np.float32)
        np.put_along_axis(got, np.maximum(row[topk.IDS], 0), row[topk.LOGPROBS].astype(np.float32), -1)
        np.testing.assert_allclose(got[keep], np.asarray(want)[keep], rtol=1e-3, atol=1e-3)
        student_only = {k: batch[k] for k in ("input_ids", "segment_ids")}
        on, t_on = make_loss(config.get_config("tiny").kd)(online.model, online.teacher, student_only,
                                                           nnx.Rngs(dropout=0))
        off, t_off = loss(online.model, None, batch, nnx.Rngs(dropout=0))
        assert float(t_off["kd"]) == pytest.approx(float(t_on["kd"]), rel=2e-3)
        assert float(t_off["ce"]) == float(t_on["ce"])


@pytest.mark.slow
def test_student_with_another_real_tokenizer_learns_from_the_moved_top_k(tmp_path, minilm_dir):
    """SmolLM2-135M-Instruct (real weights, byte-level BPE) as the cached teacher of a random student with MiniLM's
    uncased WordPiece: most of the student's target tokens get a teacher distribution, the KD term reaches the student
    and falls, and the export carries the student's tokenizer."""
    import transformers

    from configs.multi2cap import SMOLLM2

    wd = str(tmp_path / "cross")
    over = ("--config.kd.source=topk", f"--config.student.tokenizer={minilm_dir}",
            f"--config.teacher.checkpoint={SMOLLM2}",
            "--config.kd.top_k=16", "--config.eval.every=0", "--config.data.fractions=(0.2,0.4,0.4)")
    # a fifth of the documents to train on: the real teacher's cache is the run's cost (optimised code computes it)
    runs.run("configs/distill_lm.py:tiny", wd, *over, "--config.train.steps=30", optimize=True)
    report = json.load(open(os.path.join(wd, "report.json")))
    info = report["info"]
    assert info["teacher"]["kind"] == "cached" and not info["teacher"]["same_tokenizer"]
    assert info["teacher"]["bytes_per_token"] == 16 * 6 + 2 and info["vocab"] == 30522
    assert 0.8 < info["kd"]["aligned_tokens"] / info["target_tokens"]["train"] <= 1.0
    train = runs.train_rows(wd)
    assert train[-1]["kd"] < train[0]["kd"] and all(0 < r["kd_tokens"] <= r["tokens"] for r in train)

    out = str(tmp_path / "export")
    runs.run_mode("export", wd, f"--out={out}")
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert len(tok) == 30522 and tok.convert_ids_to_tokens(tok("A red Apple")["input_ids"]) == [
        "[CLS]", "a", "red", "apple", "[SEP]"]


def test_on_policy_kd_scores_the_students_own_samples():
    """GKD (kd.on_policy): prompts are each row's first sequence's first tokens, left-padded; the student's samples
    (greedy as the temperature goes to 0, varied at 1) are scored by both models at their real positions; the loss
    mixes the corpus KD and the KD on the samples (1 - lambda, lambda) and its gradient flows through the student's
    scores, not through sampling."""
    from kdjax.models import generate
    from kdjax.systems.distill_lm import on_policy

    cfg = config.get_config("tiny")
    vocab = 50
    student = Student(llama({**cfg.student.random, "eos_token_id": 2}, vocab, 0))
    teacher = llama(cfg.teacher.random, vocab, 1)
    rows = pack([[5, 6, 7], [8, 9, 10, 11, 12], list(range(13, 30)), [30, 31, 32, 33, 34, 35]], 12)
    batch = {k: jnp.asarray(v) for k, v in rows.items()}
    ids, seg = batch["input_ids"], batch["segment_ids"]
    prompt, pmask = on_policy.prompts(ids, seg, 4)
    assert np.asarray(prompt).tolist()[:2] == [[0, 5, 6, 7], [13, 14, 15, 16]]  # row 0's first sequence has 3
    assert np.asarray(pmask).tolist()[0] == [0, 1, 1, 1]

    kw = dict(prompt_tokens=4, max_new_tokens=6, eos_token_id=2)
    cold = on_policy.sample(student.lm, ids, seg, jax.random.key(0), temperature=1e-4, **kw)
    want, _ = generate.greedy(student.lm, student.lm.embed(prompt), pmask,
                              generate.GenerateConfig(max_new_tokens=6, eos_token_id=2))
    np.testing.assert_array_equal(np.asarray(cold[0][:, 4:]), np.asarray(want))
    a, b = (on_policy.sample(student.lm, ids, seg, jax.random.key(k), temperature=1.0, **kw)[0] for k in (1, 2))
    assert not np.array_equal(np.asarray(a), np.asarray(b))

    # scoring a left-padded sequence gives the logits of its real tokens alone
    seq, attn, counted = on_policy.sample(student.lm, ids, seg, jax.random.key(3), temperature=1.0, **kw)
    logits, _, predicts = on_policy.score(student.lm, seq, attn, counted)
    real = np.asarray(seq[0])[np.asarray(attn[0]) > 0]
    alone = student.lm(jnp.asarray(real[None]))["logits"][0]
    np.testing.assert_allclose(np.asarray(logits[0])[np.asarray(attn[0]) > 0], np.asarray(alone), atol=1e-5)
    assert np.asarray(predicts).sum() == np.asarray(counted).sum() > 0

    cfg.kd.alpha, cfg.kd.on_policy.fraction = 1.0, 0.25
    cfg.kd.on_policy.prompt_tokens, cfg.kd.on_policy.max_new_tokens = 4, 6
    cfg.kd.on_policy.temperature = 1e-4  # the greedy samples: what the loss drew is known here
    loss, terms = make_loss(cfg.kd)(student, teacher, batch, nnx.Rngs(dropout=7))
    assert float(loss) == pytest.approx(float(terms["ce"] + 0.75 * terms["kd"] + 0.25 * terms["kd_on_policy"]),
                                        rel=1e-6)
    seq, attn, counted = cold
    s_logits, _, predicts = on_policy.score(student.lm, seq, attn, counted)
    t_logits, _, _ = on_policy.score(teacher, seq, attn, counted)
    assert float(terms["kd_on_policy"]) == pytest.approx(float(token_kd(s_logits, t_logits, predicts)), rel=1e-5)

    cfg.kd.on_policy.temperature = 1.0

    def grad(fraction):
        cfg.kd.on_policy.fraction = fraction
        g, _ = nnx.grad(lambda m: make_loss(cfg.kd)(m, teacher, batch, nnx.Rngs(dropout=7)), has_aux=True)(student)
        return np.concatenate([np.ravel(x) for x in jax.tree.leaves(nnx.state(g, nnx.Param))])

    g = grad(1.0)
    assert np.all(np.isfinite(g)) and np.abs(g - grad(0.0)).max() > 1e-5


def test_sequence_level_kd_adds_the_teachers_continuations(tmp_path):
    """kd.sequence: each training document's opening continued by the teacher (greedy here, as generate.greedy does
    on the opening alone, left-padding notwithstanding) joins the training documents as text; cached, so a second
    build reads it back."""
    from kdjax.models import generate
    from kdjax.systems.distill_lm import teacher as teacher_lib
    from kdjax.systems.distill_lm.models import build_teacher
    from kdjax.systems.distill_lm.task import build

    cfg = config.get_config("tiny")
    cfg.kd.alpha = 0.0  # the student learns from the teacher's text only
    cfg.kd.sequence.enabled, cfg.kd.sequence.prompt_tokens, cfg.kd.sequence.max_new_tokens = True, 4, 6
    alone = build(config.get_config("tiny"), str(tmp_path / "alone"))
    task = build(cfg, str(tmp_path / "seq"))
    n = alone.info["documents"]["train"]
    seq = task.info["kd"]["sequence"]
    assert seq["documents"] == n and seq["written"]["computed"] == n
    assert task.info["documents"]["train"] == 2 * n and len(task.train_data) > len(alone.train_data)

    texts = data_lib.split(data_lib.documents(cfg.data), tuple(cfg.data.fractions), 0)["train"]
    tok = data_lib.tokenizer(cfg, texts, str(tmp_path / "seq"))
    teacher = build_teacher(cfg, tok)
    got, _ = teacher_lib.generations(cfg, lambda: teacher, tok, texts, str(tmp_path / "seq" / "teacher_generations"))
    for i in (0, 7):
        opening = teacher_lib.encode(tok, texts[i])[0][:4]
        out, length = generate.greedy(teacher, teacher.embed(jnp.asarray(opening[None])), jnp.ones((1, len(opening))),
                                      generate.GenerateConfig(max_new_tokens=6, eos_token_id=tok.eos_token_id or -1))
        want = tok.decode(list(opening) + list(np.asarray(out[0, :int(length[0])])), skip_special_tokens=True)
        assert got[i] == want
    again = build(cfg, str(tmp_path / "seq"))
    assert again.info["kd"]["sequence"]["written"]["computed"] == 0
