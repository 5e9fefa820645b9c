"""Deterministic synthetic bilingual (Korean/English) paediatric emergency triage notes.

SYNTHETIC DATA. No real patient text was used or is imitated record by record: notes are assembled
from hand-written fragments so that the corpus has the statistics the DSG-KD thesis reports for its
(private) emergency-department notes (Table 2.1): about 43% Korean words, 23% English words and 33%
symbols/numbers/other, with about 20% of the English words being medical terms. The label
(1 = emergency) depends on the English medical terms and the vital signs, so that a model has to read
the English domain words to do well; a fraction of labels is flipped so the task is not trivially
separable.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

# Medical terms whose presence pushes towards "emergency", with weights.
URGENT_TERMS: dict[str, float] = {
    "seizure": 2.5, "dyspnea": 2.5, "cyanosis": 3.0, "lethargy": 2.0, "apnea": 3.0,
    "stridor": 2.5, "syncope": 2.0, "anaphylaxis": 3.0, "hematemesis": 2.5, "intussusception": 2.5,
    "dehydration": 1.5, "tachypnea": 1.5, "retraction": 1.5, "wheezing": 1.0, "hematochezia": 2.0,
    "meningitis": 3.0, "convulsion": 2.5, "unresponsive": 3.0, "bradycardia": 2.5, "sepsis": 3.0,
}
# Medical terms of minor complaints, weighted towards "non-emergency".
MILD_TERMS: dict[str, float] = {
    "cough": -0.8, "rhinorrhea": -1.0, "fever": 0.3, "vomiting": 0.4, "diarrhea": 0.2, "rash": -0.6,
    "otalgia": -1.0, "abrasion": -1.2, "sputum": -0.6, "constipation": -1.0, "urticaria": -0.4,
    "conjunctivitis": -1.0, "pharyngitis": -0.8, "headache": -0.2, "myalgia": -0.8, "laceration": -0.5,
    "sprain": -1.0, "nausea": -0.2, "itching": -1.0, "sneezing": -1.0,
}
MEDICAL_TERMS: tuple[str, ...] = tuple(sorted(URGENT_TERMS) + sorted(MILD_TERMS))

# English words that are not medical terms (abbreviations written in letters count as English).
ENGLISH_FILLER = (
    "mom", "dad", "home", "today", "yesterday", "night", "morning", "with", "and", "no", "since",
    "after", "poor", "oral", "intake", "good", "mild", "visit", "ER", "OPD", "pt", "BT", "HR", "RR",
    "check", "state", "alert", "then", "again", "times", "day", "clinic", "local", "transfer", "med",
    "hx", "none", "onset", "sudden", "gradual", "known", "allergy", "status", "sleep", "play", "cry",
)
KOREAN_FRAGMENTS = (
    "내원", "전부터", "있었으며", "보호자", "진술상", "집에서", "해열제", "복용", "후에도", "호전",
    "없어", "증상", "지속되어", "타병원", "경유하여", "어제", "저녁부터", "오늘", "아침부터", "심해져",
    "응급실", "방문함", "소아과", "진료", "받았으나", "수유", "잘", "안하고", "처짐", "보임", "식욕",
    "저하", "동반", "하여", "보채고", "잠을", "못잠", "어린이집", "다녀온", "이후", "열이", "나고",
    "엄마가", "데리고", "왔음", "과거력", "없음", "약물", "알레르기", "예방접종", "완료", "상태",
    "확인함", "관찰", "필요", "여러", "차례", "구토", "설사", "기침", "콧물", "호흡", "곤란",
)
SYMBOLS = (",", ".", "/", ":", "(", ")", "-", "+", "%", ">", "~")

_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_ASCII_WORD = re.compile(r"^[A-Za-z]+$")


def word_category(word: str) -> str:
    """'korean', 'english' (ASCII letters only) or 'other', as Table 2.1 counts words."""
    if _HANGUL.search(word):
        return "korean"
    if _ASCII_WORD.match(word):
        return "english"
    return "other"


@dataclasses.dataclass(frozen=True)
class Note:
    text: str
    label: int
    source: str = ""  # where it was read ("notes.csv:12"); "" for generated notes


def _vitals(rng: np.random.Generator, severe: bool) -> tuple[list[str], float]:
    """Vital-sign fragment and its contribution to the urgency score."""
    bt = round(float(rng.normal(38.6 if severe else 37.8, 0.7)), 1)
    hr = int(rng.normal(150 if severe else 115, 20))
    rr = int(rng.normal(36 if severe else 26, 6))
    spo2 = int(min(100, rng.normal(91 if severe else 98, 3)))
    score = 0.0
    score += 1.5 if spo2 < 93 else 0.0
    score += 1.0 if hr > 160 else 0.0
    score += 0.8 if bt >= 39.5 else 0.0
    score += 0.7 if rr > 40 else 0.0
    words = ["V/S", ":", "BT", f"{bt}", "HR", f"{hr}", "RR", f"{rr}", "SpO2", f"{spo2}", "%"]
    return words, score


def generate_note(rng: np.random.Generator, label_noise: float = 0.08) -> Note:
    severe = rng.random() < 0.5
    n_urgent = int(rng.integers(1, 3)) if severe else int(rng.random() < 0.15)
    n_mild = int(rng.integers(0, 2)) if severe else int(rng.integers(1, 3))
    urgent = list(rng.choice(sorted(URGENT_TERMS), size=n_urgent, replace=False))
    mild = list(rng.choice(sorted(MILD_TERMS), size=n_mild, replace=False))
    terms = urgent + mild
    rng.shuffle(terms)
    score = sum(URGENT_TERMS.get(t, 0.0) + MILD_TERMS.get(t, 0.0) for t in terms)
    vitals, vscore = _vitals(rng, severe)
    score += vscore

    age = int(rng.integers(1, 15))
    words: list[str] = [f"{age}", "세", str(rng.choice(["남아", "여아"])), ","]
    # Each medical term is embedded in a short clause with Korean and English filler and symbols, so
    # that the language mix comes out near Table 2.1's.
    for term in terms:
        n_ko = int(rng.integers(5, 9))
        n_en = int(rng.integers(2, 4))
        clause = [str(w) for w in rng.choice(KOREAN_FRAGMENTS, size=n_ko)]
        clause.insert(int(rng.integers(0, len(clause) + 1)), term)
        for w in rng.choice(ENGLISH_FILLER, size=n_en):
            clause.insert(int(rng.integers(0, len(clause) + 1)), str(w))
        clause.append(str(rng.choice(SYMBOLS[:2])))
        words += clause
        if rng.random() < 0.3:
            words += [str(rng.integers(1, 6)), str(rng.choice(["일", "시간"])), str(rng.choice(SYMBOLS))]
    words += vitals
    words += [str(w) for w in rng.choice(KOREAN_FRAGMENTS, size=int(rng.integers(3, 7)))]
    words += [str(rng.choice(ENGLISH_FILLER)), str(rng.integers(1, 30)), "."]
    label = int(score + rng.normal(0.0, 0.5) > 1.6)
    if rng.random() < label_noise:
        label = 1 - label
    return Note(text=" ".join(words), label=label)


def generate_notes(n: int, seed: int = 0, label_noise: float = 0.08) -> list[Note]:
    """`n` notes; the same (n, seed) always gives the same notes on every machine."""
    rng = np.random.default_rng(seed)
    return [generate_note(rng, label_noise) for _ in range(n)]


def language_mix(texts: list[str]) -> dict[str, float]:
    """Fractions of Korean/English/other words and the medical share of English words."""
    counts = {"korean": 0, "english": 0, "other": 0}
    medical = 0
    terms = set(MEDICAL_TERMS)
    for text in texts:
        for w in text.split():
            cat = word_category(w)
            counts[cat] += 1
            medical += cat == "english" and w.lower() in terms
    total = sum(counts.values())
    out = {k: v / total for k, v in counts.items()}
    out["medical_of_english"] = medical / max(counts["english"], 1)
    return out
