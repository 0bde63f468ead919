"""What `verify` judges: every way an OD API record can be wrong, as pure checks on parsed Examples.

Each problem has a stable kind, a severity and one line that says what it means. `error`s break or
silently spoil training (a box outside the image, a label the model does not know); `note`s are
deviations from the OD API's conventions that its decoders tolerate, named so a reader knows which
tool wrote the folder (the old generate_tfrecord.py writes `jpg` and no sha256, for instance).
"""
from __future__ import annotations

import hashlib
import io
import math
import warnings
from collections import defaultdict
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

from PIL import Image

from transforms.images.prep import decode_like_tensorflow
from transforms.images.probe import ImageProblem, sniff_format
from transforms.records.reader import BOX_KEYS, Feature, split_order

ERROR, NOTE = "error", "note"

PROBLEMS: Dict[str, Tuple[str, str]] = {
    "record_corrupt": (ERROR, "a checksum fails: TensorFlow stops reading the file with DataLossError"),
    "record_truncated": (ERROR, "the file ends inside a record: a copy cut short"),
    "file_unreadable": (ERROR, "a record file that cannot be opened or decompressed"),
    "record_unparseable": (ERROR, "the record's bytes are not a tf.train.Example"),
    "key_missing": (ERROR, "a key the OD API decoders need is absent"),
    "key_mistyped": (ERROR, "a key holds the wrong list type (e.g. height as float), which fails parsing"),
    "image_empty": (ERROR, "image/encoded holds no bytes"),
    "image_undecodable": (ERROR, "image/encoded does not decode by the rules of TensorFlow's decoders (libpng, libjpeg-turbo)"),
    "image_unsupported_format": (ERROR, "an image format TensorFlow's decode_image cannot read"),
    "size_mismatch": (ERROR, "image/width or image/height disagrees with the decoded image"),
    "box_not_finite": (ERROR, "a box coordinate is NaN or infinite"),
    "box_out_of_range": (ERROR, "a box coordinate outside [0, 1] (pixel coordinates, or a box beyond the image)"),
    "box_inverted": (ERROR, "xmin > xmax or ymin > ymax (also what a swap of x and y often leaves)"),
    "box_empty": (ERROR, "a box with no width or no height"),
    "list_length_mismatch": (ERROR, "the per-object lists of one record have different lengths"),
    "label_not_in_map": (ERROR, "image/object/class/label is not an id of the label map (0 is background)"),
    "label_text_mismatch": (ERROR, "image/object/class/text is not the label map's name for the label"),
    "label_map_invalid": (ERROR, "the label map found beside the records does not parse"),
    "publish_interrupted": (ERROR, "a run was stopped while it published: files of two datasets may be mixed until "
                                   "the next convert into this folder finishes the publish"),
    "label_text_inconsistent": (ERROR, "one label id comes with different class texts across records"),
    "sha256_mismatch": (ERROR, "image/key/sha256 is not the sha256 of image/encoded"),
    "image_duplicate_across_splits": (ERROR, "byte-identical images in more than one split: an evaluation leak"),
    "no_records": (ERROR, "the record files hold no record at all: nothing to train or evaluate on"),
    "no_boxes": (ERROR, "no record has a box: every image is a negative example, almost always a mistaken conversion"),
    "xy_swap_suspected": (NOTE, "the record's broken boxes all become valid with xmin and ymin exchanged"),
    "key_absent": (NOTE, "an optional key the OD API's own converters write is absent"),
    "format_key_disagrees": (NOTE, "image/format does not name the bytes' format (decoders go by content)"),
    "image_duplicate_within_split": (NOTE, "byte-identical images within one split"),
    "source_id_duplicate": (NOTE, "one image/source_id for several records of a split: COCO evaluation keeps one"),
    "file_empty": (NOTE, "a record file with no records (a shard no image fell into)"),
    "label_map_absent": (NOTE, "no label map found or given: label ids checked only for consistency"),
}

MAX_EXAMPLES = 5
# Float32 rounding of x / width can land a hair outside [0, 1]; that is not a wrong box.
COORDINATE_TOLERANCE = 1e-6

