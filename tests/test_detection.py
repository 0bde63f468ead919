"""Format detection: XML files told apart by their root element and its required children (Pascal VOC, CVAT,
MIT LabelMe's own XML, which is not read), near matches refused naming both, and each source records
whether its format was detected or given."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import UsageError
from pipeline.sources import resolve_sources
from transforms.formats import cvat, voc
from transforms.formats._xml import xml_kinds

VOC_FILE = """<annotation verified="yes">
  <folder>images</folder>
  <filename>{name}</filename>
  <source><database>Unknown</database></source>
  <size><width>64</width><height>48</height><depth>3</depth></size>
  <segmented>0</segmented>
  <object><name>cat</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>4</xmin><ymin>4</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>
</annotation>
"""
# The LabelMe web tool's own XML (not LabelMe's JSON, which --format labelme reads).
LABELME_XML_FILE = """<annotation><filename>{name}</filename><folder>static_submitted_images</folder>
<source><sourceImage>The MIT-CSAIL database of objects and scenes</sourceImage>
<sourceAnnotation>LabelMe Webtool</sourceAnnotation></source>
<object><name>car</name><deleted>0</deleted><verified>0</verified><occluded>no</occluded><attributes></attributes>
<parts><hasparts></hasparts><ispartof></ispartof></parts><date>07-Jan-2013 19:51:43</date><id>0</id>
<polygon><username>anonymous</username><pt><x>10</x><y>12</y></pt><pt><x>40</x><y>12</y></pt>
<pt><x>40</x><y>30</y></pt><pt><x>10</x><y>30</y></pt></polygon></object>
<imagesize><nrows>48</nrows><ncols>64</ncols></imagesize></annotation>
"""
# VOC's <size> and <bndbox> and LabelMe's <polygon><pt> in one file: either reading could be the wrong one.
BOTH_FILE = """<annotation><filename>{name}</filename>
<size><width>64</width><height>48</height></size>
<object><name>car</name><polygon><pt><x>10</x><y>12</y></pt><pt><x>40</x><y>30</y></pt></polygon></object>
</annotation>
"""
CVAT_FILE = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><id>1</id><name>t</name><labels><label><name>cat</name></label></labels></task></meta>
  <image id="0" name="img0.jpg" width="64" height="48">
    <box label="cat" occluded="0" xtl="4" ytl="4" xbr="30" ybr="30"></box>
  </image>
</annotations>
"""


def folder(root: Path, template: str, count: int = 3, encoding: str = "utf-8") -> Path:
    root.mkdir(parents=True)
    for index in range(count):
        (root / f"img{index}.xml").write_bytes(template.format(name=f"img{index}.jpg").encode(encoding))
    return root


@pytest.fixture
def images(tmp_path) -> Path:
    path = tmp_path / "images"
    path.mkdir()
    (path / "img0.jpg").write_bytes(b"\xff\xd8\xff")
    return path


def detect(annotations: Path, images: Path, format_name=None):
    (source,) = resolve_sources([str(annotations)], [str(images)], format_name, None)
    return source


def refusal(annotations: Path, images: Path) -> str:
    with pytest.raises(UsageError) as raised:
        detect(annotations, images)
    return str(raised.value)


# --- each flavour ---------------------------------------------------------------------------------


def test_voc_is_detected_and_says_so(tmp_path, images):
    annotations = folder(tmp_path / "voc", VOC_FILE)
    source = detect(annotations, images)
    assert (source.format.name, source.detected) == ("voc", True)
    given = detect(annotations, images, "voc")
    assert (given.format.name, given.detected) == ("voc", False)
    (prefixed,) = resolve_sources([f"voc:{annotations}"], [str(images)], None, None)
    assert (prefixed.format.name, prefixed.detected) == ("voc", False)


def test_voc_in_utf16_is_detected(tmp_path, images):
    annotations = folder(tmp_path / "voc16", '<?xml version="1.0" encoding="utf-16"?>\n' + VOC_FILE, encoding="utf-16")
    assert detect(annotations, images).format.name == "voc"


