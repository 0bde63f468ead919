"""tf.train.Example and TFRecord bytes, written without importing TensorFlow.

An Example is a small protobuf (Features: map<string, Feature>; Feature: one of BytesList, FloatList,
Int64List), so its wire format is written here directly. Keys are written in sorted order, which makes
the bytes a pure function of the features: protobuf itself promises no map order across processes.
TFRecord framing is a length, the data and two masked CRC32C checksums.
"""
from __future__ import annotations

import struct
from typing import Dict, Sequence, Union

import google_crc32c

FeatureValue = Union[Sequence[bytes], Sequence[float], Sequence[int]]

_LEN = 2  # protobuf wire type for length-delimited fields


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s are ten-byte two's complement varints
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(len(payload)) + payload


def bytes_feature(values: Sequence[bytes]) -> bytes:
    return _field(1, b"".join(_field(1, value) for value in values))


def float_feature(values: Sequence[float]) -> bytes:
    packed = struct.pack(f"<{len(values)}f", *values)
    return _field(2, _field(1, packed) if values else b"")


def int64_feature(values: Sequence[int]) -> bytes:
    packed = b"".join(_varint(value) for value in values)
    return _field(3, _field(1, packed) if values else b"")


def encode_example(features: Dict[str, bytes]) -> bytes:
    """A serialized tf.train.Example from already-encoded features (see the *_feature functions)."""
    entries = b"".join(
        _field(1, _field(1, key.encode("utf-8")) + _field(2, feature))
        for key, feature in sorted(features.items())
    )
    return _field(1, entries)


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def tfrecord_frame(record: bytes) -> bytes:
    """One record in TFRecord framing, ready to append to a .tfrecord file."""
    length = struct.pack("<Q", len(record))
    return length + _masked_crc(length) + record + _masked_crc(record)