_EXPECTED_KINDS = {
    "image/encoded": "bytes",
    "image/format": "bytes",
    "image/filename": "bytes",
    "image/source_id": "bytes",
    "image/key/sha256": "bytes",
    "image/height": "int64",
    "image/width": "int64",
    **{key: "float" for key in BOX_KEYS},
    "image/object/class/text": "bytes",
    "image/object/class/label": "int64",
    "image/object/area": "float",
    "image/object/is_crowd": "int64",
    "image/object/difficult": "int64",
    "image/object/truncated": "int64",
}
_REQUIRED = ("image/encoded", "image/height", "image/width")
_ADVISED = ("image/format", "image/filename", "image/source_id", "image/key/sha256")
# Per-object lists that, when present and not empty, hold one value per box.
_OBJECT_LISTS = (
    "image/object/class/text",
    "image/object/class/label",
    "image/object/area",
    "image/object/is_crowd",
    "image/object/difficult",
    "image/object/truncated",
    "image/object/mask",
)
# What tf.io.decode_image (the OD API's decoder) reads, by Pillow's format names.
_TF_DECODABLE = {"JPEG": "jpeg", "PNG": "png", "GIF": "gif", "BMP": "bmp"}


class Finding(NamedTuple):
    kind: str
    detail: str


class ImageFacts(NamedTuple):
    """What cross-record checks need from one record."""

    sha256: Optional[str]
    source_id: Optional[bytes]
    labels_texts: Tuple[Tuple[int, str], ...]


def _values(features: Mapping[str, Feature], key: str, kind: str) -> Optional[list]:
    feature = features.get(key)
    if feature is None or feature.kind not in (kind, None):
        return None
    return feature.values


def check_keys(features: Mapping[str, Feature]) -> List[Finding]:
    findings = []
    for key, kind in _EXPECTED_KINDS.items():
        feature = features.get(key)
        if feature is not None and feature.kind not in (kind, None):
            findings.append(Finding("key_mistyped", f"{key} is a {feature.kind} list; the OD API reads a {kind} list"))
    for key in _REQUIRED:
        feature = features.get(key)
        if feature is None or not feature.values:
            findings.append(Finding("key_missing", f"{key} is absent"))
    for key in _ADVISED:
        if key not in features:
            findings.append(Finding("key_absent", f"{key} is absent"))
    return findings


def check_image(features: Mapping[str, Feature]) -> Tuple[List[Finding], Optional[str]]:
    """Decode image/encoded fully; compare its size and format with the record's keys. Also its sha256."""
    encoded = (_values(features, "image/encoded", "bytes") or [None])[0]
    if encoded is None:
        return [], None
    if not encoded:
        return [Finding("image_empty", "image/encoded is zero bytes")], None
    sha256 = hashlib.sha256(encoded).hexdigest()
    findings = []
    stated_sha = (_values(features, "image/key/sha256", "bytes") or [None])[0]
    if stated_sha is not None and stated_sha.decode("ascii", "replace").lower() != sha256:
        findings.append(Finding("sha256_mismatch", f"image/key/sha256 {stated_sha[:16]!r}..., the bytes hash to {sha256[:16]}..."))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if sniff_format(encoded) in ("jpeg", "png"):
                # libpng's and libjpeg-turbo's rules (TensorFlow's decoders), which Pillow alone does not apply:
                # Pillow decodes a PNG with two IHDR chunks or a bad IDAT CRC that decode_png refuses.
                info = decode_like_tensorflow(encoded)
                actual_format, (width, height) = info.format.upper(), (info.width, info.height)
            else:
                with Image.open(io.BytesIO(encoded)) as image:
                    actual_format, (width, height) = image.format, image.size
                    image.load()  # raw pixels, EXIF ignored: what TensorFlow's decoders give the model
    except ImageProblem as problem:
        kind = "image_unsupported_format" if problem.reason == "image_unsupported_format" else "image_undecodable"
        return findings + [Finding(kind, f"{problem.reason}: {problem.detail}")], sha256
    except Exception as error:  # Pillow raises many kinds; any of them means the model never sees this image
        return findings + [Finding("image_undecodable", f"{type(error).__name__}: {error}")], sha256
    if actual_format not in _TF_DECODABLE:
        findings.append(Finding("image_unsupported_format", f"{actual_format} bytes"))
    stated_format = (_values(features, "image/format", "bytes") or [None])[0]
    if stated_format is not None:
        stated = stated_format.decode("utf-8", "replace").strip().lower()
        expected = _TF_DECODABLE.get(actual_format, (actual_format or "?").lower())
        if stated != expected:
            findings.append(Finding("format_key_disagrees", f"image/format is {stated!r}; the bytes are {expected}"))
    stated_size = [(_values(features, f"image/{side}", "int64") or [None])[0] for side in ("width", "height")]
    if None not in stated_size and tuple(stated_size) != (width, height):
        hint = " (swapped: sizes from an EXIF-rotated view?)" if tuple(stated_size) == (height, width) else ""
        findings.append(
            Finding("size_mismatch", f"record says {stated_size[0]}x{stated_size[1]}, the image is {width}x{height}{hint}")
        )
    return findings, sha256


