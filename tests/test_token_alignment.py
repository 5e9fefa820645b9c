"""Cross-tokenizer alignment (kdjax.data.token_alignment) with two real tokenizers: SmolLM2's byte-level BPE (the
teacher) and all-MiniLM-L6-v2's uncased WordPiece (the student)."""

import numpy as np
import pytest

from kdjax.data import caption_corpus
from kdjax.data import token_alignment as ta

TEXT = "A dog's barking twice, then  an UNBELIEVABLE café-like hum.\nNew line: 3.14!"


@pytest.fixture(scope="module")
def toks(minilm_dir):
    from configs.multi2cap import SMOLLM2
    from kdjax import assets
    from kdjax.data import tokenizers

    return tokenizers.load(assets.model_dir(SMOLLM2)), tokenizers.load(minilm_dir)


def _enc(tok, text, special=True):
    e = tok(text, return_offsets_mapping=True, add_special_tokens=special)
    return np.asarray(e["input_ids"]), np.asarray(e["offset_mapping"]).reshape(-1, 2)


def _covered(text, offsets, span, k):
    r = ta.char_ranges(text, offsets)[span == k]
    return int(r[:, 0].min()), int(r[:, 1].max())


def test_spans_of_bpe_and_wordpiece(toks):
    bpe, wp = toks
    (ia, oa), (ib, ob) = _enc(bpe, TEXT), _enc(wp, TEXT)
    sa, sb = ta.spans(TEXT, oa, ob)
    by_span = lambda tok, ids, s, k: tok.convert_ids_to_tokens([int(i) for i in ids[s == k]])  # noqa: E731
    aligned = [(TEXT[slice(*_covered(TEXT, oa, sa, k))], by_span(bpe, ia, sa, k), by_span(wp, ib, sb, k))
               for k in range(1, sa.max() + 1)]
    words = {w: (a, b) for w, a, b in aligned}
    assert words["UNBELIEVABLE"] == (["ĠUN", "B", "EL", "I", "EV", "ABLE"], ["unbelievable"])
    assert words["'s"] == (["'s"], ["'", "s"])
    assert words["14"] == (["1", "4"], ["14"])
    assert words["café"] == (["ĠcafÃ©"], ["cafe"])
    assert [w for w, _, _ in aligned][-6:] == ["line", ":", "3", ".", "14", "!"]
    assert len(aligned) == sa.max() == sb.max() == 21
    # special and whitespace-only tokens belong to no span: [CLS], [SEP], BPE's lone spaces and newline
    assert sb[0] == sb[-1] == 0
    assert [bpe.convert_ids_to_tokens(int(i)) for i in ia[sa == 0]] == ["Ġ", "Ċ", "Ġ"]


def test_every_span_covers_the_same_characters_on_both_sides(toks):
    """On the embedded caption corpus: each span's characters agree between the tokenizations, spans do not
    overlap, and together they cover every character both tokenizations cover."""
    bpe, wp = toks
    spans_seen = 0
    for text in caption_corpus.texts()[:300]:
        (_, oa), (_, ob) = _enc(bpe, text), _enc(wp, text)
        sa, sb = ta.spans(text, oa, ob)
        assert sa.max() == sb.max()
        prev_end = 0
        for k in range(1, sa.max() + 1):
            a, b = _covered(text, oa, sa, k), _covered(text, ob, sb, k)
            assert a == b and a[0] >= prev_end, (text, k)
            prev_end = a[1]
        ra, rb = ta.char_ranges(text, oa), ta.char_ranges(text, ob)
        both = {c for r in ra for c in range(*r)} & {c for r in rb for c in range(*r)}
        in_spans = {c for r in ra[sa > 0] for c in range(*r)}
        assert both <= in_spans
        spans_seen += sa.max()
    assert spans_seen > 1000


def test_truncated_tokenization_leaves_the_rest_unaligned(toks):
    bpe, wp = toks
    (_, oa), (_, ob) = _enc(bpe, TEXT), _enc(wp, TEXT)
    sa, sb = ta.spans(TEXT, oa, ob[:6])  # [CLS] a dog ' s barking
    assert sb.tolist() == [0, 1, 2, 3, 3, 4]
    assert sa.max() == 4 and np.all(sa[np.flatnonzero(sa == 4)[-1] + 1:] == 0)


def test_vocabulary_map_by_normalised_text(toks):
    bpe, wp = toks
    vm = ta.vocab_map(bpe, wp)
    name = lambda i: wp.convert_ids_to_tokens(int(i)) if i >= 0 else None  # noqa: E731
    for piece, (cont, start) in {"Ġdog": ("##dog", "dog"), "ĠDog": ("##dog", "dog"), "ing": ("##ing", "ing"),
                                 ".": ("##.", "."), "ĠcafÃ©": (None, "cafe")}.items():
        i = bpe.convert_tokens_to_ids(piece)
        assert (name(vm[0, i]), name(vm[1, i])) == (cont, start), piece
    assert np.all(vm[:, bpe.all_special_ids] == -1)
    ws = ta.word_starts(wp)
    assert ws[wp.convert_tokens_to_ids("dog")] == 1 and ws[wp.convert_tokens_to_ids("##dog")] == 0
    assert ws[wp.cls_token_id] == 0


def test_merge_duplicates_sums_what_maps_to_one_student_token():
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(9), size=(4, 3))[..., :6]).astype(np.float32)
    ids = rng.integers(-1, 4, size=(4, 3, 6)).astype(np.int32)
    got_lp, got_ids = ta.merge_duplicates(lp, ids)
    for r in np.ndindex(4, 3):
        want: dict[int, float] = {}
        for v, i in zip(lp[r], ids[r]):
            if i >= 0:
                want[int(i)] = want.get(int(i), 0.0) + float(np.exp(v))
        got = {int(i): float(np.exp(v)) for v, i in zip(got_lp[r], got_ids[r]) if i >= 0}
        assert got.keys() == want.keys() and len(got) == int(np.sum(got_ids[r] >= 0))
        for i in want:
            assert got[i] == pytest.approx(want[i], rel=1e-6)


def test_teacher_next_tokens_land_on_the_students_next_tokens(toks):
    """A teacher whose top-1 is the text's own next token, moved to the student's positions: at each aligned
    position the mapped top-1 should be the student's own next token, except where the two tokenizers cut the span's
    first piece differently (BPE's 'Ros|ella' against WordPiece's 'rose|##lla'): 88% of 1371 positions on the first
    400 captions."""
    bpe, wp = toks
    vm, ws = ta.vocab_map(bpe, wp), ta.word_starts(wp)
    hit = total = 0
    for text in caption_corpus.texts()[:400]:
        (ia, oa), (ib, ob) = _enc(bpe, text, special=False), _enc(wp, text)
        nxt = np.concatenate([ia[1:], [0]])[:, None].astype(np.int32)
        out = ta.student_topk(text, oa, ob, ib, np.zeros((len(ia), 1), np.float32), nxt, vm, ws)
        pos = np.flatnonzero(out["topk_mask"])
        assert np.all(out["topk_ids"][out["topk_mask"] == 0] == -1)
        # the student's next token at each aligned position starts a span, as the teacher's does
        sa, sb = ta.spans(text, oa, ob)
        assert np.all(sb[pos + 1] > 0) and np.all(sb[pos + 1] != sb[pos])
        hit += int(np.sum(out["topk_ids"][pos, 0] == ib[pos + 1]))
        total += len(pos)
    assert total > 1300 and hit / total > 0.85
