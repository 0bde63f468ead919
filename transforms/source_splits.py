"""The split a dataset came with, read from its paths (`--splits source`).

Roboflow exports `train/ valid/ test/` folders, Ultralytics `images/train`, COCO files are named
`instances_train2017.json`, CVAT writes subsets, Pascal VOC lists image ids in ImageSets/Main (read by
pipeline/sources.py into `ParseContext.image_splits`). `valid` and `validation` mean `val`.
"""
from __future__ import annotations

import dataclasses
import functools
import posixpath
import re
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

from transforms import paths
from transforms.model import ImageRecord

_CANONICAL = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}
_NAME_TOKEN = re.compile(r"^(train|training|val|valid|validation|test|testing)\d*$")


def canonical_split(name: str) -> str:
    """A split name as the output uses it: `valid`/`validation` -> `val`, and since it ends up in file
    names, lower case with anything but letters, digits and _ made _ ("" when nothing is left)."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.strip().lower()).strip("_")
    return _CANONICAL.get(cleaned, cleaned)


def split_from_path(relative_path: str) -> Optional[str]:
    """The split a path names: its nearest folder called train/valid/test..., else a file-name token."""
    parts = relative_path.split("/")
    for folder in reversed(parts[:-1]):
        if folder.lower() in _CANONICAL:
            return _CANONICAL[folder.lower()]
    for token in re.split(r"[^a-z0-9]+", parts[-1].lower()):
        match = _NAME_TOKEN.match(token)
        if match:
            return _CANONICAL[match.group(1)]
    return None


# Pascal VOC: ImageSets/Main/{train,val,test,trainval}.txt list image ids (file stems), one a line. Per-class
# files (`aeroplane_train.txt`, lines `2008_000008  1`) are not split files and are never read. An id in
# train, val or test takes that split (the first of them, in that order, should a list repeat it); an id
# only in trainval keeps the name `trainval`, as the source calls it: the TF OD API's create_pascal_tf_record
# converts one named set at a time (`--set trainval` is a set of its own) and Datumaro's VOC importer makes
# each list file a subset named after it, so neither invents a train/val split for it, and neither do we.
VOC_SPLIT_FILES = ("train", "val", "test", "trainval")


def voc_image_sets(lists: Mapping[str, bytes]) -> Dict[str, str]:
    """{image id: split} from the bytes of the VOC split files present ({"train": b"...", ...})."""
    splits: Dict[str, str] = {}
    for name in VOC_SPLIT_FILES:
        for line in lists.get(name, b"").decode("utf-8-sig", errors="replace").splitlines():
            fields = line.split()
            if fields:  # the first column is the id, as the OD API reads it
                splits.setdefault(fields[0], name)
    return splits


def listed_split(image_splits: Optional[Mapping[str, str]], *names: str) -> Optional[str]:
    """The split a source's lists give the first of `names` (an annotation file, an image file name) they
    list by file name or by stem (a VOC image id is the stem of Annotations/{id}.xml and of its image)."""
    if not image_splits:
        return None
    for name in names:
        base = posixpath.basename((name or "").replace("\\", "/"))
        for candidate in (base, posixpath.splitext(base)[0]):
            if candidate and candidate in image_splits:
                return image_splits[candidate]
    return None


@dataclasses.dataclass(frozen=True)
class KeyResolver:
    """Where an export keeps the images its annotation files name, as paths under --images (`images_root`).

    `beside_annotation`: an image name is relative to its annotation file's folder (Roboflow puts
    `_annotations.coco.json`, `_annotations.createml.json`, `_annotations.csv` and VOC XML files beside the
    images of each `train/ valid/ test/` folder), so `x.jpg` named in `train/_annotations.coco.json` is
    `train/x.jpg`. `folder`: every name is under this folder (a CVAT export's `images`, when --images is
    the export's root). `subset_folders` (CVAT project exports, `images/<subset>/<name>`, the layout CVAT
    writes and Datumaro reads): a record's split (its canonical subset, None for CVAT's `default`) -> the
    folder under --images that holds that subset's images, such as `images/Train`.
    `own_folder`: a name that starts with the name of --images' own folder (`val2017/x.jpg` with
    `--images coco/val2017`, as some COCO exports write `file_name`) is taken relative to --images, when
    --images holds no folder of that name.
    Names that are not safe relative paths are left as they are, for the usual checks to reject.
    """

    images_root: str
    beside_annotation: bool = False
    folder: str = ""
    subset_folders: Tuple[Tuple[Optional[str], str], ...] = ()
    own_folder: str = ""  # --images' own folder name, which names such as COCO's `val2017/x.jpg` repeat

    def resolve(self, source: str, item: Any) -> Any:
        if not isinstance(item, ImageRecord) or paths.image_key(item.key) is None:
            return item
        if self.own_folder and paths.image_key(item.key).startswith(self.own_folder + "/"):
            item = dataclasses.replace(item, key=paths.image_key(item.key)[len(self.own_folder) + 1:])
        folder = ""
        if self.beside_annotation:
            folder = paths.relative_to(self.images_root, posixpath.dirname(source)) or ""
        else:
            folder = dict(self.subset_folders).get(item.source_split, self.folder)
        if not folder:
            return item
        return dataclasses.replace(item, key=paths.image_key(folder + "/" + item.key.replace("\\", "/")) or item.key)


def _resolved(parse: Callable, resolver: KeyResolver, source: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
    """What `parse(source, ...)` yields, each record naming its image as `resolver` finds it."""
    for item in parse(source, *args, **kwargs):
        yield resolver.resolve(source, item)


def resolving_keys(fmt: Any, resolver: KeyResolver) -> Any:
    """`fmt` (an AnnotationFormat) whose records name their images as `resolver` finds them; the same
    format otherwise (its name, flags and join rule). Every parse function of the format (`parse`,
    `parse_part` and any other whose field name starts with `parse`; each takes the file's path first)
    is wrapped, so the whole-file and the streamed reading agree."""
    wrapped = {
        field.name: functools.partial(_resolved, getattr(fmt, field.name), resolver)
        for field in dataclasses.fields(fmt)
        if field.name.startswith("parse") and callable(getattr(fmt, field.name))
    }
    return dataclasses.replace(fmt, **wrapped)
