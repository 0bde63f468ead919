"""--class_map: keys checked against the classes the annotations really have (a typo maps nothing, silently,
unless the run ends on it), with the closest class named; a correct map still renames and drops."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import image_factory as make
from tests.conftest import read_examples, run_cli, shard_files
from transforms.class_map import MAP_KEY, SOURCE_CLASS, class_map_notes, class_names_checked, unmatched_keys_message
from transforms.outcomes import UnusableInput, ending_in

VOC = ("<annotation><filename>{name}</filename><size><width>64</width><height>48</height><depth>3</depth></size>"
       "{objects}</annotation>")
OBJECT = "<object><name>{label}</name><bndbox><xmin>4</xmin><ymin>4</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>"


def dataset(root: Path, labels) -> tuple:
    """One real JPEG per entry of `labels`, each annotated in VOC with boxes of those labels."""
    images, annotations = root / "images", root / "annotations"
    images.mkdir(parents=True)
    annotations.mkdir()
    for index, names in enumerate(labels):
        picture = make.gradient(64, 48)
        picture.putpixel((0, 0), (index, 3, 7))
        (images / f"img{index}.jpg").write_bytes(make.encode(picture, "JPEG", quality=95))
        objects = "".join(OBJECT.format(label=label) for label in names)
        (annotations / f"img{index}.xml").write_text(VOC.format(name=f"img{index}.jpg", objects=objects))
    return annotations, images


def convert(annotations, images, output, class_map: Path, check_exit):
    return run_cli("convert", "--format", "voc", "--annotations", annotations, "--images", images, "--output", output,
                   "--splits", "train=0.5,val=0.5", "--class_map", class_map, check_exit=check_exit)


# --- the check --------------------------------------------------------------------------------------


def test_a_key_no_class_has_is_named_with_the_closest_class():
    assert unmatched_keys_message({"racoon", "Dog"}, {"raccoon", "Dog", "cat"}) == (
        "--class_map: 'racoon' matches no class in the annotations (did you mean 'raccoon'?); fix or remove it")
    assert unmatched_keys_message({"PERSON"}, {"person"}) == (  # case alone: still found
        "--class_map: 'PERSON' matches no class in the annotations (did you mean 'person'?); fix or remove it")
    assert unmatched_keys_message({"zebra", "racoon"}, {"raccoon"}) == (
        "--class_map: 'racoon' (did you mean 'raccoon'?) and 'zebra' match no class in the annotations; fix or remove them")
    assert unmatched_keys_message({"raccoon", "cat"}, {"raccoon", "cat", "dog"}) is None
    assert unmatched_keys_message(set(), set()) is None


def test_the_label_map_step_checks_the_notes_of_every_parse_task():
    class_map = {"racoon": "raccoon", "dog": None}
    # Two parse tasks: "dog" is seen by the first only, the names are sent as they are after the map.
    elements = ["raccoon", *class_map_notes(["raccoon", "dog"], class_map), "raccoon", *class_map_notes(["raccoon"], class_map)]
    with pytest.raises(UnusableInput) as raised:
        class_names_checked(elements)
    line, status = ending_in(f"RuntimeError: {raised.value} [while running 'LabelMap/Number']")
    assert status == 2
    assert line == ("unusable input: --class_map: 'racoon' matches no class in the annotations (did you mean "
                    "'raccoon'?); fix or remove it")
    assert class_names_checked(["raccoon", *class_map_notes(["racoon", "raccoon", "dog"], class_map)]) == ["raccoon"]
    assert list(class_map_notes(["a"], {})) == []  # no class map: nothing but the names travels
    assert sorted(class_map_notes(["b", "a", "b"], {"k": None})) == [(MAP_KEY, "k"), (SOURCE_CLASS, "a"), (SOURCE_CLASS, "b")]


# --- the command ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_class_map_key_with_a_typo_ends_the_run_with_one_line_and_no_dataset(tmp_path):
    annotations, images = dataset(tmp_path / "src", [["raccoon"], ["raccoon", "dog"], ["dog"], ["raccoon"]])
    class_map = tmp_path / "classes.yaml"
    class_map.write_text("racoon: animal\ndog: animal\n")
    output = tmp_path / "out"
    result = convert(annotations, images, output, class_map, check_exit=2)
    assert result.stderr.splitlines() == [
        "error: unusable input: --class_map: 'racoon' matches no class in the annotations (did you mean 'raccoon'?); "
        "fix or remove it"
    ], result.stderr
    published = [path.name for path in output.iterdir() if not path.name.startswith(".")] if output.exists() else []
    assert published == []
    assert not (output / ".staging").exists() or not any((output / ".staging").iterdir())

    class_map.write_text("raccoon: animal\ndog: null\n")  # fixed: renamed and dropped as asked
    result = convert(annotations, images, output, class_map, check_exit=0)
    summary = json.loads((output / "summary.json").read_text())
    assert [item["name"] for item in summary["classes"]] == ["animal"]
    assert summary["boxes"]["dropped_by_class_map"] == 2
    examples = read_examples(shard_files(output))
    assert sorted(text for example in examples for text in example["image/object/class/text"]) == [b"animal"] * 3
