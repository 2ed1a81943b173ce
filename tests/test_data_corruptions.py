"""Corruptions: pure, seeded, reproducible from params, severity maps to the documented parameters."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from data_builders import corruptions
from data_builders.corruptions import Context, corrupt, reapply, small_size


def scene_image(size=64):
    pixels = np.full((size, size, 3), 255, np.uint8)
    pixels[16:40, 10:34] = (220, 30, 30)
    return Image.fromarray(pixels)


def colors(image):
    return {tuple(int(v) for v in p) for p in np.asarray(image).reshape(-1, 3)}


CTX = Context(key_box=(10, 16, 34, 40), replacement=Image.new("RGB", (32, 32), (0, 200, 0)))


@pytest.mark.parametrize("name", corruptions.NAMES)
def test_pure_deterministic_and_reproducible_from_params(name):
    image = scene_image()
    before = image.tobytes()
    a, params_a = corrupt(name, image, np.random.default_rng(7), 1.0 if name in ("blank", "irrelevant") else 0.5, CTX)
    b, params_b = corrupt(name, image, np.random.default_rng(7), 1.0 if name in ("blank", "irrelevant") else 0.5, CTX)
    assert image.tobytes() == before  # the input is untouched
    assert a.mode == "RGB" and a.size == image.size
    assert params_a == params_b and a.tobytes() == b.tobytes()
    assert reapply(name, image, params_a, CTX).tobytes() == a.tobytes()
    assert a.tobytes() != before


def test_severity_to_parameters():
    image = scene_image(64)
    rng = np.random.default_rng(0)
    assert corrupt("blur", image, rng, 0.5)[1] == {"radius": 4.0}
    assert corrupt("noise", image, rng, 0.25)[1]["std"] == 32.0
    assert corrupt("thumbnail", image, rng, 0.5)[1] == {"side": 35, "quality": 48}
    assert corrupt("thumbnail", image, rng, 1.0)[1] == {"side": 6, "quality": 5}
    blank, params = corrupt("blank", image, rng, 1.0, Context(blank_color=(1, 2, 3)))
    assert params == {"color": [1, 2, 3]} and colors(blank) == {(1, 2, 3)}


@pytest.mark.parametrize("size,severity", [(64, 0.5), (64, 1.0), (224, 0.3), (97, 0.8)])
def test_thumbnail_equals_a_jpeg_file_round_trip(size, severity):
    """The direct JPEG decode gives the pixels a saved-and-reopened JPEG file gives."""
    image = scene_image(size)
    out, params = corrupt("thumbnail", image, None, severity)
    small = image.resize(small_size(image.size, params["side"]), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=params["quality"])
    with Image.open(io.BytesIO(buffer.getvalue())) as reopened:
        expected = reopened.convert("RGB").resize(image.size, Image.Resampling.BILINEAR)
    assert out.tobytes() == expected.tobytes()


def test_stronger_blur_moves_further_from_the_original():
    image = scene_image()
    clean = np.asarray(image, np.float32)
    errors = [np.abs(np.asarray(corrupt("blur", image, np.random.default_rng(0), s)[0], np.float32) - clean).mean()
              for s in (0.1, 0.4, 1.0)]
    assert errors[0] < errors[1] < errors[2]


def test_occlusion_covers_the_key_box():
    image = scene_image()
    full, params = corrupt("occlude_key", image, np.random.default_rng(0), 1.0, CTX)
    assert params["box"] == [9, 15, 35, 41] and params["key_box"] == [10, 16, 34, 40]
    assert colors(full.crop((10, 16, 34, 40))) == {(128, 128, 128)}
    for seed in range(8):
        part, params = corrupt("occlude_key", image, np.random.default_rng(seed), 0.5, CTX)
        x0, y0, x1, y1 = params["box"]
        assert (x1 - x0) * (y1 - y0) == 12 * 24  # half of the 24x24 key box, from one side
        gray = np.all(np.asarray(part) == 128, axis=2).sum()
        assert gray == 12 * 24


def test_irrelevant_uses_the_replacement_and_needs_one():
    out, _ = corrupt("irrelevant", scene_image(), np.random.default_rng(0), 1.0, CTX)
    assert out.size == (64, 64) and colors(out) == {(0, 200, 0)}
    with pytest.raises(ValueError, match="needs a replacement image"):
        corrupt("irrelevant", scene_image(), np.random.default_rng(0), 1.0)
    with pytest.raises(ValueError, match="needs the key region"):
        corrupt("occlude_key", scene_image(), np.random.default_rng(0), 1.0)


def test_unknown_names_and_bad_severities():
    with pytest.raises(ValueError, match=r"unknown corruption 'blurr'; did you mean 'blur'\? available: \["):
        corrupt("blurr", scene_image(), np.random.default_rng(0), 0.5)
    for bad in (0.0, -0.1, 1.01, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="out of range"):
            corrupt("blur", scene_image(), np.random.default_rng(0), bad)
    with pytest.raises(ValueError, match="not graded"):
        corrupt("blank", scene_image(), np.random.default_rng(0), 0.5)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(["blur", "noise", "thumbnail", "occlude_key"]),
       severity=st.floats(min_value=0.01, max_value=1.0), seed=st.integers(0, 2**31),
       width=st.integers(8, 80), height=st.integers(8, 80))
def test_any_graded_corruption_keeps_size_and_is_reproducible(name, severity, seed, width, height):
    image = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))
    ctx = Context(key_box=(0, 0, max(1, width // 2), max(1, height // 2)))
    out, params = corrupt(name, image, np.random.default_rng(seed), severity, ctx)
    assert out.size == image.size and out.mode == "RGB"
    assert reapply(name, image, params, ctx).tobytes() == out.tobytes()
