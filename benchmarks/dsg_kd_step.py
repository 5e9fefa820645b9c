"""DSG-KD train step: kdjax against an equivalent PyTorch step, in the same run on this machine.

Step = frozen teacher forward (hidden states + attentions) + student forward/backward + AdamW update
(two parameter groups, clipping at 1.0), loss CE + 0.6 * span-pooled hidden MSE + 0.2 * span-pooled
attention MSE (key axis pooled onto words). Both sides use MiniLM-shaped BERTs (6 layers x 384, 12
heads, vocabulary 30522), batch 16, sequence 128, 8 domain-word spans per note, float32.

kdjax runs the Trainer's own jitted step (the one `python -m kdjax.main` uses), once with the teacher in the
step (online) and once with its span-pooled targets cached (`teacher.cache.enabled`: the step runs only the
student; the cache's own cost, one teacher forward per note, is timed apart). PyTorch runs
transformers' BertModel (eager attention, needed for attention maps) with the loss written in torch.
Model FLOPs are counted analytically (teacher forward + 3x student forward) and compared with a float32
matmul ceiling measured in the same run. Prints one JSON line.

    python benchmarks/dsg_kd_step.py [--steps 6] [--batch 16] [--seq 128] [--notes 10000] [--device gpu --dtype bfloat16]

--device=gpu runs both steps on the GPU (kdjax's BERTs with compute dtype --dtype, PyTorch under autocast) and adds
each side's model FLOPs utilisation (online step) of the chip's peak; --device=tpu runs kdjax alone.

The 15-epoch estimate (the thesis's recipe) for `--notes` training notes: online steps, or one cache build plus
the cached steps, from the measured per-note times.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (add_device_args, device_fields, matmul_ceiling, timed, torch_autocast,  # noqa: E402
                               torch_device, torch_sync, use_device)

LAYERS, WIDTH, HEADS, FFN, VOCAB = 6, 384, 12, 1536, 30522
SPANS, ALPHA, BETA = 8, 0.6, 0.2


def make_batch(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, (batch, seq)).astype(np.int32)
    words = np.zeros((batch, seq), np.int32)
    for b in range(batch):
        starts = np.sort(rng.choice(np.arange(1, seq - 4, 4), SPANS, replace=False))
        for k, s in enumerate(starts, start=1):
            words[b, s:s + int(rng.integers(1, 4))] = k
    ones = np.ones((batch, seq), np.int32)
    zeros = np.zeros((batch, seq), np.int32)
    out = {"label": rng.integers(0, 2, batch).astype(np.int32)}
    for p in ("s", "t"):
        out.update({f"{p}_input_ids": ids, f"{p}_attention_mask": ones, f"{p}_token_type_ids": zeros,
                    f"{p}_word_ids": words})
    return out


def model_flops(batch: int, seq: int, teacher: bool = True) -> float:
    per_token_layer = 2 * (4 * WIDTH * WIDTH + 2 * WIDTH * FFN) + 2 * 2 * seq * WIDTH
    fwd = per_token_layer * LAYERS * batch * seq
    return (fwd if teacher else 0) + 3 * fwd  # teacher forward + student forward and backward


def bench_kdjax(batch_np, steps: int, dtype: str = "float32") -> dict[str, float]:
    """Seconds per step with the teacher in the step (online) and with its targets cached (the step runs only
    the student), and seconds per note to compute the cache."""
    import tempfile

    import grain
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from configs.dsg_kd import get_config
    from kdjax.models.bert import LOGICAL_AXES, BertConfig, BertModel, SequenceClassifier
    from kdjax.systems.dsg_kd import Student, evaluate, make_loss, predict_fn
    from kdjax.systems.dsg_kd import teacher as teacher_lib
    from kdjax.train import sharding as shd
    from kdjax.train.task import Task
    from kdjax.train.trainer import Trainer

    cfg = get_config("smoke")
    cfg.train.batch_size = len(batch_np["label"])
    cfg.train.steps = 1000
    cfg.kd.attn_keys = "word"
    bert = BertConfig(vocab_size=VOCAB, hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      intermediate_size=FFN, classifier_head="dsg_kd", dtype=dtype)
    teacher = BertModel(bert, rngs=nnx.Rngs(1))
    lmap = [(i, i) for i in range(LAYERS + 1)]
    plan = teacher_lib.plan(cfg, lmap, bert, bert)

    # the cache's work: the teacher's targets of one batch of notes
    gdef, tstate = nnx.split(teacher)
    targets = jax.jit(lambda s, b: teacher_lib.targets(nnx.merge(gdef, s), b, plan))
    tokens = {k: jnp.asarray(batch_np[k]) for k in teacher_lib.TOKEN_FIELDS}
    out = {}
    out["cache_s_per_batch"] = timed(lambda: jax.block_until_ready(targets(tstate, tokens)), steps, warmup=1)
    t = jax.tree.map(np.asarray, targets(tstate, tokens))
    cached_np = {k: v for k, v in batch_np.items() if k not in teacher_lib.TOKEN_FIELDS}
    cached_np.update({teacher_lib.COUNTS: t["counts"], teacher_lib.HIDDEN: t["hidden"], teacher_lib.ATTN: t["attn"]})

    for name, b_np, step_teacher in (("online", batch_np, teacher), ("cached", cached_np, None)):
        student = Student(SequenceClassifier(bert, rngs=nnx.Rngs(0)), WIDTH, nnx.Rngs(2))
        examples = [{k: v[i] for k, v in b_np.items()} for i in range(len(b_np["label"]))]
        task = Task(model=student, loss_fn=make_loss(plan), predict_fn=predict_fn,
                    train_data=grain.MapDataset.source(examples), eval_data={}, evaluate=evaluate,
                    logical_axes=LOGICAL_AXES, teacher=step_teacher, teacher_logical_axes=LOGICAL_AXES)
        trainer = Trainer(cfg, task, tempfile.mkdtemp())
        batch = shd.global_batch(b_np, trainer.mesh)
        state = trainer.state

        def step():
            nonlocal state
            state, m = trainer.train_step(state, trainer.frozen_state, trainer.teacher_state, batch)
            m["loss"].block_until_ready()

        out[name] = timed(step, steps, warmup=2)  # the first call compiles
    return out


def bench_torch(batch_np, steps: int, args=None) -> float | None:
    import torch
    import transformers

    dev = torch_device(args) if args is not None else "cpu"
    if dev is None:
        return None
    torch.manual_seed(0)
    conf = transformers.BertConfig(vocab_size=VOCAB, hidden_size=WIDTH, num_hidden_layers=LAYERS,
                                   num_attention_heads=HEADS, intermediate_size=FFN,
                                   attn_implementation="eager")
    teacher = transformers.BertModel(conf).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = transformers.BertModel(conf).train()
    head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(WIDTH, WIDTH), torch.nn.GELU(),
                               torch.nn.Dropout(0.1), torch.nn.Linear(WIDTH, 2))
    teacher, student, head = teacher.to(dev), student.to(dev), head.to(dev)
    opt = torch.optim.AdamW([{"params": student.parameters(), "lr": 1e-3},
                             {"params": head.parameters(), "lr": 1e-3}], weight_decay=0.01)
    b = {k: torch.tensor(v, dtype=torch.long, device=dev) for k, v in batch_np.items()}
    onehot = (b["s_word_ids"][:, None, :] == torch.arange(1, 33, device=dev)[None, :, None]).float()  # (b, k, l)
    counts = onehot.sum(-1)
    valid = counts > 0

    def pool_rows(x):  # (b, l, d) -> (b, k, d)
        return torch.einsum("bkl,bld->bkd", onehot, x) / counts.clamp(min=1)[..., None]

    def pool_attn(a):  # (b, h, q, k) -> (b, k_words, h, words + 1)
        rows = torch.einsum("bwq,bhqk->bhwk", onehot, a) / counts.clamp(min=1)[:, None, :, None]
        on = torch.einsum("bhwk,bvk->bhwv", rows, onehot)
        rest = rows.sum(-1, keepdim=True) - on.sum(-1, keepdim=True)
        return torch.cat([on, rest], -1).transpose(1, 2)

    def masked_mse(a, t):
        w = valid[None, ..., None, None] if a.ndim == 5 else valid[None, ..., None]
        n = valid.sum() * a.shape[0] * a[0, 0, 0].numel()
        return ((a - t) ** 2 * w).sum() / n.clamp(min=1)

    def step():
        with torch_autocast(args, dev) if args is not None else torch.autocast("cpu", enabled=False):
            with torch.no_grad():
                t = teacher(b["t_input_ids"], b["t_attention_mask"], b["t_token_type_ids"],
                            output_hidden_states=True, output_attentions=True)
            s = student(b["s_input_ids"], b["s_attention_mask"], b["s_token_type_ids"],
                        output_hidden_states=True, output_attentions=True)
            logits = head(s.pooler_output)
            ce = torch.nn.functional.cross_entropy(logits, b["label"])
            hid = masked_mse(torch.stack([pool_rows(h.float()) for h in s.hidden_states]),
                             torch.stack([pool_rows(h.float()) for h in t.hidden_states]))
            att = masked_mse(torch.stack([pool_attn(a.float()) for a in s.attentions]),
                             torch.stack([pool_attn(a.float()) for a in t.attentions]))
            loss = ce + ALPHA * hid + BETA * att
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(student.parameters()) + list(head.parameters()), 1.0)
        opt.step()
        torch_sync(dev)
        return loss

    return timed(step, steps, warmup=2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6, help="timed steps (median)")
    ap.add_argument("--batch", type=int, default=16, help="notes per step")
    ap.add_argument("--seq", type=int, default=128, help="tokens per note")
    ap.add_argument("--notes", type=int, default=10_000, help="training notes for the 15-epoch estimate")
    add_device_args(ap)
    args = ap.parse_args()
    use_device(args)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    batch = make_batch(args.batch, args.seq)
    ceiling = matmul_ceiling()
    k = bench_kdjax(batch, args.steps, args.dtype)
    t_torch = bench_torch(batch, args.steps, args)
    flops, student_flops = model_flops(args.batch, args.seq), model_flops(args.batch, args.seq, teacher=False)
    per_note = {"online": k["online"] / args.batch, "cached": k["cached"] / args.batch,
                "torch": t_torch / args.batch if t_torch else None}
    build = k["cache_s_per_batch"] / args.batch
    epochs = 15  # the thesis's recipe
    hours = lambda s: round(s / 3600, 2) if s is not None else None  # noqa: E731
    ratio = lambda a, b, n=3: round(a / b, n) if a and b else None  # noqa: E731
    print(json.dumps({
        "benchmark": "dsg_kd_step", "batch": args.batch, "seq": args.seq, "layers": LAYERS, "width": WIDTH,
        "kdjax_online_samples_per_s": round(args.batch / k["online"], 2),
        "kdjax_cached_samples_per_s": round(args.batch / k["cached"], 2),
        "torch_samples_per_s": ratio(args.batch, t_torch, 2),
        "online_speedup_vs_torch": ratio(t_torch, k["online"]),
        "cached_speedup_vs_torch": ratio(t_torch, k["cached"]),
        "cache_build_notes_per_s": round(1 / build, 2),
        "paper_15_epochs_hours": {"notes": args.notes, "kdjax_online": hours(epochs * args.notes * per_note["online"]),
                                  "kdjax_cached_with_build": hours(args.notes * build
                                                                   + epochs * args.notes * per_note["cached"]),
                                  "torch_online": hours(epochs * args.notes * per_note["torch"])
                                  if t_torch else None},
        "model_gflop_per_step": {"online": round(flops / 1e9, 1), "cached": round(student_flops / 1e9, 1)},
        "matmul_ceiling_gflops": round(ceiling / 1e9, 1),
        "kdjax_fraction_of_ceiling": {"online": round(flops / k["online"] / ceiling, 3),
                                      "cached": round(student_flops / k["cached"] / ceiling, 3)},
        "torch_fraction_of_ceiling": ratio(flops / t_torch, ceiling) if t_torch else None,
        "cpu_threads": os.cpu_count(),
        **device_fields(args, flops, k["online"], t_torch),
    }))


if __name__ == "__main__":
    main()