def _box_problem(xmin: float, ymin: float, xmax: float, ymax: float) -> Optional[Tuple[str, str]]:
    corners = (xmin, ymin, xmax, ymax)
    if not all(math.isfinite(value) for value in corners):
        return "box_not_finite", ""
    if min(corners) < -COORDINATE_TOLERANCE or max(corners) > 1 + COORDINATE_TOLERANCE:
        hint = " (pixel coordinates, not normalized?)" if max(corners) > 2 else ""
        return "box_out_of_range", hint
    if xmin > xmax or ymin > ymax:
        return "box_inverted", ""
    if xmin == xmax or ymin == ymax:
        return "box_empty", ""
    return None


def check_boxes(features: Mapping[str, Feature]) -> List[Finding]:
    corners = [_values(features, key, "float") or [] for key in BOX_KEYS]
    findings = []
    lengths = {key: len(values) for key, values in zip(BOX_KEYS, corners)}
    for key in _OBJECT_LISTS:
        feature = features.get(key)
        if feature is not None and feature.values:
            lengths[key] = len(feature.values)
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{key[len('image/object/'):]} {n}" for key, n in lengths.items())
        findings.append(Finding("list_length_mismatch", listed))
    count = min(len(values) for values in corners)
    if count and "image/object/class/label" not in features:
        findings.append(Finding("key_missing", f"image/object/class/label is absent but the record has {count} boxes"))
    if count and "image/object/class/text" not in features:
        findings.append(Finding("key_absent", "image/object/class/text is absent"))
    boxes = list(zip(*corners))
    problems = [(index, _box_problem(*box)) for index, box in enumerate(boxes)]
    for index, problem in problems:
        if problem:
            kind, hint = problem
            coordinates = ", ".join(f"{name} {value:.4g}" for name, value in zip(("xmin", "ymin", "xmax", "ymax"), boxes[index]))
            findings.append(Finding(kind, f"box {index}: {coordinates}{hint}"))
    if any(problem for _, problem in problems) and all(_box_problem(y0, x0, x1, y1) is None for x0, y0, x1, y1 in boxes):
        # Only a swap that breaks a box can be seen; one that leaves every box valid needs the source.
        findings.append(Finding("xy_swap_suspected", "every box is valid with xmin and ymin exchanged"))
    return findings


def check_labels(
    features: Mapping[str, Feature], label_map: Optional[Mapping[int, str]]
) -> Tuple[List[Finding], Tuple[Tuple[int, str], ...]]:
    """Labels against the label map; also the (label, text) pairs for the cross-record consistency check."""
    labels = _values(features, "image/object/class/label", "int64") or []
    texts = [text.decode("utf-8", "replace") for text in _values(features, "image/object/class/text", "bytes") or []]
    findings = []
    for index, label in enumerate(labels):
        text = texts[index] if index < len(texts) else None
        if label_map is not None and label not in label_map:
            background = " (0 is the background class)" if label == 0 else ""
            named = f" ({text!r})" if text is not None else ""
            findings.append(Finding("label_not_in_map", f"box {index}: label {label}{named}{background}"))
        elif label_map is not None and text is not None and label_map[label] != text:
            findings.append(Finding("label_text_mismatch", f"box {index}: label {label} is {label_map[label]!r} in the map, the text says {text!r}"))
    return findings, tuple(zip(labels, texts))


