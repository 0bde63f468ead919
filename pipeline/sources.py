"""Annotation sources: which files, in which format, with which images and class names.

`--annotations` may be given more than once (formats may differ) to merge several datasets into one;
`--images` is then given once for all or once per source. A source may name its format as a prefix,
`coco:annotations/instances.json`; otherwise --format applies, or the format is detected by sniffing a
few files with every format's `sniff` (`Source.detected` says which: the console report names it). XML
files are told apart by their root element and its required children (transforms/formats/_xml.py
`xml_kinds`): a file that fits two formats is not guessed at, and MIT LabelMe's XML is named as such.

Exports are read as they are downloaded, from their root (`--annotations` and `--images` both the root):
a Roboflow export's `train/ valid/ test/` folders (COCO, CreateML, TensorFlow CSV or VOC files beside
the images; YOLO `images/` and `labels/` with data.yaml at the root) become one source whose image names
are resolved beside their annotation file (`train/x.jpg`), so each image's path names its split; a VOC
devkit root reads its Annotations and JPEGImages; a CVAT project export finds its images in
`images/<subset>/`. A VOC source with ImageSets/Main/{train,val,test,trainval}.txt beside or above its
annotations folder lists its splits in `ParseContext.image_splits` (transforms/source_splits.py).
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import posixpath
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from pipeline.errors import UsageError
from transforms import storage
from transforms.formats import DEFAULT_MAX_ANNOTATION_BYTES, FORMATS, SNIFF_BYTES, AnnotationFormat, ParseContext
from transforms.formats._xml import SUPPORTED_XML_KINDS, XML_KIND_NAMES, xml_evidence, xml_kinds
from transforms.paths import relative_to
from transforms.beam.read import read_file
from transforms.source_splits import (
    VOC_SPLIT_FILES, KeyResolver, canonical_split, resolving_keys, voc_image_sets,
)

_GLOB = re.compile(r"[*?\[]")
_SNIFF_FILES = 5  # files per format looked at when detecting a folder's format
_CLASS_FILES = ("data.yaml", "dataset.yaml", "classes.txt", "obj.names", "classes.names")
_ROBOFLOW_PREFIX = "_annotations."  # Roboflow's name for the annotation file beside each split's images
_CVAT_NO_SUBSET = re.compile(r"default(_\d+)?")  # CVAT's folder for a task without a subset


@dataclasses.dataclass(frozen=True)
class Source:
    format: AnnotationFormat
    annotations: str
    patterns: Tuple[str, ...]
    images: str
    context: ParseContext
    detected: bool = False  # the format was detected from the files, not given (--format or a `coco:` prefix)


def absolute(path: str) -> str:
    return path if not storage.is_local(path) else os.path.abspath(os.path.expanduser(path))


def _matches(patterns: Sequence[str], limit: Optional[int] = None) -> List[str]:
    """The first `limit` files each pattern matches, sorted; the listing stops there (a big folder is not read whole)."""
    found = set()
    try:
        for pattern in patterns:
            found.update(path for path, _ in itertools.islice(storage.matching_files([pattern]), limit))
    except Exception as error:
        raise UsageError(f"cannot list {', '.join(patterns)}: {error}") from None
    return sorted(found)


def is_folder(path: str) -> bool:
    if storage.is_local(path):
        return os.path.isdir(path)
    return bool(_matches([storage.literal(path.rstrip("/")) + "/**"], limit=1))


def _is_glob(path: str) -> bool:
    """A path with glob characters that names no file or folder as written: an --annotations glob.
    One that does (a folder called `data[1]`) is taken literally."""
    return bool(_GLOB.search(path)) and not storage.exists(path) and not is_folder(path)


def _head(path: str) -> bytes:
    try:
        return read_file(path, SNIFF_BYTES)
    except Exception:  # unreadable or not a regular file: it tells nothing about the format
        return b""


def _patterns(path: str, fmt: AnnotationFormat) -> Tuple[str, ...]:
    """The patterns of an --annotations path: a glob as given, a file or folder literally."""
    if _is_glob(path):
        return (path,)
    if not is_folder(path):
        return (storage.literal(path),)
    return tuple(storage.literal(path.rstrip("/")) + "/" + pattern for pattern in fmt.folder_patterns)


def detect_format(path: str) -> AnnotationFormat:
    """The one format whose `sniff` claims some of the first files; a UsageError naming the candidates when
    none or several do, or when XML files fit two formats' outlines (or one this converter does not read)."""
    candidates, heads = [], {}
    for fmt in FORMATS.values():
        files = _matches(_patterns(path, fmt), limit=_SNIFF_FILES)[:_SNIFF_FILES]
        for file in files:
            heads.setdefault(file, _head(file))
        if any(fmt.sniff(file, heads[file]) for file in files):
            candidates.append(fmt)
    xml_heads = [(file, head) for file, head in sorted(heads.items()) if file.lower().endswith(".xml")]
    xml_kinds_seen = [xml_kinds(head) for _, head in xml_heads]
    near = next(((file, head, kinds) for (file, head), kinds in zip(xml_heads, xml_kinds_seen) if len(kinds) > 1), None)
    if near is not None:  # one file fits two outlines: a guess could read a whole dataset wrongly
        file, head, kinds = near
        names = " and ".join(XML_KIND_NAMES[kind] for kind in sorted(kinds))
        supported = [kind for kind in sorted(kinds) if kind in SUPPORTED_XML_KINDS]
        hint = " or ".join(f"pass --format {kind} if they are {XML_KIND_NAMES[kind]}" for kind in supported) or "pass --format"
        raise UsageError(f"cannot tell the annotation format of {path}: its XML files fit both {names} "
                         f"({posixpath.basename(file)}: {xml_evidence(head)}); {hint}")
    foreign = sorted({kind for kinds in xml_kinds_seen for kind in kinds if kind not in SUPPORTED_XML_KINDS})
    if foreign and len(candidates) <= 1:
        names = " and ".join(XML_KIND_NAMES[kind] for kind in foreign)
        if candidates:  # some files of ours, some of a format we cannot read: which are the annotations?
            name = candidates[0].name
            raise UsageError(f"cannot tell the annotation format of {path}: some of its files look like {name}, some "
                             f"XML files like {names}, which is not supported; move those out, or pass --format {name} "
                             f"to read every file as {name}")
        raise UsageError(f"cannot tell the annotation format of {path}: its XML files look like {names}, which is "
                         f"not supported; --format labelme reads LabelMe's JSON files, so convert them to LabelMe JSON, "
                         f"Pascal VOC or COCO first")
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        if xml_kinds_seen:
            raise UsageError(f"cannot tell the annotation format of {path}: its XML files are neither Pascal VOC "
                             f"(<annotation> with <filename> and <object><bndbox> or <size>) nor CVAT for images "
                             f"(<annotations> with <meta> or <image>); pass --format ({', '.join(FORMATS)})")
        raise UsageError(f"cannot tell the annotation format of {path}; pass --format ({', '.join(FORMATS)})")
    raise UsageError(f"{path} could be any of {', '.join(fmt.name for fmt in candidates)}; pass --format to choose")


