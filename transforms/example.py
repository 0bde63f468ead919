"""tf.train.Example and TFRecord bytes, written without importing TensorFlow.

An Example is a small protobuf (Features: map<string, Feature>; Feature: one of BytesList, FloatList,
Int64List), so its wire format is written here directly. Keys are written in sorted order, which makes
the bytes a pure function of the features: protobuf itself promises no map order across processes.
TFRecord framing is a length, the data and two masked CRC32C checksums.
"""
from __future__ import annotations

import functools
import struct
from typing import Dict, Sequence

import google_crc32c

Chunks = Sequence[bytes]  # a serialized message in pieces, joined once at the end

_LEN = 2  # protobuf wire type for length-delimited fields
_JOIN_BELOW = 64 * 1024  # bytes


_ONE_BYTE = tuple(bytes((value,)) for value in range(0x80))  # most tags and lengths: no loop


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    value &= (1 << 64) - 1  # negative int64s are ten-byte two's complement varints
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: Chunks) -> Chunks:
    """A length-delimited field around `payload`, a sequence of byte strings.

    Small payloads are joined into one piece (fewer pieces to checksum and write); large ones, such
    as an image, are passed through and never copied.
    """
    size = sum(map(len, payload))
    header = _ONE_BYTE[number << 3 | _LEN] + _varint(size)  # field numbers here are all below 16
    if size <= _JOIN_BELOW:
        return (header + b"".join(payload),)
    return (header, *payload)


@functools.lru_cache(maxsize=1024)
def _map_key(key: str) -> bytes:
    """The key field of a feature-map entry: the same few keys in every record, encoded once."""
    return _field(1, (key.encode("utf-8"),))[0]


def bytes_feature(values: Sequence[bytes]) -> Chunks:
    return _field(1, [chunk for value in values for chunk in _field(1, (value,))])


def float_feature(values: Sequence[float]) -> Chunks:
    packed = struct.pack(f"<{len(values)}f", *values)
    return _field(2, _field(1, (packed,)) if values else ())


def int64_feature(values: Sequence[int]) -> Chunks:
    packed = b"".join(_varint(value) for value in values)
    return _field(3, _field(1, (packed,)) if values else ())


def example_chunks(features: Dict[str, Chunks]) -> Chunks:
    """A serialized tf.train.Example, in pieces, from already-encoded features (the *_feature functions).

    The pieces are written to the file one after another and never joined: an image's bytes are not
    copied at all (each copy of a photo-sized buffer is a fresh allocation and its page faults).
    """
    entries = [
        chunk
        for key, feature in sorted(features.items())
        for chunk in _field(1, (_map_key(key), *_field(2, feature)))
    ]
    return _field(1, entries)


def encode_example(features: Dict[str, Chunks]) -> bytes:
    """A serialized tf.train.Example as one byte string."""
    return b"".join(example_chunks(features))


def _masked_crc(chunks: Chunks) -> bytes:
    crc = 0
    for chunk in chunks:
        crc = google_crc32c.extend(crc, chunk)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def tfrecord_frame(record: Chunks) -> Chunks:
    """One record, given in pieces, in TFRecord framing: the pieces to append to a .tfrecord file."""
    length = struct.pack("<Q", sum(len(chunk) for chunk in record))
    return (length, _masked_crc((length,)), *record, _masked_crc(record))
