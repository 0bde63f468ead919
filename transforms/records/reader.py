"""Reading OD API TFRecords back without TensorFlow: framing with CRC checks, Examples, record file names.

The reader trusts nothing it reads: a record whose checksum fails, a file cut short, or bytes that are
not a tf.train.Example come back as a RecordProblem instead of an exception, so one bad record is
reported and the rest of the file is still read. It works on folders written by any tool (ours, the
old generate_tfrecord.py, Roboflow, Datumaro, TFDS). Pure: finding and opening the files is
transforms/reports/record_files.py's.
"""
from __future__ import annotations

import dataclasses
import posixpath
import re
import struct
from typing import BinaryIO, Dict, Iterator, NamedTuple, Optional, Tuple, Union

import google_crc32c
from transforms.records.example import mask_crc

_HEADER = struct.Struct("<QI")  # length, masked CRC32C of the length
_FOOTER = struct.Struct("<I")  # masked CRC32C of the data
# A record longer than this is a corrupt length field, not a record: reading it would exhaust memory.
MAX_RECORD_BYTES = 1 << 31

# `train.record`, `x.tfrecord`, `x.tfrecords`, `name-train.tfrecord-00000-of-00004`, `a.record-00001-of-00010`,
# `x.tfrecord.gz`: the names the OD API's, TFDS's and other tools' writers give.
_RECORD_FILE = re.compile(r"\.(tf)?records?(-\d+-of-\d+)?(\.gz)?$|\.(tf)?records?-\d+$", re.IGNORECASE)
_TFDS_FILE = re.compile(r"^(?P<name>.+)-(?P<split>[^-.]+)\.tfrecord-\d{5}-of-\d{5}$")
_SPLIT_WORDS = ("train", "training", "val", "valid", "validation", "eval", "evaluation", "dev", "test", "testing")
NO_SPLIT = "all"


def masked_crc(data: bytes) -> int:
    return mask_crc(google_crc32c.value(data))


class RecordProblem(NamedTuple):
    """Why a record could not be read: `kind` is a stable code, `detail` one line for a person."""

    kind: str
    detail: str


class Frame(NamedTuple):
    """The `index`-th record of a file: its bytes, or the problem that stopped them being read."""

    index: int
    data: Optional[bytes]
    problem: Optional[RecordProblem] = None


def read_frames(stream: BinaryIO) -> Iterator[Frame]:
    """Every record of a TFRecord stream, each checked against both of its CRC32C sums.

    A bad data checksum costs that record only (the length was sound, so the next record is found); a
    bad length checksum or a file cut short ends the file, since nothing after it can be located.
    """
    index = 0
    while True:
        header = stream.read(_HEADER.size)
        if not header:
            return
        if len(header) < _HEADER.size:
            yield Frame(index, None, RecordProblem("record_truncated", f"the file ends inside record {index}'s header"))
            return
        length, length_crc = _HEADER.unpack(header)
        if masked_crc(header[:8]) != length_crc:
            detail = f"record {index}'s length field fails its CRC; the rest of the file cannot be located"
            yield Frame(index, None, RecordProblem("record_corrupt", detail))
            return
        if length > MAX_RECORD_BYTES:
            yield Frame(index, None, RecordProblem("record_corrupt", f"record {index} claims {length} bytes"))
            return
        data = stream.read(length)
        footer = stream.read(_FOOTER.size)
        if len(data) < length or len(footer) < _FOOTER.size:
            yield Frame(index, None, RecordProblem("record_truncated", f"the file ends inside record {index}"))
            return
        if masked_crc(data) != _FOOTER.unpack(footer)[0]:
            yield Frame(index, None, RecordProblem("record_corrupt", f"record {index}'s data fails its CRC"))
        else:
            yield Frame(index, data)
        index += 1


# --- tf.train.Example, decoded from its protobuf wire format -----------------------------------------


class Feature(NamedTuple):
    """One Example feature: `kind` is `bytes`, `float`, `int64`, or None for a Feature with no list set."""

    kind: Optional[str]
    values: list


_KINDS = {1: "bytes", 2: "float", 3: "int64"}
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


class ExampleError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ExampleError("a varint runs past its message")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[Tuple[int, int, Union[int, bytes]]]:
    """(field number, wire type, value) of every field of a protobuf message; unknown ones included."""
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire == _LEN:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ExampleError("a field runs past its message")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (_FIXED32, _FIXED64):
            size = 4 if wire == _FIXED32 else 8
            if pos + size > len(data):
                raise ExampleError("a field runs past its message")
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ExampleError(f"wire type {wire} is not used by any message of tf.train.Example")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _list_values(kind: str, payload: bytes) -> list:
    """A BytesList, FloatList or Int64List's values, packed or not (protobuf parsers accept both)."""
    values: list = []
    for number, wire, value in _fields(payload):
        if number != 1:
            continue
        if kind == "bytes" and wire == _LEN:
            values.append(value)
        elif kind == "float" and wire == _LEN:
            if len(value) % 4:
                raise ExampleError("a packed float list is not a whole number of floats")
            values.extend(struct.unpack(f"<{len(value) // 4}f", value))
        elif kind == "float" and wire == _FIXED32:
            values.append(struct.unpack("<f", value)[0])
        elif kind == "int64" and wire == _LEN:
            pos = 0
            while pos < len(value):
                number_value, pos = _varint(value, pos)
                values.append(_signed64(number_value))
        elif kind == "int64" and wire == _VARINT:
            values.append(_signed64(value))
        else:
            raise ExampleError(f"a {kind} list holds a value of wire type {wire}")
    return values