def load_classes(path: str) -> Tuple[str, ...]:
    """Class names by index from a names file (one per line) or a data.yaml (`names` list or dict)."""
    try:
        text = read_file(path).decode("utf-8-sig")
    except Exception as error:
        raise UsageError(f"cannot read --classes {path}: {error}") from None
    if not path.lower().endswith((".yaml", ".yml")):
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
    else:
        try:
            names = (yaml.safe_load(text) or {}).get("names")
        except (yaml.YAMLError, AttributeError):
            raise UsageError(f"--classes {path} is not a YAML mapping with `names`") from None
        if isinstance(names, dict):
            if sorted(names) != list(range(len(names))):
                raise UsageError(f"--classes {path}: `names` keys must be 0..{len(names) - 1}")
            names = [names[index] for index in range(len(names))]
        if not isinstance(names, list):
            raise UsageError(f"--classes {path} has no `names` list or dict")
        names = tuple(str(name) for name in names)
    if not names:
        raise UsageError(f"--classes {path} names no class")
    return names


def _find_classes(annotations: str) -> Optional[str]:
    folder = annotations if is_folder(annotations) else posixpath.dirname(annotations)
    for candidate_folder in (folder, posixpath.dirname(folder.rstrip("/"))):
        for name in _CLASS_FILES:
            candidate = candidate_folder.rstrip("/") + "/" + name
            if storage.exists(candidate):
                return candidate
    return None


def _split_format_prefix(spec: str) -> Tuple[Optional[str], str]:
    prefix, colon, rest = spec.partition(":")
    if colon and prefix in FORMATS:
        return prefix, rest
    return None, spec


