"""EffAAC's word-level KD (issue 26 part 5): a teacher's cached top-k along its own caption, in SmolLM2's byte-level
BPE, moved to a student's word vocabulary at the positions where L_seq's logits predict each word."""

from __future__ import annotations

import numpy as np
import pytest

from kdjax import assets
from kdjax.data import tokenizers
from kdjax.errors import InputError
from kdjax.systems.effaac import word_kd
from kdjax.teachers import topk

CAPTION = "A dog barks twice."


@pytest.fixture(scope="module")
def toks(tmp_path_factory):
    from configs.multi2cap import SMOLLM2

    teacher = tokenizers.load(assets.model_dir(SMOLLM2))
    student = tokenizers.train_word_level([CAPTION, "a cat meows.", "dogs bark"], str(tmp_path_factory.mktemp("w")))
    return teacher, student


def _teacher_row(teacher, caption: str, k: int, rng) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """A made-up teacher's top-k along the caption: position j (predicting caption token j, the last one EOS) puts
    the true token first with a known probability, then random others."""
    ids = teacher(caption, add_special_tokens=False)["input_ids"] + [teacher.eos_token_id]
    idx = np.stack([np.concatenate([[t], rng.choice([i for i in range(1000, 5000) if i != t], k - 1, replace=False)])
                    for t in ids]).astype(np.int32)
    p = rng.dirichlet(np.ones(k + 1), size=len(ids)) * 0.5
    p[:, 0] += 0.5
    return ids, np.log(p[:, :k]), idx, np.log(p[:, k])


def test_the_teachers_top_k_reaches_the_student_word_it_predicts(toks, tmp_path):
    teacher, student = toks
    k, cap_len = 4, 8
    ids, lp, idx, rest = _teacher_row(teacher, CAPTION, k, np.random.default_rng(0))
    d = str(tmp_path / "word")
    topk.fill(d, ["clip"], lambda part: [topk.row("clip", lp, idx, rest)], k, batch_size=1, shard_size=1)
    aligner = word_kd.Aligner(d, teacher, student, cap_len)
    f = aligner.fields("clip", CAPTION, prefix="ao_")
    assert set(f) == {"ao_" + n for n in word_kd.FIELDS}
    words, _ = tokenizers.encode_captions(student, [CAPTION], cap_len)  # L_seq's targets: a dog barks twice . EOS
    names = student.convert_ids_to_tokens(words[0].tolist())[:6]
    assert names == ["a", "dog", "barks", "twice", ".", "</s>"]
    # BPE: A | Ġdog | Ġbar ks | Ġtwice | . : every word starts a shared span, EOS covers no text
    assert f["ao_word_mask"].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    t_pieces = teacher.convert_ids_to_tokens(ids)
    assert t_pieces[:6] == ["A", "Ġdog", "Ġbar", "ks", "Ġtwice", "."]
    # logits[t] predict word t: the teacher's position predicting the span's first piece (t = 3, 'twice', reads the
    # teacher's position after 'ks'); its true piece maps to the student's word of that text
    for t, tpos in enumerate([0, 1, 2, 4, 5]):
        first = aligner.vmap[1, ids[tpos]]
        got = dict(zip(f["ao_word_ids"][t].tolist(), f["ao_word_logprobs"][t].tolist()))
        if names[t] in ("a", "dog", "twice", "."):  # one piece, or a word whose first piece is the whole word
            assert first == words[0, t] and got[first] == pytest.approx(float(np.float16(lp[tpos, 0])), abs=1e-3)
        else:  # 'barks': the teacher's 'Ġbar' is another word, one the student does not have
            assert first == -1 and words[0, t] not in got
        # nothing of the teacher's mass is made up: what is kept plus the rest is the teacher's whole distribution
        kept = np.exp(f["ao_word_logprobs"][t])[f["ao_word_ids"][t] >= 0].sum()
        assert kept + np.exp(f["ao_word_rest"][t]) == pytest.approx(1.0, abs=2e-3)


def test_a_missing_cache_is_named(toks, tmp_path):
    teacher, student = toks
    with pytest.raises(InputError, match="no word-level teacher cache"):
        word_kd.Aligner(str(tmp_path / "none"), teacher, student, 8)


def test_word_kd_needs_the_teachers_decoder(tmp_path):
    """An imported teacher (captions and embeddings only) has no distributions to distil: refused when the config is
    read, naming the key."""
    from configs import effaac as effaac_config
    from kdjax.systems import checks, registry

    cfg = effaac_config.get_config("smoke")  # teacher.kind='cache': the shipped cache
    cfg.kd.word.weight = 1.0
    with pytest.raises(checks.ConfigError) as e:
        registry.validate(cfg)
    assert any(p.startswith("kd.word.weight") and "teacher.kind='multi2cap'" in p for p in e.value.problems)
    from kdjax.systems import effaac

    with pytest.raises(InputError, match="kd.word.weight > 0 needs the teacher's decoder"):  # build without the checks
        effaac.build(cfg, str(tmp_path / "w"))
