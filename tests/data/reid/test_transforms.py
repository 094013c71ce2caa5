"""BoT transforms: shapes, normalisation, and augmentation fixed by the per-sample generator."""

import torch

from stl_search.data.reid.transforms import build_reid_transform, random_erasing

from ...reid.helpers import tiny_reid_cfg


def test_train_transform_is_deterministic_per_generator_and_test_transform_normalises():
    cfg = tiny_reid_cfg()
    train, test = build_reid_transform(cfg, True), build_reid_transform(cfg, False)
    crop = torch.randint(0, 256, (3, 50, 21), dtype=torch.uint8)  # any size: resized to 32x16
    a = train(crop, torch.Generator().manual_seed(3))
    b = train(crop, torch.Generator().manual_seed(3))
    outs = [train(crop, torch.Generator().manual_seed(s)) for s in range(8)]
    assert a.shape == (3, 32, 16) and a.dtype == torch.float32
    assert torch.equal(a, b) and len({o.sum().item() for o in outs}) > 1
    plain = test(crop)
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(3, 1, 1)
    resized = torch.nn.functional.interpolate(
        crop[None].float(), size=(32, 16), mode="bilinear", antialias=True, align_corners=False
    )[0]
    torch.testing.assert_close(
        plain, (resized.round().clamp(0, 255) - mean) / std, atol=0.02, rtol=0
    )


def test_random_erasing_fills_one_rectangle_with_the_mean_pixel():
    img = torch.ones(3, 64, 32)
    out = random_erasing(img, torch.Generator().manual_seed(0))
    zero = (out == 0).all(dim=0)
    ys, xs = zero.nonzero(as_tuple=True)
    assert zero.any() and zero.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    assert 0.02 * 64 * 32 * 0.5 <= zero.sum() <= 0.4 * 64 * 32 * 1.5
