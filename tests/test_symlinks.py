"""Symbolic links never lead the pipeline out of --images (transforms/beam/read.py `read_image_file`)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests import image_factory as make
from tests.conftest import run_cli, read_examples, shard_files
from transforms.images.probe import ImageProblem
from transforms.model import ImageRecord
from transforms.beam.read import read_record_image

SECRET = b"TOPSECRET-c0ffee-never-to-be-quoted\n"
JPEG = make.encode(make.gradient(), "JPEG", quality=90)  # 64 x 48
OTHER_JPEG = make.encode(make.gradient(32, 24), "JPEG", quality=90)


@pytest.fixture
def tree(tmp_path):
    """tmp/images (the root) and tmp/elsewhere (outside it), with real files on both sides."""
    images, elsewhere = tmp_path / "images", tmp_path / "elsewhere"
    (images / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (images / "sub" / "b.jpg").write_bytes(JPEG)
    (elsewhere / "photo.jpg").write_bytes(OTHER_JPEG)
    (elsewhere / "secret.txt").write_bytes(SECRET)
    return images, elsewhere


@pytest.fixture
def opened(monkeypatch):
    """Every path os.open is asked to open, resolved."""
    paths = []
    real_open = os.open

    def spy(path, *args, **kwargs):
        paths.append(os.path.realpath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    return paths


def _read(images: Path, key: str) -> bytes:
    return read_record_image(ImageRecord(key=key, source="a.xml", images_root=str(images)))


def _refused(images: Path, key: str) -> ImageProblem:
    with pytest.raises(ImageProblem) as raised:
        _read(images, key)
    assert raised.value.reason == "path_outside_images"
    assert SECRET.decode().strip() not in raised.value.detail
    return raised.value


@pytest.mark.parametrize("target", ["photo.jpg", "secret.txt"])
def test_a_link_to_a_file_outside_is_refused_unopened(tree, opened, target):
    images, elsewhere = tree
    (images / "link.jpg").symlink_to(elsewhere / target)
    problem = _refused(images, "link.jpg")
    assert str(elsewhere) not in problem.detail  # where it leads is not named either
    assert not [path for path in opened if path.startswith(str(elsewhere))]


def test_a_relative_link_climbing_out_is_refused(tree, opened):
    images, elsewhere = tree
    (images / "sub" / "up.jpg").symlink_to(Path("..") / ".." / "elsewhere" / "secret.txt")
    _refused(images, "sub/up.jpg")
    assert not [path for path in opened if path.startswith(str(elsewhere))]


def test_a_linked_folder_leading_outside_is_refused(tree, opened):
    images, elsewhere = tree
    (images / "linked").symlink_to(elsewhere, target_is_directory=True)
    _refused(images, "linked/photo.jpg")
    _refused(images, "linked/secret.txt")
    assert not [path for path in opened if path.startswith(str(elsewhere))]


def test_a_dangling_link_leading_outside_is_refused(tree):
    images, elsewhere = tree
    (images / "gone.jpg").symlink_to(elsewhere / "no-such-file.jpg")
    _refused(images, "gone.jpg")


def test_a_dangling_link_inside_is_a_missing_file(tree):
    images, _ = tree
    (images / "gone.jpg").symlink_to(images / "sub" / "no-such-file.jpg")
    with pytest.raises(FileNotFoundError):
        _read(images, "gone.jpg")


def test_links_that_stay_inside_are_read(tree):
    images, _ = tree
    (images / "a.jpg").symlink_to(Path("sub") / "b.jpg")
    (images / "also_sub").symlink_to(images / "sub", target_is_directory=True)
    assert _read(images, "a.jpg") == JPEG
    assert _read(images, "also_sub/b.jpg") == JPEG


def test_an_images_root_that_is_itself_a_link_is_read_through(tree, tmp_path):
    images, _ = tree
    (tmp_path / "images_link").symlink_to(images, target_is_directory=True)
    assert _read(tmp_path / "images_link", "sub/b.jpg") == JPEG
    (images / "out.jpg").symlink_to(tmp_path / "elsewhere" / "photo.jpg")
    _refused(tmp_path / "images_link", "out.jpg")  # the root's own link is followed, links below it may not leave


VOC = ("<annotation><filename>{name}</filename><size><width>64</width><height>48</height></size>"
       "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>"
       "</annotation>")


def test_the_cli_writes_the_good_images_and_refuses_every_link_out_of_images(tmp_path):
    images, annotations, elsewhere, output = (tmp_path / name for name in ("images", "annotations", "elsewhere", "out"))
    for folder in (images / "sub", annotations, elsewhere / "folder"):
        folder.mkdir(parents=True)
    (images / "good.jpg").write_bytes(JPEG)
    (images / "sub" / "b.jpg").write_bytes(make.encode(make.gradient(), "JPEG", quality=80))  # not good.jpg's bytes
    (images / "inside.jpg").symlink_to(Path("sub") / "b.jpg")
    (elsewhere / "photo.jpg").write_bytes(OTHER_JPEG)
    (elsewhere / "secret.txt").write_bytes(SECRET)
    (elsewhere / "folder" / "secret.jpg").write_bytes(SECRET)
    (images / "photo.jpg").symlink_to(elsewhere / "photo.jpg")
    (images / "secret.jpg").symlink_to(elsewhere / "secret.txt")
    (images / "folder").symlink_to(elsewhere / "folder", target_is_directory=True)
    for name in ("good.jpg", "sub/b.jpg", "inside.jpg", "photo.jpg", "secret.jpg", "folder/secret.jpg"):
        (annotations / (name.replace("/", "_") + ".xml")).write_text(VOC.format(name=name))

    run_cli("convert", "--annotations", annotations, "--images", images, "--output", output,
            "--splits", "train=1.0", check_exit=0)

    written = sorted(e["image/filename"][0].decode() for e in read_examples(shard_files(output)))
    assert written == ["good.jpg", "inside.jpg", "sub/b.jpg"]
    rejected = [json.loads(line) for line in (output / "rejected.jsonl").read_text().splitlines()]
    outcomes = sorted((r["source"].rsplit("/", 1)[-1], r["reason"]) for r in rejected)
    # The listing does not enter linked folders (as os.walk), so folder/secret.jpg is not even listed.
    assert outcomes == [("folder_secret.jpg.xml", "image_missing"), ("photo.jpg", "path_outside_images"),
                        ("secret.jpg", "path_outside_images")]
    text = SECRET.strip()
    forms = [text, text[:8].hex().encode(), text.hex().encode(), OTHER_JPEG[-64:]]  # plain, as quoted hex, as bytes
    for path in output.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [form for form in forms if form in data], path
