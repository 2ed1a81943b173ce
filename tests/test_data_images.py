"""Image helpers: stable hashing / seeding, the PNG writer, decoding and normalising untrusted images."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from data_builders.images import (
    BadImage,
    _words,
    decode,
    encode_png,
    normalise,
    pixel_digest,
    rng_for,
    stable_hash,
)


def test_stable_hash_and_rng_are_fixed_across_processes_and_versions():
    assert stable_hash("syn-train-000000") == 0xEA2D541C0D7236C5  # sha256-based, never Python's salted hash()
    a, b = rng_for(0, "syn-eval-000001", "blur@0.5"), rng_for(0, "syn-eval-000001", "blur@0.5")
    assert a.integers(1 << 30, size=4).tolist() == b.integers(1 << 30, size=4).tolist()
    assert rng_for(0, "x", "a").random() != rng_for(0, "x", "b").random() != rng_for(1, "x", "a").random()


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(-(2**40), 2**40), source_id=st.text(max_size=12), purpose=st.text(max_size=12))
def test_rng_for_is_the_default_rng_of_seed_and_hashes(seed, source_id, purpose):
    # the fast path hands SeedSequence the 32-bit words it would split the ints into; the stream must not move
    slow = np.random.default_rng([seed & 0xFFFFFFFF, stable_hash(source_id), stable_hash(purpose)])
    fast = rng_for(seed, source_id, purpose)
    assert fast.integers(1 << 62, size=6).tolist() == slow.integers(1 << 62, size=6).tolist()


@pytest.mark.parametrize("value", [0, 1, 2**32 - 1, 2**32, 2**63 + 5, 2**64 - 1])
def test_seed_words_match_how_seedsequence_splits_an_int(value):
    # hashes below 2**32 (one word) and 0 (one zero word) included: a wrong length would change the pool
    assert (np.random.SeedSequence([value, 7]).generate_state(4).tolist()
            == np.random.SeedSequence(np.array(_words(value) + _words(7), np.uint32)).generate_state(4).tolist())


@settings(max_examples=30, deadline=None)
@given(width=st.integers(1, 70), height=st.integers(1, 70), seed=st.integers(0, 2**32 - 1),
       level=st.integers(0, 9))
def test_png_writer_is_lossless(width, height, seed, level):
    image = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))
    with Image.open(io.BytesIO(encode_png(image, level))) as decoded:
        decoded.load()
        assert decoded.mode == "RGB" and decoded.size == image.size
        assert pixel_digest(decoded) == pixel_digest(image)


def test_decode_rejects_what_it_cannot_use():
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), "red").save(buffer, format="JPEG")
    good = buffer.getvalue()
    image, size = decode(good)
    assert image.mode == "RGB" and size == (40, 40)
    with pytest.raises(BadImage, match="corrupt or truncated"):
        decode(good[:200])
    with pytest.raises(BadImage, match="not an image file"):
        decode(b"GIF89a but not really")
    with pytest.raises(BadImage, match="below min_side=50"):
        decode(good, min_side=50)
    with pytest.raises(BadImage, match="more than max_pixels=100"):
        decode(good, max_pixels=100)


def test_normalise_downscales_long_sides_and_keeps_aspect():
    out = normalise(Image.new("RGB", (3000, 1000)), max_side=300)
    assert out.size == (300, 100)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (30, 10), "red")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert decode(buffer.getvalue())[0].size == (10, 30)
