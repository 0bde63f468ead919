"""Real image files of every kind the policy names, made with Pillow (from real photos where it matters)."""
from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(width: int = 64, height: int = 48, mode: str = "RGB") -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    rgb = np.stack([x, y, 255 - x], axis=2)
    image = Image.fromarray(rgb).convert(mode)
    if mode in ("RGBA", "LA"):  # real transparency, not an opaque alpha channel an encoder may drop
        image.putalpha(Image.fromarray(np.maximum(y, 32)))
    return image


def jpeg_with_orientation(photo: bytes, orientation: int) -> bytes:
    image = Image.open(io.BytesIO(photo))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return encode(image, "JPEG", quality=90, exif=exif.tobytes())


def cmyk_jpeg(photo: bytes) -> bytes:
    return encode(Image.open(io.BytesIO(photo)).convert("CMYK"), "JPEG", quality=90)


def ycck_jpeg(photo: bytes) -> bytes:
    """A CMYK JPEG relabelled YCCK (Adobe transform 2), which Pillow cannot write directly."""
    data = bytearray(cmyk_jpeg(photo))
    adobe = data.find(b"Adobe")
    data[adobe + 11] = 2  # the Adobe segment's transform byte
    return bytes(data)


def png16(width: int = 40, height: int = 30) -> bytes:
    values = (np.arange(width * height, dtype=np.uint32).reshape(height, width) * 53 % 65536).astype(np.uint16)
    return encode(Image.fromarray(values), "PNG")


