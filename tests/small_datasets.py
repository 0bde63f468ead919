"""Small real datasets made in a test's folder, and a fingerprint of a folder's files."""
from __future__ import annotations

import hashlib
from pathlib import Path

from tests import image_factory as make

VOC = ("<annotation><filename>{name}</filename><object><name>{label}</name><bndbox><xmin>4</xmin><ymin>4</ymin>"
       "<xmax>30</xmax><ymax>30</ymax></bndbox></object></annotation>")


def voc_dataset(root: Path, count: int, *, label: str = "cat", images: str = "images", annotations: str = "annotations",
                width: int = 64) -> tuple:
    """`count` distinct real JPEGs with one box each, as VOC; returns (annotations folder, images folder)."""
    image_dir, annotation_dir = root / images, root / annotations
    image_dir.mkdir(parents=True, exist_ok=True)
    annotation_dir.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        picture = make.gradient(width + index, 48)
        picture.putpixel((0, 0), (index % 256, len(label), 7))
        (image_dir / f"img{index}.jpg").write_bytes(make.encode(picture, "JPEG", quality=95))
        (annotation_dir / f"img{index}.xml").write_text(VOC.format(name=f"img{index}.jpg", label=label))
    return annotation_dir, image_dir


def digest(folder: Path) -> dict:
    """{relative path: sha256} of every file below `folder`, hidden ones too."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}