def resolve_sources(
    annotations: Sequence[str], images: Sequence[str], format_name: Optional[str], classes: Optional[str],
    max_annotation_bytes: int = DEFAULT_MAX_ANNOTATION_BYTES, offline: bool = False,
) -> Tuple[Source, ...]:
    """The sources, each path checked, its format detected unless given, its class names loaded.

    `offline` (a dry run): paths on object stores are neither listed nor read, so without credentials
    or network nothing waits; their format must be given, and what could not be checked is the caller's
    to say.
    """
    if len(images) not in (1, len(annotations)):
        raise UsageError(f"give --images once, or once per --annotations ({len(annotations)}), not {len(images)} times")
    if format_name is not None and format_name not in FORMATS:
        raise UsageError(f"unknown --format {format_name!r}; choose one of {', '.join(FORMATS)}")
    sources = []
    for index, spec in enumerate(annotations):
        prefix, path = _split_format_prefix(str(spec))
        path = absolute(path).rstrip("/")
        images_root = absolute(str(images[index if len(images) > 1 else 0])).rstrip("/")
        given = prefix or format_name
        if offline and not (storage.is_local(path) and storage.is_local(images_root)):
            sources.append(_unchecked_source(path, images_root, given, classes, max_annotation_bytes))
            continue
        if not _matches([path if _is_glob(path) else storage.literal(path)], limit=1) and not is_folder(path):
            raise UsageError(f"--annotations {path}: no such file, folder or matching files")
        if not is_folder(images_root):
            raise UsageError(f"--images {images_root}: no such folder (or it is empty)")
        path, images_root = _voc_devkit(path, images_root)
        split_root = _split_root(path, images_root, given)
        if split_root is not None:  # a Roboflow export from its root: every train/ valid/ test/ folder
            fmt, patterns = split_root
        else:
            fmt = FORMATS[given] if given else detect_format(path)
            patterns = _patterns(path, fmt)
        if not fmt.unlabeled_images_are_negatives and not _matches(patterns, limit=1):
            looked_for = ", ".join(fmt.folder_patterns)
            raise UsageError(f"no {fmt.name} annotation files at {path} (looked for {looked_for})")
        class_names: Tuple[str, ...] = ()
        if fmt.needs_classes:
            class_file = absolute(classes) if classes else _find_classes(path)
            if class_file is None:
                raise UsageError(
                    f"{fmt.name} labels store class indices: pass --classes classes.txt or data.yaml "
                    f"(none found beside {path})"
                )
            class_names = load_classes(class_file)
        root = path if is_folder(path) else posixpath.dirname(path)
        image_splits = _voc_image_sets(root, max_annotation_bytes) if fmt.name == "voc" else None
        context = ParseContext(classes=class_names, annotations_root=root, max_annotation_bytes=max_annotation_bytes,
                               image_splits=image_splits)
        resolver = _key_resolver(fmt, path, images_root, split_root is not None)
        if resolver is not None:
            fmt = resolving_keys(fmt, resolver)
        sources.append(Source(fmt, path, patterns, images_root, context, detected=not given))
    return tuple(sources)


# --- Exports read from their root, and the splits a source lists (`--splits source`) ----------------------
_LISTING_LIMIT = 10_000  # files listed to find a remote folder's subfolders


def _child_folders(path: str) -> List[str]:
    """The names of the folders directly in `path`, sorted (remotely: of the first files listed)."""
    if storage.is_local(path):
        try:
            return sorted(entry.name for entry in os.scandir(path) if entry.is_dir())
        except OSError:
            return []
    names = set()
    for file in _matches([storage.literal(path) + "/**"], limit=_LISTING_LIMIT):
        relative = relative_to(path, file) or ""
        if "/" in relative:
            names.add(relative.split("/", 1)[0])
    return sorted(names)


def _voc_devkit(path: str, images_root: str) -> Tuple[str, str]:
    """The VOC devkit layout (VOC2012/Annotations, JPEGImages, ImageSets) given as its root for both
    --annotations and --images: the Annotations and JPEGImages folders in it."""
    if path == images_root and is_folder(path + "/Annotations") and is_folder(path + "/JPEGImages"):
        return path + "/Annotations", path + "/JPEGImages"
    return path, images_root