def animated_gif() -> bytes:
    frames = [gradient(), gradient().transpose(Image.FLIP_LEFT_RIGHT)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def png_claiming_size(width: int, height: int) -> bytes:
    """A structurally whole PNG whose header claims a huge size (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def jpeg_with_undefined_quantization_table(photo: bytes) -> bytes:
    """Every marker in place and an end-of-image marker, but a frame that names a table nobody defined:
    the structure check passes, only a full decode can tell."""
    data = bytearray(photo)
    position = 2
    while True:
        marker, length = data[position + 1], int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            first_component = position + 4 + 6
            data[first_component + 2] = 3  # quantization table 3
            return bytes(data)
        position += 2 + length


def gif_bomb(width: int = 13000, height: int = 13000, frames=((0, 0, 1, 1),), whole: bool = True) -> bytes:
    """A GIF of a few dozen bytes (35 with one 1x1 frame) whose logical screen is width x height: a decoder
    that allocates the screen (Pillow does) pays for every pixel. `frames` are (left, top, width, height),
    each whole (every pixel colour 0), or, with whole=False, with the data of one pixel (a bomb's shape)."""
    screen = width.to_bytes(2, "little") + height.to_bytes(2, "little") + bytes([0x80, 0, 0])  # 2-colour table
    data = b"GIF89a" + screen + b"\x00\x00\x00\xff\xff\xff"
    for left, top, frame_width, frame_height in frames:
        descriptor = b"".join(value.to_bytes(2, "little") for value in (left, top, frame_width, frame_height))
        data += b"," + descriptor + b"\x00" + b"\x02" + _gif_sub_blocks(_lzw_zeros(frame_width * frame_height if whole else 1))
    return data + b";"


def _lzw_zeros(pixels: int) -> bytes:
    """GIF LZW (minimum code size 2) for `pixels` zeros: clear and 0, again and again, so codes stay 3 bits."""
    bits = value = 0
    out = bytearray()
    for code in [4, 0] * pixels + [5]:  # clear, index 0, ..., end of information
        value |= code << bits
        bits += 3
        while bits >= 8:
            out.append(value & 0xFF)
            value >>= 8
            bits -= 8
    if bits:
        out.append(value)
    return bytes(out)


def _gif_sub_blocks(data: bytes) -> bytes:
    return b"".join(bytes([len(data[i : i + 255])]) + data[i : i + 255] for i in range(0, len(data), 255)) + b"\x00"


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A whole, valid 1-bit grey PNG of width x height zeros: a few dozen kilobytes that decode to
    width x height bytes in Pillow's 8-bit grey mode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def webp_bomb(width: int = 16384, height: int = 16384) -> bytes:
    """A real animated WebP of two 16x16 frames, under 1 kB, on a width x height canvas (libwebp's largest is
    16384 x 16384): Pillow's open() has libwebp set up that canvas, and decoding fills it."""
    frames = [gradient(16, 16), gradient(16, 16).transpose(Image.FLIP_LEFT_RIGHT)]
    data = bytearray(encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=100))
    assert data[12:16] == b"VP8X", "an animated WebP starts with its canvas header"
    data[24:27] = (width - 1).to_bytes(3, "little")
    data[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(data)


def bmp_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A real 8x8 BMP whose info header is rewritten to declare width x height (a bomb's shape)."""
    data = bytearray(encode(gradient(8, 8), "BMP"))
    data[18:22] = width.to_bytes(4, "little")
    data[22:26] = height.to_bytes(4, "little")
    return bytes(data)


def tiff_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A real 8x8 TIFF whose first IFD is rewritten to declare width x height."""
    data = bytearray(encode(gradient(8, 8), "TIFF"))
    offset = int.from_bytes(data[4:8], "little")
    for entry in range(int.from_bytes(data[offset : offset + 2], "little")):
        start = offset + 2 + 12 * entry
        tag, kind = int.from_bytes(data[start : start + 2], "little"), int.from_bytes(data[start + 2 : start + 4], "little")
        if tag in (256, 257):
            size = (2 if kind == 3 else 4)
            data[start + 8 : start + 8 + size] = (width if tag == 256 else height).to_bytes(size, "little")
    return bytes(data)


# --- damaged PNG and JPEG files, as real bytes, for judging them the way TensorFlow's decoders do ---------


def png_chunk(kind: bytes, data: bytes, crc=None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return len(data).to_bytes(4, "big") + kind + data + crc.to_bytes(4, "big")


def png_chunks(png: bytes):
    """[(type, data), ...] of a PNG."""
    position, chunks = 8, []
    while position < len(png):
        length = int.from_bytes(png[position : position + 4], "big")
        chunks.append((png[position + 4 : position + 8], png[position + 8 : position + 8 + length]))
        position += 12 + length
    return chunks


def png_of(chunks) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(kind, data) for kind, data in chunks)


def damaged_pngs() -> dict:
    """One real PNG (noise, so its IDAT is long) and palette PNG, damaged in the ways libpng judges."""
    png = encode(Image.effect_noise((64, 48), 40).convert("RGB"), "PNG")
    chunks = png_chunks(png)
    ihdr, idat = chunks[0], [chunk for chunk in chunks if chunk[0] == b"IDAT"]
    assert len(idat) == 1
    pixels = zlib.decompress(idat[0][1])
    palette = png_chunks(encode(gradient(mode="P"), "PNG"))
    plte = [chunk for chunk in palette if chunk[0] == b"PLTE"]
    iend = (b"IEND", b"")
    text = (b"tEXt", b"Comment\x00hello")
    idat_at = png.find(b"IDAT")
    idat_length = int.from_bytes(png[idat_at - 4 : idat_at], "big")
    bad_idat_crc = bytearray(png)
    bad_idat_crc[idat_at + 4 + idat_length] ^= 0x01
    bad_ihdr_crc = bytearray(png)
    bad_ihdr_crc[8 + 8 + 13] ^= 0x01
    return {
        "png_good": png,
        "png_duplicate_ihdr": png_of([ihdr, ihdr] + chunks[1:]),
        "png_bad_ihdr_crc": bytes(bad_ihdr_crc),
        "png_bad_idat_crc": bytes(bad_idat_crc),
        "png_bad_iend_crc": png[:-4] + b"\x00\x00\x00\x00",
        "png_bad_ancillary_crc": png[:33] + png_chunk(*text, crc=1234) + png[33:],
        "png_truncated_idat": png_of([ihdr, (b"IDAT", idat[0][1][: len(idat[0][1]) // 2]), iend]),
        "png_cut_inside_idat": png[: idat_at + idat_length // 2],
        "png_missing_iend": png[:-12],
        "png_garbage_after_iend": png + b"garbage" * 10,
        "png_chunk_after_iend": png + png_chunk(*text),
        "png_palette_without_plte": png_of([chunk for chunk in palette if chunk[0] != b"PLTE"]),
        "png_palette_plte_after_idat": png_of(
            [palette[0]] + [c for c in palette if c[0] == b"IDAT"] + plte + [iend]
        ),
        "png_palette_plte_bad_length": png_of([palette[0], (b"PLTE", b"\x00" * 10)] + [c for c in palette[1:] if c[0] != b"PLTE"]),
        "png_duplicate_plte": png_of([ihdr, (b"PLTE", b"\x00" * 9), (b"PLTE", b"\x00" * 9)] + chunks[1:]),
        "png_rgb_plte_bad_length": png_of([ihdr, (b"PLTE", b"\x00" * 10)] + chunks[1:]),  # only a warning
        "png_idat_before_ihdr": png_of(idat + [ihdr, iend]),
        "png_text_before_ihdr": png_of([text] + chunks),
        "png_no_idat": png_of([ihdr, iend]),
        "png_unknown_critical_chunk": png_of([ihdr, (b"ABCD", b"xx")] + chunks[1:]),
        "png_invalid_chunk_type": png_of([ihdr, (b"te#t", b"xx")] + chunks[1:]),
        "png_ihdr_14_bytes": png_of([(b"IHDR", ihdr[1] + b"\x00")] + chunks[1:]),
        "png_ihdr_bad_depth": png_of([(b"IHDR", ihdr[1][:8] + b"\x03" + ihdr[1][9:])] + chunks[1:]),
        "png_idat_split_by_another_chunk": png_of(
            [ihdr, (b"IDAT", idat[0][1][:100]), text, (b"IDAT", idat[0][1][100:]), iend]
        ),
        "png_idat_split_contiguous": png_of([ihdr, (b"IDAT", idat[0][1][:100]), (b"IDAT", idat[0][1][100:]), iend]),
        "png_bad_crc_idat_after_the_image_data": png_of([ihdr] + idat + [text])
        + png_chunk(b"IDAT", b"junk", crc=7) + png_chunk(*iend),
        "png_too_little_pixel_data": png_of([ihdr, (b"IDAT", zlib.compress(pixels[:-500])), iend]),
        "png_bad_filter_byte": png_of([ihdr, (b"IDAT", zlib.compress(b"\x09" + pixels[1:])), iend]),
        "png_bad_zlib_checksum": png_of([ihdr, (b"IDAT", zlib.compress(pixels)[:-4] + b"\x00" * 4), iend]),
        "png_iend_with_data": png_of(chunks[:-1] + [(b"IEND", b"abcd")]),
        "png_wider_than_libpng_allows": png_of([
            (b"IHDR", (1_000_001).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])),
            (b"IDAT", zlib.compress(b"\x00" * 1_000_002)), iend,
        ]),
    }


def damaged_jpegs(photo: bytes) -> dict:
    scan = photo.find(b"\xff\xda")
    progressive = encode(Image.open(io.BytesIO(photo)), "JPEG", progressive=True, quality=90)
    scans = [i for i in range(len(progressive)) if progressive.startswith(b"\xff\xda", i)]
    quantization = photo.find(b"\xff\xdb")
    return {
        "jpeg_good": photo,
        "jpeg_truncated_mid_scan": photo[: (scan + len(photo)) // 2],
        "jpeg_truncated_mid_scan_then_eoi": photo[: (scan + len(photo)) // 2] + b"\xff\xd9",
        "jpeg_garbage_after_eoi": photo + b"garbage" * 20,
        "jpeg_progressive": progressive,
        "jpeg_progressive_cut_after_3_scans": progressive[: scans[3]],
        "jpeg_cmyk": cmyk_jpeg(photo),
        "jpeg_ycck": ycck_jpeg(photo),
        "jpeg_undefined_quantization_table": jpeg_with_undefined_quantization_table(photo),
        "jpeg_stray_bytes_before_a_marker": photo[:quantization] + b"junk" + photo[quantization:],
        "jpeg_without_eoi": photo[:-2],
    }