def test_cvat_is_detected(tmp_path, images):
    annotations = tmp_path / "cvat"
    annotations.mkdir()
    (annotations / "annotations.xml").write_text(CVAT_FILE)
    source = detect(annotations, images)
    assert (source.format.name, source.detected) == ("cvat", True)


def test_mit_labelme_xml_is_named_not_taken_for_voc(tmp_path, images):
    annotations = folder(tmp_path / "labelme_xml", LABELME_XML_FILE)
    assert not voc.sniff(str(annotations / "img0.xml"), (annotations / "img0.xml").read_bytes()[:4096])
    assert refusal(annotations, images).startswith(
        f"cannot tell the annotation format of {annotations}: its XML files look like MIT LabelMe XML, which is not "
        f"supported; --format labelme reads LabelMe's JSON files")


def test_a_file_that_fits_voc_and_labelme_xml_is_not_guessed(tmp_path, images):
    annotations = folder(tmp_path / "both", BOTH_FILE, count=1)
    message = refusal(annotations, images)
    assert message == (
        f"cannot tell the annotation format of {annotations}: its XML files fit both MIT LabelMe XML and Pascal VOC "
        f"(img0.xml: <annotation> with <filename>, <size>, <object><polygon><pt>); pass --format voc if they are Pascal VOC")
    assert detect(annotations, images, "voc").format.name == "voc"  # told, it reads them as VOC


def test_a_folder_mixing_voc_and_labelme_xml_is_not_guessed(tmp_path, images):
    annotations = folder(tmp_path / "mixed", VOC_FILE, count=2)
    (annotations / "zz.xml").write_text(LABELME_XML_FILE.format(name="zz.jpg"))
    message = refusal(annotations, images)
    assert "some of its files look like voc, some XML files like MIT LabelMe XML, which is not supported" in message


def test_xml_of_none_of_ours_gets_a_clear_line(tmp_path, images):
    annotations = folder(tmp_path / "other", "<annotation><object><name>cat</name></object></annotation>", count=1)
    assert refusal(annotations, images).startswith(
        f"cannot tell the annotation format of {annotations}: its XML files are neither Pascal VOC (<annotation> with "
        f"<filename> and <object><bndbox> or <size>) nor CVAT for images")
    (annotations / "img0.xml").write_text("<annotations><version>1.1</version></annotations>")
    assert "are neither Pascal VOC" in refusal(annotations, images)