def check_example(features: Mapping[str, Feature], label_map: Optional[Mapping[int, str]]) -> Tuple[List[Finding], ImageFacts]:
    """Every per-record check, and the facts the cross-record checks need."""
    image_findings, sha256 = check_image(features)
    label_findings, pairs = check_labels(features, label_map)
    source_id = (_values(features, "image/source_id", "bytes") or [None])[0]
    findings = check_keys(features) + image_findings + check_boxes(features) + label_findings
    return findings, ImageFacts(sha256, source_id, pairs)


class Where(NamedTuple):
    file: str
    record: Optional[int]
    split: str


class Report:
    """Findings added one by one, counted per kind with the first few examples; cross-record checks at the end."""

    def __init__(self, label_map: Optional[Mapping[int, str]]):
        self.label_map = label_map
        self.counts: Dict[str, int] = defaultdict(int)
        self.examples: Dict[str, List[dict]] = defaultdict(list)
        self.files = 0
        self.frames = 0  # records read from the files, readable or not
        self.records: Dict[str, int] = defaultdict(int)
        self.boxes: Dict[str, int] = defaultdict(int)
        self._images: Dict[str, List[Where]] = defaultdict(list)
        self._source_ids: Dict[Tuple[str, bytes], int] = defaultdict(int)
        self._texts: Dict[int, Dict[str, Where]] = defaultdict(dict)
        if label_map is None:
            self.add(Finding("label_map_absent", "label ids and texts checked for consistency only"), None)

    def add(self, finding: Finding, where: Optional[Where]) -> None:
        self.counts[finding.kind] += 1
        if len(self.examples[finding.kind]) < MAX_EXAMPLES:
            example = {"detail": finding.detail}
            if where is not None:
                example.update(file=where.file, record=where.record)
            self.examples[finding.kind].append(example)

    def add_record(self, where: Where, findings: Iterable[Finding], facts: ImageFacts, boxes: int) -> None:
        self.records[where.split] += 1
        self.boxes[where.split] += boxes
        for finding in findings:
            self.add(finding, where)
        if facts.sha256:
            self._images[facts.sha256].append(where)
        if facts.source_id is not None:
            self._source_ids[(where.split, facts.source_id)] += 1
        for label, text in facts.labels_texts:
            self._texts[label].setdefault(text, where)

    def finish(self) -> None:
        """The checks that need every record: none at all, none with a box, duplicates, source ids, label texts."""
        if not self.frames:
            self.add(Finding("no_records", f"{self.files} record file(s), none holds a record"), None)
        elif sum(self.records.values()) and not sum(self.boxes.values()):
            self.add(Finding("no_boxes", f"none of the {sum(self.records.values())} records has a box"), None)
        for sha256, places in sorted(self._images.items()):
            if len(places) < 2:
                continue
            splits = sorted({place.split for place in places})
            listed = "; ".join(f"{place.file} #{place.record}" for place in places[:4])
            kind = "image_duplicate_across_splits" if len(splits) > 1 else "image_duplicate_within_split"
            self.add(Finding(kind, f"{len(places)} copies of sha256 {sha256[:12]}... in {', '.join(splits)}: {listed}"), places[0])
        for (split, source_id), count in sorted(self._source_ids.items()):
            if count > 1:
                self.add(Finding("source_id_duplicate", f"{source_id[:60]!r} on {count} records of {split}"), None)
        if self.label_map is None:
            for label, texts in sorted(self._texts.items()):
                if len(texts) > 1:
                    first = next(iter(texts.values()))
                    self.add(Finding("label_text_inconsistent", f"label {label} is {', '.join(map(repr, sorted(texts)))}"), first)

    @property
    def clean(self) -> bool:
        return not any(PROBLEMS[kind][0] == ERROR for kind in self.counts)

    def to_dict(self) -> dict:
        return {
            "clean": self.clean,
            "files": self.files,
            "records": sum(self.records.values()),
            "splits": {split: {"records": self.records[split], "boxes": self.boxes[split]} for split in sorted(self.records, key=split_order)},
            "problems": {
                kind: {
                    "severity": PROBLEMS[kind][0],
                    "meaning": PROBLEMS[kind][1],
                    "count": self.counts[kind],
                    "examples": self.examples[kind],
                }
                for kind in sorted(self.counts, key=lambda kind: (PROBLEMS[kind][0] != ERROR, kind))
            },
        }
