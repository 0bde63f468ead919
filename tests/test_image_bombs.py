"""Decompression bombs: a few bytes declaring a huge image are refused from their headers, before any
decoder allocates the pixels, in every format the converter accepts; Pillow's own bomb check never
surfaces as a crash or a warning."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from PIL import Image

from tests import image_factory as make
from transforms.images.prep import DEFAULT_MAX_PIXELS, VALIDATE_FULL, VALIDATE_STRUCTURE, prepare_image
from transforms.images.probe import ImageProblem

REPO = Path(__file__).resolve().parents[1]

BOMBS = {
    "gif_screen": (lambda: make.gif_bomb(13000, 13000), "13000x13000"),
    # The screen is 1x1; a later frame reaches 13000x13000, which Pillow grows its canvas to when it gets there.
    "gif_later_frame": (lambda: make.gif_bomb(1, 1, ((0, 0, 1, 1), (0, 0, 13000, 13000)), whole=False), "13000x13000"),
    # A 1x1 frame placed at the far corner of a 1x1 screen: Pillow grows the canvas to 13000x13000 on open.
    "gif_frame_offset": (lambda: make.gif_bomb(1, 1, ((12999, 12999, 1, 1),)), "13000x13000"),
    "png": (lambda: make.png_bomb(20000, 20000), "20000x20000"),
    "webp": (lambda: make.webp_bomb(16384, 16384), "16384x16384"),
    "bmp": (lambda: make.bmp_bomb(20000, 20000), "20000x20000"),
    "tiff": (lambda: make.tiff_bomb(20000, 20000), "20000x20000"),
}


def _refusal(data: bytes, **options) -> ImageProblem:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageProblem) as raised:
            prepare_image(data, **options)
    assert [str(warning.message) for warning in caught] == []
    return raised.value


def test_the_gif_bomb_is_35_bytes():
    data = make.gif_bomb(13000, 13000)
    assert len(data) == 35
    with Image.open(__import__("io").BytesIO(make.gif_bomb(30, 20))) as small:  # the same shape, decodable
        small.load()
        assert small.size == (30, 20)


@pytest.mark.parametrize("validate", [VALIDATE_STRUCTURE, VALIDATE_FULL])
@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_bomb_is_refused_from_its_headers_with_its_size_and_the_flag(name, validate):
    factory, size = BOMBS[name]
    problem = _refusal(factory(), validate=validate)
    assert problem.reason == "image_too_large"
    assert size in problem.detail and "--max_pixels" in problem.detail


def test_the_limit_is_max_pixels_itself():
    data = make.gif_bomb(300, 200)
    assert prepare_image(data, max_pixels=60_000).info.width == 300
    problem = _refusal(data, max_pixels=59_999)
    assert problem.reason == "image_too_large" and "300x200" in problem.detail


def test_a_gif_is_judged_by_its_largest_frame_not_its_first():
    data = make.gif_bomb(10, 10, ((0, 0, 10, 10), (0, 0, 400, 300)))
    assert _refusal(data, max_pixels=100_000).reason == "image_too_large"
    assert prepare_image(data, max_pixels=120_000).conversion == "gif_to_jpeg"


@pytest.mark.parametrize(
    "fmt, options",
    [("GIF", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True}), ("PNG", {}), ("JPEG", {})],
)
def test_pillows_own_bomb_check_never_escapes(monkeypatch, fmt, options):
    """Pillow warns above its MAX_IMAGE_PIXELS and refuses above twice that, whatever --max_pixels says.
    With its limit lowered to 1000 pixels, a 64x48 image (3072) is over both: it must still be converted
    or validated as --max_pixels allows, with no warning."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = make.encode(make.gradient(64, 48), fmt, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = prepare_image(data, validate=VALIDATE_FULL)
    assert (prepared.info.width, prepared.info.height) == (64, 48)
    assert [str(warning.message) for warning in caught] == []


def test_pillows_refusal_is_reported_as_too_large_not_as_a_crash(monkeypatch):
    # Were Pillow's limit still lower than the size (another library lowered it after us), its error is ours.
    from transforms.images import prep as image_prep

    monkeypatch.setattr(image_prep, "_pillow", lambda max_pixels: Image)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    problem = _refusal(make.encode(make.gradient(64, 48), "BMP"))
    assert problem.reason == "image_too_large"


_MEASURE = """
import json, resource, sys
sys.path.insert(0, {repo!r})
from tests import image_factory as make
from transforms.images.prep import prepare_image
from transforms.images.probe import ImageProblem


def peak_kb():
    # ru_maxrss carries over a forking parent's peak across exec on Linux (a pytest process that imported
    # TensorFlow starts children at ~600 MB); VmHWM is this process's own peak.
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


data = {factory}
before = peak_kb()
try:
    prepare_image(data, validate="full")
    reason = None
except ImageProblem as problem:
    reason = problem.reason
print(json.dumps({{"reason": reason, "before_kb": before, "after_kb": peak_kb(),
                  "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


@pytest.mark.parametrize(
    "factory",
    ["make.gif_bomb(13000, 13000)", "make.png_bomb(20000, 20000)", "make.webp_bomb(16384, 16384)"],
)
def test_peak_memory_of_refusing_a_bomb_stays_far_below_its_decoded_size(factory):
    """In a fresh process, the peak resident size while the bomb is refused. Decoded, the GIF would be
    169 M pixels (over 500 MB as RGB), the PNG 400 MB, the WebP over 1 GB."""
    script = _MEASURE.format(repo=str(REPO), factory=factory)
    result = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    assert measured["reason"] == "image_too_large"
    assert measured["after_kb"] - measured["before_kb"] < 20 * 1024  # nothing decoded
    assert measured["after_kb"] < 200 * 1024, measured  # the interpreter, Pillow and numpy: ~40 MB


def test_the_default_limit_is_100_megapixels():
    assert DEFAULT_MAX_PIXELS == 100_000_000