def test_the_command_prints_one_line_for_labelme_xml(tmp_path, images, capsys):
    annotations = folder(tmp_path / "labelme_xml", LABELME_XML_FILE)
    assert main(["convert", "--annotations", str(annotations), "--images", str(images), "--output", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "look like MIT LabelMe XML, which is not supported" in error
    assert not (tmp_path / "o").exists()


# --- the outlines ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head, kinds",
    [
        (VOC_FILE.format(name="a.jpg").encode(), {"voc"}),
        (VOC_FILE.format(name="a.jpg").encode()[:120], {"voc"}),  # cut after <filename>: a negative so far
        (b"<annotation><filename>a.jpg</filename></annotation>", {"voc"}),  # a VOC negative without size
        (LABELME_XML_FILE.format(name="a.jpg").encode(), {"labelme_xml"}),
        (LABELME_XML_FILE.format(name="a.jpg").encode()[:200], {"labelme_xml"}),  # <source><sourceImage> seen
        (BOTH_FILE.format(name="a.jpg").encode(), {"voc", "labelme_xml"}),
        (CVAT_FILE.encode(), {"cvat"}),
        (b"<annotations/>", set()),
        (b"<root><annotation><filename>a</filename><size/></annotation></root>", set()),  # not the root
        (b"<!-- <annotation><filename>a</filename><size/></annotation> -->", set()),  # a comment
        (b"<annotation><size><width>1</width></size></annotation>", set()),  # no <filename>
        (b"", set()),
        (b"\x00\xff\xfe", set()),
    ],
)
def test_xml_kinds(head, kinds):
    assert xml_kinds(head) == kinds
    assert voc.sniff("a.xml", head) is (kinds == {"voc"})
    assert cvat.sniff("a.xml", head) is (kinds == {"cvat"})


# --- exports given as their root ------------------------------------------------------------------------


def roboflow_root(root: Path, files: dict) -> Path:
    """`train/ valid/ test/` folders with the same files each, and Roboflow's README files at the root."""
    for subset in ("train", "valid", "test"):
        for name, text in files.items():
            (root / subset / name).parent.mkdir(parents=True, exist_ok=True)
            (root / subset / name).write_text(text)
    (root / "README.roboflow.txt").write_text("This dataset was exported via roboflow.com\n")
    (root / "README.dataset.txt").write_text("# cells > raw\nProvided by Roboflow\n")
    return root


@pytest.mark.parametrize("files, format_name", [
    ({"_annotations.coco.json": '{"images": [], "annotations": [], "categories": []}', "a.jpg": "x"}, "coco"),
    ({"_annotations.createml.json": '[{"image": "a.jpg", "annotations": []}]', "a.jpg": "x"}, "createml"),
    ({"a.xml": VOC_FILE.format(name="a.jpg"), "a.jpg": "x"}, "voc"),
    ({"labels/a.txt": "0 0.5 0.5 0.2 0.2\n", "images/a.jpg": "x"}, "yolo"),
])
def test_a_roboflow_root_is_detected_and_read_split_by_split(tmp_path, files, format_name):
    root = roboflow_root(tmp_path / "export", files)
    if format_name == "yolo":
        (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['cell']\n")
    source = detect(root, root)
    assert (source.format.name, source.detected) == (format_name, True)
    assert source.images == str(root)
    # Every split folder's annotations, and nothing else (the README files are no YOLO labels).
    assert all(pattern.startswith(tuple(f"{root}/{subset}/" for subset in ("test", "train", "valid")))
               for pattern in source.patterns)
    assert {pattern[len(str(root)) + 1:].split("/")[0] for pattern in source.patterns} == {"train", "valid", "test"}


def test_a_voc_devkit_root_reads_annotations_and_jpegimages_and_its_image_sets(tmp_path):
    root = tmp_path / "VOC2012"
    folder(root / "Annotations", VOC_FILE, count=2)
    (root / "JPEGImages").mkdir()
    (root / "JPEGImages" / "img0.jpg").write_bytes(b"\xff\xd8\xff")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("img0\n")
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("img0\nimg1\n")
    (root / "ImageSets" / "Main" / "cat_train.txt").write_text("img0  1\nimg1 -1\n")
    source = detect(root, root)
    assert (source.format.name, source.annotations, source.images) == ("voc", f"{root}/Annotations", f"{root}/JPEGImages")
    assert dict(source.context.image_splits) == {"img0": "train", "img1": "trainval"}
    assert detect(root / "Annotations", root / "JPEGImages").context.image_splits == {"img0": "train", "img1": "trainval"}


def test_voc_without_image_sets_has_no_listed_splits(tmp_path, images):
    assert detect(folder(tmp_path / "voc", VOC_FILE), images).context.image_splits is None


def test_split_folders_of_images_only_leave_the_root_as_it_was(tmp_path):
    root = tmp_path / "coco"
    (root / "train").mkdir(parents=True)
    (root / "train" / "a.jpg").write_bytes(b"\xff\xd8\xff")
    (root / "instances.json").write_text('{"images": [], "annotations": [], "categories": []}')
    for format_name in ("coco", None):
        source = detect(root, root, format_name)
        assert source.format.name == "coco" and source.patterns == (f"{root}/*.json",)
        document = b'{"images": [{"id": 1, "file_name": "train/a.jpg"}], "annotations": [], "categories": []}'
        records = [item for item in source.format.parse(f"{root}/instances.json", document) if hasattr(item, "key")]
        assert [record.key for record in records] == ["train/a.jpg"]  # names stay relative to --images
