"""Deterministic synthetic sound events with matching images and captions, for volume and scaling
tests of the audio pipelines (the real embedded set has 159 clips).

Example i is a pure function of (seed, i): any number of examples, random access, identical on every
host, so a grain pipeline over it shards and resumes like a file-backed one. Each clip holds one or
two events over faint background noise; the image draws the same events (one shape per repetition,
height = pitch, colour = kind) and the caption says what is heard, in English and Korean.
"""

from __future__ import annotations

import dataclasses

import numpy as np

KINDS = ("beep", "chirp", "siren", "knock", "hiss")
_EN = {"beep": "beep", "chirp": "chirp", "siren": "siren", "knock": "knock", "hiss": "hiss"}
_KO = {"beep": "삐 소리", "chirp": "짹짹 소리", "siren": "사이렌", "knock": "두드리는 소리", "hiss": "쉭 소리"}
_COLOURS = {"beep": (230, 60, 60), "chirp": (60, 170, 70), "siren": (40, 90, 220), "knock": (150, 100, 40),
            "hiss": (120, 120, 120)}
_COUNT_EN = {1: "once", 2: "twice", 3: "three times", 4: "four times"}
_COUNT_KO = {1: "한 번", 2: "두 번", 3: "세 번", 4: "네 번"}
_PITCH = {"low": 300.0, "high": 2400.0}
_PITCH_KO = {"low": "낮은", "high": "높은"}
TAGS = tuple(f"{kind} {pitch}" for kind in KINDS for pitch in _PITCH)  # a tagger's classes: (kind, pitch) pairs
# and, for a tagger that also learns repetitions, (kind, count) pairs: "beep x3" (issue 24's EffAAC v3 teacher)
COUNT_TAGS = tuple(f"{kind} x{n}" for kind in KINDS for n in _COUNT_EN)
TAG_SETS = {"kind_pitch": TAGS, "kind_pitch_count": TAGS + COUNT_TAGS}


@dataclasses.dataclass(frozen=True)
class Event:
    kind: str
    pitch: str  # "low" | "high"
    count: int  # repetitions, 1-4

    def caption(self) -> str:
        return f"a {self.pitch}-pitched {_EN[self.kind]} {_COUNT_EN[self.count]}"

    def caption_ko(self) -> str:
        return f"{_PITCH_KO[self.pitch]} {_KO[self.kind]}가 {_COUNT_KO[self.count]}"


def _burst(kind: str, f0: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    env = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades, no clicks at the edges
    if kind == "beep":
        x = np.sin(2 * np.pi * f0 * t)
    elif kind == "chirp":  # upward sweep over one octave
        x = np.sin(2 * np.pi * f0 * (t + t ** 2 / (2 * t[-1])))
    elif kind == "siren":  # 4 Hz vibrato of +-20%
        x = np.sin(2 * np.pi * f0 * t + 0.2 * f0 / 4.0 * np.sin(2 * np.pi * 4.0 * t))
    elif kind == "knock":  # decaying low tone with a noisy attack
        x = np.sin(2 * np.pi * f0 / 2 * t) * np.exp(-t / 0.03) + 0.3 * rng.standard_normal(n) * np.exp(-t / 0.005)
    elif kind == "hiss":  # noise band around f0
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / sr)
        spec *= np.exp(-0.5 * ((freqs - f0) / (0.3 * f0)) ** 2)
        x = np.fft.irfft(spec, n)
        x /= np.abs(x).max() + 1e-9
    else:
        raise ValueError(kind)
    return (x * env).astype(np.float32)


def _draw(events: list[Event], size: int) -> np.ndarray:
    img = np.full((size, size, 3), 250, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for row, ev in enumerate(events):
        cy = size * (0.3 if ev.pitch == "high" else 0.7) + (row * 0.08 * size)
        for k in range(ev.count):
            cx = size * (k + 1) / (ev.count + 1)
            r = size * 0.07
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r if ev.kind != "knock" else (
                (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r))
            img[inside] = _COLOURS[ev.kind]
    return img


class SyntheticSounds:
    """Random-access source (len + getitem) of {wave, image, caption, caption_ko, label, events}.

    `label` is the index of the first event's kind in KINDS.
    """

    def __init__(self, num_examples: int, seed: int = 0, seconds: float = 4.0, sample_rate: int = 16000,
                 image_size: int = 224, max_events: int = 2):
        self.num_examples, self.seed = num_examples, seed
        self.seconds, self.sample_rate, self.image_size, self.max_events = seconds, sample_rate, image_size, max_events

    def __len__(self) -> int:
        return self.num_examples

    def events(self, rng: np.random.Generator) -> list[Event]:
        n = int(rng.integers(1, self.max_events + 1))
        kinds = rng.choice(len(KINDS), size=n, replace=False)
        return [Event(KINDS[k], ("low", "high")[int(rng.integers(2))], int(rng.integers(1, 5))) for k in kinds]

    def _start(self, index: int) -> tuple[np.random.Generator, np.ndarray, list[Event]]:
        """Example `index`'s generator, background noise and events (drawn in this order: the data's definition)."""
        if not 0 <= index < self.num_examples:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        wave = 0.003 * rng.standard_normal(int(self.seconds * self.sample_rate)).astype(np.float32)
        return rng, wave, self.events(rng)

    @staticmethod
    def _caption(evs: list[Event]) -> str:
        caption = " and ".join(e.caption() for e in evs)
        return caption[0].upper() + caption[1:] + "."

    def caption(self, index: int) -> str:
        """Example `index`'s English caption, without synthesising its sound or drawing its image."""
        return self._caption(self._start(index)[2])

    def _wave(self, index: int) -> tuple[np.ndarray, list[Event]]:
        rng, wave, evs = self._start(index)
        sr, total = self.sample_rate, len(wave)
        slot = total // 4  # each repetition gets a quarter of the clip
        for ev in evs:
            f0 = _PITCH[ev.pitch] * float(rng.uniform(0.9, 1.1))
            dur = int(slot * float(rng.uniform(0.4, 0.7)))
            gain = float(rng.uniform(0.2, 0.5))
            for k in range(ev.count):
                start = k * slot + int(rng.integers(0, slot - dur))
                wave[start:start + dur] += gain * _burst(ev.kind, f0, dur, sr, rng)
        return wave, evs

    def wave(self, index: int) -> np.ndarray:
        """Example `index`'s sound alone (audio-only clips: no image drawn)."""
        return self._wave(index)[0]

    def tagged(self, index: int, tags: tuple[str, ...] = TAGS) -> tuple[np.ndarray, np.ndarray]:
        """Example `index`'s sound and its multi-hot tags over `tags` (TAGS, or TAGS + COUNT_TAGS; no image drawn)."""
        wave, evs = self._wave(index)
        hot = np.zeros(len(tags), np.float32)
        for e in evs:
            for name in (f"{e.kind} {e.pitch}", f"{e.kind} x{e.count}"):
                if name in tags:
                    hot[tags.index(name)] = 1.0
        return wave, hot

    def __getitem__(self, index: int) -> dict:
        wave, evs = self._wave(index)
        return {"wave": wave, "image": _draw(evs, self.image_size), "caption": self._caption(evs),
                "caption_ko": ", ".join(e.caption_ko() for e in evs) + " 들린다.",
                "label": np.int32(KINDS.index(evs[0].kind)),
                "events": [dataclasses.asdict(e) for e in evs]}
