"""The papers' column names for kdjax's report metrics (report["metrics"]["test"][name]), in the papers' order."""

CAPTION = (("BL-1", "bleu_1"), ("BL-2", "bleu_2"), ("BL-3", "bleu_3"), ("BL-4", "bleu_4"), ("RG-L", "rouge_l"),
           ("ME", "meteor"), ("CD", "cider_d"), ("SP", "spice"), ("SD", "spider"), ("SD-F", "spider_fl"),
           ("SB", "sbert"), ("FS", "fense"))
# what the CPU smoke runs compute (no Java, no SPICE jar, no FENSE checker on CI): their `eval.metrics`
SMOKE_CAPTION = ("BL-1", "BL-4", "RG-L", "CD")


def test_columns(names, split: str = "test") -> list[tuple[str, str]]:
    """(column, report path) pairs for the papers' captioning columns `names`."""
    known = dict(CAPTION)
    return [(n, f"{split}.{known[n]}") for n in names]


def paper_rows(table: dict[str, dict[str, float]], columns) -> list[tuple[str, dict[str, float]]]:
    """The paper's numbers restricted to the columns an experiment variant reports, as (row, cells) pairs (row names
    hold dots, which a ConfigDict's keys cannot)."""
    keep = set(columns)
    return [(row, {c: v for c, v in cells.items() if c in keep}) for row, cells in table.items()]