def _split_root(path: str, images_root: str, given: Optional[str]) -> Optional[Tuple[AnnotationFormat, Tuple[str, ...]]]:
    """(format, patterns) of an export whose root holds a folder per split (Roboflow: `train/ valid/ test/`,
    each with its images and `_annotations.coco.json`, `_annotations.createml.json`, `_annotations.csv`,
    VOC XML files, or YOLO `images/` and `labels/` with data.yaml at the root), given as the root for
    both --annotations and --images; None for any other path. The format is the one given, or the one
    detected in the first split folder where one is."""
    if path != images_root or not is_folder(path):
        return None
    subsets = [path + "/" + name for name in _child_folders(path) if canonical_split(name) in ("train", "val", "test")]
    if not subsets:
        return None
    fmt = FORMATS[given] if given else None
    for subset in subsets:
        if fmt is not None:
            break
        try:
            fmt = detect_format(subset)
        except UsageError:
            continue
    if fmt is None:
        return None  # the root is read as a folder of its own, and its error says why
    patterns = tuple(pattern for subset in subsets for pattern in _patterns(subset, fmt))
    if not _matches(patterns, limit=1):
        return None  # split folders of images only (annotations elsewhere): not this layout
    return fmt, patterns


def _key_resolver(fmt: AnnotationFormat, path: str, images_root: str, split_root: bool) -> Optional[KeyResolver]:
    """How this source's image names become paths under --images when the export keeps them elsewhere than
    directly under it: beside each annotation file (a split root; Roboflow's `_annotations.*` files below
    --images), or CVAT's project export `images/<subset>/<name>`. None: the names are paths under --images."""
    if fmt.images_by_stem:  # YOLO: label paths name their images (labels/x.txt -> images/x.*)
        return None
    if split_root or posixpath.basename(path).startswith(_ROBOFLOW_PREFIX):
        return KeyResolver(images_root, beside_annotation=True)
    own = posixpath.basename(images_root)
    if fmt.name != "cvat":
        return None if is_folder(images_root + "/" + own) else KeyResolver(images_root, own_folder=own)
    annotation_folder = path if is_folder(path) else posixpath.dirname(path)
    folder = "images" if annotation_folder == images_root and is_folder(images_root + "/images") else ""
    subsets: dict = {}
    for name in _child_folders(images_root + ("/" + folder if folder else "")):
        split = canonical_split(name)
        split = None if _CVAT_NO_SUBSET.fullmatch(split) else split
        subsets.setdefault(split, []).append(name)
    prefix = folder + "/" if folder else ""
    subset_folders = tuple((split, prefix + names[0]) for split, names in sorted(subsets.items(), key=lambda item: str(item[0]))
                           if len(names) == 1 and (split is not None or names[0] == "default"))
    if not subset_folders and not folder:
        return None
    return KeyResolver(images_root, folder=folder, subset_folders=subset_folders)


def _voc_image_sets(root: str, max_bytes: int) -> Optional[Dict[str, str]]:
    """{image id: split} from ImageSets/Main/{train,val,test,trainval}.txt beside or above the VOC
    annotations folder (VOC2012/Annotations and VOC2012/ImageSets/Main); None when there are none."""
    for folder in (root, posixpath.dirname(root)):
        lists = {}
        for name in VOC_SPLIT_FILES:
            list_path = f"{folder}/ImageSets/Main/{name}.txt"
            if storage.exists(list_path):
                try:
                    lists[name] = read_file(list_path, max_bytes)
                except Exception as error:
                    raise UsageError(f"cannot read {list_path}: {error}") from None
        if lists:
            return voc_image_sets(lists)
    return None


def _unchecked_source(path: str, images_root: str, format_name: Optional[str], classes: Optional[str],
                      max_annotation_bytes: int) -> Source:
    """A source on an object store as a dry run takes it: nothing listed or read (a path ending in a file
    extension is a file, anything else a folder)."""
    if format_name is None:
        raise UsageError(f"a dry run reads no remote file, so it cannot detect the format of {path}: pass --format")
    fmt = FORMATS[format_name]
    class_names: Tuple[str, ...] = ()
    if fmt.needs_classes:
        if not classes or not storage.is_local(absolute(classes)):
            raise UsageError(f"a dry run reads no remote file: pass --classes as a local file for {fmt.name}")
        class_names = load_classes(absolute(classes))
    is_file = bool(posixpath.splitext(path.rsplit("/", 1)[-1])[1])
    patterns = (path,) if _GLOB.search(path) or is_file else tuple(
        storage.literal(path) + "/" + pattern for pattern in fmt.folder_patterns)
    root = posixpath.dirname(path) if is_file else path
    context = ParseContext(classes=class_names, annotations_root=root, max_annotation_bytes=max_annotation_bytes)
    return Source(fmt, path, patterns, images_root, context)


def as_list(value: Any) -> List[str]:
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, (list, tuple)) else [str(value)]

