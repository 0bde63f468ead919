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


# The two helpers below run about 30 times per record: the one-byte length is looked up in place, not
# through _varint's call.

def _prefix(number: int, size: int) -> bytes:
    """The tag and length of a length-delimited field (field numbers here are all below 16)."""
    return _ONE_BYTE[number << 3 | _LEN] + (_ONE_BYTE[size] if size < 0x80 else _varint(size))


def _message(number: int, payload: bytes) -> bytes:
    size = len(payload)
    return _ONE_BYTE[number << 3 | _LEN] + (_ONE_BYTE[size] if size < 0x80 else _varint(size)) + payload


@functools.lru_cache(maxsize=1024)
def _map_key(key: str) -> bytes:
    """The key field of a feature-map entry: the same few keys in every record, encoded once."""
    return _message(1, key.encode("utf-8"))


# A feature is a serialized Feature message in pieces: one piece, except around a large value (an image),
# which is passed through and never copied. Small ones are built as whole byte strings: most of a
# record's fields are a few bytes, and per-piece bookkeeping cost more than the bytes themselves.

def bytes_feature(values: Sequence[bytes]) -> Chunks:
    if len(values) == 1 and len(values[0]) <= _JOIN_BELOW:  # most of a record's byte features
        return (_message(1, _message(1, values[0])),)
    if sum(map(len, values)) <= _JOIN_BELOW:
        return (_message(1, b"".join([_message(1, value) for value in values])),)
    pieces = []
    for value in values:
        pieces += (_prefix(1, len(value)), value)
    return (_prefix(1, sum(map(len, pieces))), *pieces)


def float_feature(values: Sequence[float]) -> Chunks:
    packed = _message(1, struct.pack(f"<{len(values)}f", *values)) if values else b""
    return (_message(2, packed),)


def int64_feature(values: Sequence[int]) -> Chunks:
    packed = _message(1, b"".join([_varint(value) for value in values])) if values else b""
    return (_message(3, packed),)


def example_chunks(features: Dict[str, Chunks]) -> Chunks:
    """A serialized tf.train.Example, in pieces, from already-encoded features (the *_feature functions).

    The pieces are written to the file one after another and never joined: an image's bytes are not
    copied at all (each copy of a photo-sized buffer is a fresh allocation and its page faults).
    """
    entries = []
    for key, feature in sorted(features.items()):
        if len(feature) == 1:
            entries.append(_message(1, _map_key(key) + _message(2, feature[0])))
        else:
            size = sum(map(len, feature))
            head = _map_key(key) + _prefix(2, size)
            entries += (_prefix(1, len(head) + size) + head, *feature)
    return (_prefix(1, sum(map(len, entries))), *entries)


def encode_example(features: Dict[str, Chunks]) -> bytes:
    """A serialized tf.train.Example as one byte string."""
    return b"".join(example_chunks(features))


def mask_crc(crc: int) -> int:
    """TFRecord's masking of a CRC32C (so a checksum of data holding checksums stays meaningful)."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _masked_crc(chunks: Chunks) -> bytes:
    crc = 0
    for chunk in chunks:
        crc = google_crc32c.extend(crc, chunk)
    return struct.pack("<I", mask_crc(crc))


def tfrecord_frame(record: Chunks) -> Chunks:
    """One record, given in pieces, in TFRecord framing: the pieces to append to a .tfrecord file."""
    length = struct.pack("<Q", sum(len(chunk) for chunk in record))
    return (length, _masked_crc((length,)), *record, _masked_crc(record))
