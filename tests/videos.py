"""Short test videos made with PyAV: each second's frames have their own grey level (20 x the second), so
a snapshot's time can be read back from its brightness; the audio is a tone."""

import fractions

import numpy as np


def write(path: str, seconds: float, fps: int = 10, audio: bool = True, tone_hz: float = 440.0,
          rate: int = 22050) -> None:
    import av

    with av.open(path, "w") as out:
        vs = out.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        as_ = out.add_stream("aac", rate=rate, layout="mono") if audio else None
        for i in range(int(seconds * fps)):
            level = min(int(i / fps) * 20, 255)
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), level, np.uint8), format="rgb24")
            frame.pts = i
            frame.time_base = fractions.Fraction(1, fps)
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if as_ is not None:
            n = int(seconds * rate)
            wave = (0.3 * np.sin(2 * np.pi * tone_hz * np.arange(n) / rate)).astype(np.float32)
            for start in range(0, n, 1024):
                chunk = wave[start:start + 1024]
                frame = av.AudioFrame.from_ndarray(chunk[None], format="flt", layout="mono")
                frame.sample_rate = rate
                frame.pts = start
                for packet in as_.encode(frame):
                    out.mux(packet)
            for packet in as_.encode():
                out.mux(packet)