def _feature(payload: bytes) -> Feature:
    feature = Feature(None, [])
    for number, wire, value in _fields(payload):
        if number in _KINDS and wire == _LEN:  # protobuf's oneof: the last one set wins
            feature = Feature(_KINDS[number], _list_values(_KINDS[number], value))
    return feature


def parse_example(data: bytes) -> Dict[str, Feature]:
    """A serialized tf.train.Example as {key: Feature}; ExampleError when the bytes are not one."""
    features: Dict[str, Feature] = {}
    for number, wire, value in _fields(data):
        if number != 1 or wire != _LEN:
            continue
        for entry_number, entry_wire, entry in _fields(value):  # Features: map<string, Feature> feature = 1
            if entry_number != 1 or entry_wire != _LEN:
                continue
            key, feature = b"", Feature(None, [])
            for part_number, part_wire, part in _fields(entry):
                if part_number == 1 and part_wire == _LEN:
                    key = part
                elif part_number == 2 and part_wire == _LEN:
                    feature = _feature(part)
            try:
                features[key.decode("utf-8")] = feature
            except UnicodeDecodeError:
                raise ExampleError(f"a feature key is not UTF-8: {key[:40]!r}") from None
    return features


# --- The OD API view of a record -----------------------------------------------------------------------

BOX_KEYS = tuple(f"image/object/bbox/{corner}" for corner in ("xmin", "ymin", "xmax", "ymax"))


@dataclasses.dataclass(frozen=True)
class ODBox:
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    label: Optional[int]
    text: Optional[str]


@dataclasses.dataclass(frozen=True)
class ODRecord:
    """What inspect draws: read leniently, so a record with a missing key is still shown as far as it goes."""

    encoded: bytes
    width: Optional[int]
    height: Optional[int]
    filename: str
    boxes: Tuple[ODBox, ...]


def _first(features: Dict[str, Feature], key: str, kind: str):
    feature = features.get(key)
    return feature.values[0] if feature and feature.kind == kind and feature.values else None


def _values(features: Dict[str, Feature], key: str, kind: str) -> list:
    feature = features.get(key)
    return feature.values if feature and feature.kind == kind else []


def od_record(features: Dict[str, Feature]) -> ODRecord:
    """The image, size, name and boxes of an OD API record (boxes as far as all four corner lists go)."""
    corners = [_values(features, key, "float") for key in BOX_KEYS]
    labels = _values(features, "image/object/class/label", "int64")
    texts = _values(features, "image/object/class/text", "bytes")
    boxes = tuple(
        ODBox(
            *box,
            label=labels[i] if i < len(labels) else None,
            text=texts[i].decode("utf-8", "replace") if i < len(texts) else None,
        )
        for i, box in enumerate(zip(*corners))
    )
    filename = _first(features, "image/filename", "bytes") or _first(features, "image/source_id", "bytes") or b""
    return ODRecord(
        encoded=_first(features, "image/encoded", "bytes") or b"",
        width=_first(features, "image/width", "int64"),
        height=_first(features, "image/height", "int64"),
        filename=filename.decode("utf-8", "replace"),
        boxes=boxes,
    )


# --- Record file names -----------------------------------------------------------------------------------


def is_record_file(name: str) -> bool:
    return bool(_RECORD_FILE.search(name))


def guess_split(relative: str) -> str:
    """A file's split: the TFDS template's `{split}`, else the last split word in its path, else `all`.

    `raccoon-train.tfrecord-00000-of-00001` -> train; `valid/raccoons.tfrecord` (Roboflow) -> valid;
    `coco_testdev.record-00000-of-00010` -> all (no whole word names a split).
    """
    match = _TFDS_FILE.match(posixpath.basename(relative))
    if match:
        return match.group("split")
    words = re.split(r"[^a-z0-9]+", relative.lower())
    found = [word for word in words if word in _SPLIT_WORDS]
    return found[-1] if found else NO_SPLIT


def split_order(split: str):
    """A sort key: train, then the evaluation splits, then test, then any other split by name."""
    return (_SPLIT_WORDS.index(split) if split in _SPLIT_WORDS else len(_SPLIT_WORDS), split)
