"""Image input for frozen image teachers: decoding, RandomResizedCrop (training), resize + centre crop
(evaluation) and the normalisation each teacher's checkpoint asks for, on the host with numpy and Pillow.

`crop_box` follows torchvision's RandomResizedCrop rule (scale (0.08, 1), log-uniform aspect ratio in
(3/4, 4/3), up to 10 tries, then a centre crop clamped to the ratio range) with a numpy Generator, so a
resumed run draws the same crops (kdjax.train.Task.train_transform).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from kdjax.errors import InputError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# For checkpoints without a preprocessor_config.json, what the paper's teachers' configs say: google/vit-large-
# patch16-224 mean = std = 0.5 (ViTImageProcessor's default too), microsoft/resnet-50 ImageNet's statistics (its
# processor class, ConvNextImageProcessor, defaults to 0.5 in transformers 5, so the class default is not used)
FAMILY_STATS = {"vit": (np.full(3, 0.5, np.float32), np.full(3, 0.5, np.float32)),
                "resnet": (IMAGENET_MEAN, IMAGENET_STD)}


def normalization(model_dir: str | None, kind: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, std, rescale) an image model was trained with: the image_mean, image_std and rescale_factor of the
    preprocessor_config.json beside its checkpoint (do_normalize / do_rescale false: none), else its family's
    released checkpoint's (FAMILY_STATS). `normalize` applies them."""
    import json
    import os

    mean, std = FAMILY_STATS.get(kind, (IMAGENET_MEAN, IMAGENET_STD))  # kind "none": no teacher reads them
    cfg_file = os.path.join(model_dir, "preprocessor_config.json") if model_dir else ""
    if not (cfg_file and os.path.isfile(cfg_file)):
        return mean, std, 1 / 255
    try:
        with open(cfg_file, encoding="utf-8") as f:
            pp = json.load(f)
        rescale = float(pp.get("rescale_factor", 1 / 255)) if pp.get("do_rescale", True) else 1.0
        if not pp.get("do_normalize", True):
            return np.zeros(3, np.float32), np.ones(3, np.float32), rescale
        mean = np.broadcast_to(np.asarray(pp.get("image_mean", mean), np.float32), (3,)).copy()
        std = np.broadcast_to(np.asarray(pp.get("image_std", std), np.float32), (3,)).copy()
    except (ValueError, TypeError, AttributeError) as e:
        raise InputError(f"{cfg_file}: unreadable image_mean / image_std / rescale_factor ({e})") from None
    if not (np.all(np.isfinite(std)) and np.all(std > 0)):
        raise InputError(f"{cfg_file}: image_std must be positive, got {std.tolist()}")
    return mean, std, rescale


def load_rgb(path: str) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (alpha composited on white, as a stamp drawn on paper)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read image: {e}") from None


def crop_box(h: int, w: int, rng: np.random.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
             ) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop covering `scale` of the area with aspect `ratio`."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h  # fallback: the whole image, cropped to the nearest allowed aspect ratio
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to (height, width) with antialiasing (Pillow)."""
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR))


def random_resized_crop(img: np.ndarray, rng: np.random.Generator, size: int = 224) -> np.ndarray:
    top, left, ch, cw = crop_box(img.shape[0], img.shape[1], rng)
    return _resize(np.ascontiguousarray(img[top:top + ch, left:left + cw]), (size, size))


def center_crop(img: np.ndarray, size: int = 224, resize_to: int | None = None) -> np.ndarray:
    """Resize the shorter side to `resize_to` (default size * 256 / 224), then crop the centre."""
    resize_to = resize_to or int(round(size * 256 / 224))
    h, w = img.shape[:2]
    s = resize_to / min(h, w)
    img = _resize(img, (max(size, int(round(h * s))), max(size, int(round(w * s)))))
    h, w = img.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[top:top + size, left:left + size])


def normalize(img: np.ndarray, mean: np.ndarray = IMAGENET_MEAN, std: np.ndarray = IMAGENET_STD,
              rescale: float = 1 / 255) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (H, W, 3), (x * rescale - mean) / std (transformers' image processors)."""
    return ((img.astype(np.float32) * np.float32(rescale) - mean) / std).astype(np.float32)
