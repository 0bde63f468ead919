"""The splits a source defines apart from paths: VOC ImageSets/Main lists, and image names resolved where an
export keeps its images (beside the annotation file, CVAT's images/<subset>/)."""
from __future__ import annotations

from transforms.formats import FORMATS, ParseContext, flattened, parse_annotation_file
from transforms.model import ImageRecord
from transforms.source_splits import KeyResolver, listed_split, resolving_keys, voc_image_sets

VOC = (b"<annotation><filename>{name}</filename><size><width>64</width><height>48</height></size>"
       b"<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
       b"</annotation>")


def test_voc_lists_prefer_train_val_test_and_keep_trainval_only_as_trainval():
    splits = voc_image_sets({
        "train": b"a\nb\n", "val": b"c\r\n\n", "test": b"\xef\xbb\xbfd\n",
        "trainval": b"a\nb\nc\ne\n",
    })
    assert splits == {"a": "train", "b": "train", "c": "val", "d": "test", "e": "trainval"}


def test_voc_list_lines_are_read_by_their_first_column():
    assert voc_image_sets({"train": b"2008_000008  1\n2008_000015 -1\n"}) == {
        "2008_000008": "train", "2008_000015": "train"}


def test_listed_split_by_annotation_stem_then_image_name():
    splits = {"BloodImage_00001": "val", "odd.name": "test"}
    assert listed_split(splits, "/d/Annotations/BloodImage_00001.xml", "whatever.jpg") == "val"
    assert listed_split(splits, "/d/Annotations/x.xml", "BloodImage_00001.jpg") == "val"
    assert listed_split(splits, "/d/Annotations/x.xml", "odd.name") == "test"
    assert listed_split(splits, "/d/Annotations/x.xml", "y.jpg") is None
    assert listed_split(None, "/d/Annotations/BloodImage_00001.xml") is None


def parse_voc(name: bytes, image_splits, source="/d/Annotations/img.xml"):
    context = ParseContext(annotations_root="/d/Annotations", image_splits=image_splits)
    return list(flattened(parse_annotation_file(FORMATS["voc"], source, VOC.replace(b"{name}", name), context)))


def test_voc_parser_takes_the_split_its_image_sets_list():
    (record,) = parse_voc(b"img.jpg", {"img": "val"})
    assert record.source_split == "val"
    (unlisted,) = parse_voc(b"img.jpg", {"other": "train"})
    assert unlisted.source_split is None  # --splits source rejects it as split_unknown
    (trainval,) = parse_voc(b"img.jpg", {"img": "trainval"})
    assert trainval.source_split == "trainval"


def test_names_beside_their_annotation_file_become_paths_under_images():
    resolver = KeyResolver("/export", beside_annotation=True)
    record = ImageRecord(key="x.jpg", source="/export/valid/_annotations.coco.json")
    assert resolver.resolve(record.source, record).key == "valid/x.jpg"
    unsafe = ImageRecord(key="../../etc/passwd", source=record.source)
    assert resolver.resolve(unsafe.source, unsafe) is unsafe  # left for the usual checks to reject
    at_root = ImageRecord(key="x.jpg", source="/export/_annotations.coco.json")
    assert resolver.resolve(at_root.source, at_root).key == "x.jpg"


def test_cvat_subsets_find_their_folders():
    resolver = KeyResolver("/export", folder="images", subset_folders=(("train", "images/Train"), (None, "images/default")))
    assert resolver.resolve("a", ImageRecord(key="a.jpg", source="a", source_split="train")).key == "images/Train/a.jpg"
    assert resolver.resolve("a", ImageRecord(key="b.jpg", source="a")).key == "images/default/b.jpg"
    assert resolver.resolve("a", ImageRecord(key="c.jpg", source="a", source_split="val")).key == "images/c.jpg"


def test_a_resolving_format_keeps_its_name_and_resolves_every_parse_function():
    fmt = resolving_keys(FORMATS["createml"], KeyResolver("/export", beside_annotation=True))
    assert fmt.name == "createml" and fmt.folder_patterns == FORMATS["createml"].folder_patterns
    data = b'[{"image": "x.jpg", "annotations": []}]'
    (record,) = [item for item in parse_annotation_file(fmt, "/export/train/_annotations.createml.json", data)
                 if isinstance(item, ImageRecord)]
    assert (record.key, record.source_split) == ("train/x.jpg", "train")
