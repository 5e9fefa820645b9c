"""Image teachers: ViT and ResNet parity with transformers (random weights), conversion both ways, and the
image input pipeline."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from kdjax import convert
from kdjax.data import images


def _randomise_bn(hf, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in hf.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _nhwc(x: torch.Tensor) -> jnp.ndarray:
    return jnp.asarray(x.permute(0, 2, 3, 1).numpy())


def test_vit_matches_transformers_and_round_trips(tmp_path):
    hc = transformers.ViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                                image_size=32, patch_size=8)
    torch.manual_seed(0)
    hf = transformers.ViTModel(hc).eval()
    hf.save_pretrained(tmp_path / "vit")
    model = convert.from_pretrained(str(tmp_path / "vit"), feature="pooler")
    px = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = hf(pixel_values=px, output_hidden_states=True)
    out = model(_nhwc(px), output_hidden_states=True)
    assert np.abs(np.asarray(out["last_hidden_state"]) - ref.last_hidden_state.numpy()).max() < 1e-4
    assert np.abs(np.asarray(out["pooler_output"]) - ref.pooler_output.numpy()).max() < 1e-4
    np.testing.assert_array_equal(np.asarray(out["features"]), np.asarray(out["pooler_output"]))
    convert.save_pretrained(model, str(tmp_path / "back"))
    again = transformers.ViTModel.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        np.testing.assert_allclose(again(pixel_values=px).last_hidden_state.numpy(),
                                   ref.last_hidden_state.numpy(), atol=1e-6)


@pytest.mark.parametrize("layer_type", ["bottleneck", "basic"])
def test_resnet_matches_transformers_and_round_trips(tmp_path, layer_type):
    hc = transformers.ResNetConfig(embedding_size=16, hidden_sizes=[32, 64, 96], depths=[2, 1, 1], layer_type=layer_type)
    torch.manual_seed(0)
    hf = transformers.ResNetModel(hc).eval()
    _randomise_bn(hf)
    hf.save_pretrained(tmp_path / "rn")
    model = convert.from_pretrained(str(tmp_path / "rn"))
    px = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = hf(pixel_values=px)
    out = model(_nhwc(px))
    ref_last = ref.last_hidden_state.permute(0, 2, 3, 1).numpy()
    assert np.abs(np.asarray(out["last_hidden_state"]) - ref_last).max() < 1e-4
    assert np.abs(np.asarray(out["features"]) - ref.pooler_output[:, :, 0, 0].numpy()).max() < 1e-4
    convert.save_pretrained(model, str(tmp_path / "back"))
    again = transformers.ResNetModel.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        np.testing.assert_allclose(again(pixel_values=px).pooler_output.numpy(), ref.pooler_output.numpy(),
                                   atol=1e-6)


def test_random_resized_crop_and_normalisation():
    # an image whose red channel is the column and green channel the row: crops keep that geometry
    h, w = 120, 200
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w).astype(np.uint8)[None, :]
    img[..., 1] = np.linspace(0, 255, h).astype(np.uint8)[:, None]
    a = images.random_resized_crop(img, np.random.default_rng(0), 64)
    b = images.random_resized_crop(img, np.random.default_rng(0), 64)
    np.testing.assert_array_equal(a, b)  # the generator decides everything
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert (np.diff(a[..., 0].astype(int), axis=1) >= -1).all() and (np.diff(a[..., 1].astype(int), axis=0) >= -1).all()
    areas = []
    for s in range(200):
        box = images.crop_box(h, w, np.random.default_rng(s))
        top, left, ch, cw = box
        assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w
        areas.append(ch * cw / (h * w))
    assert 0.08 - 1e-6 <= min(areas) and max(areas) <= 1.0 and np.std(areas) > 0.1
    x = images.normalize(a)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], (a[0, 0] / 255.0 - images.IMAGENET_MEAN) / images.IMAGENET_STD, rtol=1e-6)
    c = images.center_crop(img, 64)
    assert c.shape == (64, 64, 3)


@pytest.mark.parametrize("kind, processor", [("vit", transformers.ViTImageProcessor),
                                             ("resnet", transformers.ConvNextImageProcessor)])
def test_each_teacher_normalises_as_its_checkpoints_processor(kind, processor, tmp_path):
    """ViT-L/16's processor: mean = std = 0.5; ResNet-50's: ImageNet statistics. The checkpoint's own
    preprocessor_config.json decides; without one, the family's released checkpoint's (google/vit-large-patch16-224,
    microsoft/resnet-50: their preprocessor configs' values, given to the processor here)."""
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)

    def theirs(p):
        out = p(img, do_resize=False, do_center_crop=False, return_tensors="np")["pixel_values"][0]
        return np.transpose(out, (1, 2, 0))

    released = {"vit": dict(image_mean=[0.5] * 3, image_std=[0.5] * 3),
                "resnet": dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])}[kind]
    default = images.normalization(None, kind)
    np.testing.assert_allclose(images.normalize(img, *default), theirs(processor(**released)), rtol=1e-5, atol=1e-5)
    # a checkpoint directory whose processor says otherwise
    custom = processor(image_mean=[0.1, 0.2, 0.3], image_std=[0.9, 0.8, 0.7])
    custom.save_pretrained(str(tmp_path))
    stats = images.normalization(str(tmp_path), kind)
    np.testing.assert_allclose(images.normalize(img, *stats), theirs(custom), rtol=1e-5, atol=1e-5)
    expected_mean = {"vit": 0.5, "resnet": images.IMAGENET_MEAN}[kind]
    np.testing.assert_allclose(default[0], expected_mean)
    # the Multi2Cap system hands the teacher what its checkpoint says
    from configs import multi2cap as m2c_config
    from kdjax.systems.multi2cap.models import teacher_normalization

    cfg = m2c_config.get_config("base" if kind == "vit" else "small")
    np.testing.assert_allclose(teacher_normalization(cfg)[0], expected_mean)
    cfg.teacher.checkpoint = str(tmp_path)
    np.testing.assert_allclose(teacher_normalization(cfg)[1], [0.9, 0.8, 0.7])
