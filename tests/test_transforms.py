"""The join (pure) and the composite transforms on Beam's TestPipeline, checked with assert_that."""
from __future__ import annotations

import dataclasses

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.beam.runtime import REMOTE, Runtime
from transforms.beam.aggregate import BuildLabelMap, CountShards, DuplicateCounts, FindDuplicates
from transforms.formats import FORMATS, ParseContext
from transforms.join import JoinRule, join_shard, join_source
from transforms.model import ITEM_ANNOTATION, RELATIVE, Box, ImageRecord, Rejection, pack, pack_records, unpack, unpack_records
from transforms.beam.read import ListImages, ParseAnnotations, ShardImages, files_per_task
from transforms.splits import assign_shard
from transforms.beam.content_groups import content_batches
from transforms.beam.write import TARGET_SHARD_BYTES, TARGET_SHARD_IMAGES


def _record(key, source, *labels, size=0):
    return ImageRecord(key=key, source=source, source_id=key, boxes=tuple(Box(l, 0, 0, 1, 1) for l in labels),
                       image_bytes=size)


def test_join_reports_orphans_both_ways_and_keeps_the_first_annotation():
    records = [
        _record("a.jpg", "ann/a.xml", "cat"),
        _record("a.jpg", "ann/z.xml", "dog", "dog"),
        _record("missing.jpg", "ann/m.xml", "cat"),
    ]
    images = [("a.jpg", 1234), ("orphan.png", 10)]
    joined = join_source(records, images, JoinRule("/data/images", "voc"))
    assert joined.records == [dataclasses.replace(_record("a.jpg", "ann/a.xml", "cat", size=1234), images_root="/data/images")]
    assert joined.rejections == [
        Rejection("ann/z.xml", "annotation_duplicate", "a.jpg is already annotated by ann/a.xml", ITEM_ANNOTATION, 2),
        Rejection("ann/m.xml", "image_missing", "missing.jpg is not under --images", boxes=1),
        Rejection("/data/images/orphan.png", "image_unannotated", "no annotation names this image"),
    ]
    assert joined.images_read == 3


UNKNOWN = ("box_unknown_class", "line 1: class index 5 is not in the 1 --classes")


def test_a_record_the_join_rejects_carries_its_boxes_and_reports_its_parsers_box_rejections_apart():
    records = [
        dataclasses.replace(_record("a.jpg", "ann/a.xml", "cat"), rejected_boxes=(UNKNOWN,)),
        dataclasses.replace(_record("a.jpg", "ann/z.xml", "dog"), rejected_boxes=(UNKNOWN, UNKNOWN)),
        dataclasses.replace(_record("missing.jpg", "ann/m.xml"), rejected_boxes=(UNKNOWN,)),  # its only box
    ]
    joined = join_source(records, [("a.jpg", 10)], JoinRule("/d", "voc"))
    assert [record.rejected_boxes for record in joined.records] == [(UNKNOWN,)]  # for the writer to report
    box = Rejection("ann/z.xml", *UNKNOWN, "box")
    assert joined.rejections == [
        Rejection("ann/z.xml", "annotation_duplicate", "a.jpg is already annotated by ann/a.xml", ITEM_ANNOTATION, 1),
        box, box,
        Rejection("ann/m.xml", "image_missing", "missing.jpg is not under --images", boxes=0),
        Rejection("ann/m.xml", *UNKNOWN, "box"),
    ]


def test_packed_records_keep_their_parsers_box_rejections():
    record = dataclasses.replace(_record("a.jpg", "ann/a.xml", "cat"), rejected_boxes=(UNKNOWN,))
    assert unpack_records(pack_records([record, _record("b.jpg", "ann/b.xml")])) == [record, _record("b.jpg", "ann/b.xml")]


def test_a_shard_joins_each_source_with_its_own_images():
    rules = [JoinRule("/one", "voc"), JoinRule("/two", "voc")]
    joined = join_shard(
        [(1, pack_records([_record("a.jpg", "two/a.xml", "dog")])), (0, pack_records([_record("a.jpg", "one/a.xml", "cat")]))],
        [(0, pack([("a.jpg", 5)])), (1, pack([("b.jpg", 6)]))],
        rules,
    )
    assert [(r.images_root, r.key, r.source) for r in joined.records] == [("/one", "a.jpg", "one/a.xml")]
    assert [(r.source, r.reason) for r in joined.rejections] == [
        ("two/a.xml", "image_missing"), ("/two/b.jpg", "image_unannotated"),
    ]
    assert joined.images_read == 3


def test_label_map_extends_the_seed_in_name_order():
    with TestPipeline() as p:
        ids = p | beam.Create(["zebra", "cat", "ant", "cat"]) | BuildLabelMap({"cat": 7})
        assert_that(ids, equal_to([{"cat": 7, "ant": 8, "zebra": 9}]))


def test_label_map_of_no_records_is_the_seed():
    with TestPipeline() as p:
        ids = p | beam.Create([]) | BuildLabelMap({"cat": 2})
        assert_that(ids, equal_to([{"cat": 2}]))


@pytest.mark.parametrize("requested, sizes, expected", [
    (4, [10], 4),
    (0, [10, 20], 1),
    (0, [TARGET_SHARD_BYTES] * 5, 4),  # 80 % of 5 targets in train -> 4 shards
    (0, [100] * (2 * TARGET_SHARD_IMAGES), 2),  # thumbnails: 80 % of twice the images a shard holds -> 2 shards
    (0, [], 1),
])
def test_shard_count(requested, sizes, expected):
    with TestPipeline() as p:
        image_totals = p | beam.Create([(1, size) for size in sizes])
        assert_that(image_totals | CountShards(requested, (("train", 0.8), ("val", 0.2))), equal_to([expected]))


def test_duplicates_are_groups_of_keys_sharing_bytes():
    one_writer = [("a1" + "0" * 62, "b.jpg", "train"), ("a2" + "0" * 62, "c.jpg", "train"),
                  ("b0" + "0" * 62, "d.jpg", "val"), ("c0" + "0" * 62, "f.jpg", "train")]
    another = [("a1" + "0" * 62, "a.jpg", "train"), ("a2" + "1" * 62, "e.jpg", "val"), ("c0" + "0" * 62, "g.jpg", "test")]
    content = [(group, batch) for rows in (one_writer, another) for group, batches in content_batches(rows) for batch in batches]
    assert [group for group, _ in content] == ["a", "a", "b", "c", "a", "a", "c"]
    with TestPipeline() as p:
        assert_that(p | beam.Create(content) | FindDuplicates(),
                    equal_to([(["a.jpg", "b.jpg"], ["train"]), (["f.jpg", "g.jpg"], ["test", "train"])]))


def test_duplicate_counts_combine_in_bounded_memory_to_what_sorting_every_group_gives():
    import random

    rng = random.Random(7)
    groups = []
    for n in range(500):
        keys = sorted(f"{rng.randrange(10_000):05d}.jpg" for _ in range(rng.randrange(2, 5)))
        groups.append((keys, sorted(rng.sample(["train", "val", "test"], rng.randrange(1, 3)))))
    expected = {
        "all": (len(groups), sum(len(keys) for keys, _ in groups), sorted(keys for keys, _ in groups)[:20]),
        "across_splits": (sum(1 for _, splits in groups if len(splits) > 1),
                          sum(len(keys) for keys, splits in groups if len(splits) > 1),
                          sorted(keys for keys, splits in groups if len(splits) > 1)[:20]),
    }
    combine = DuplicateCounts(20)
    parts = [groups[start::7] for start in range(7)]  # merged from partial accumulators, as a runner does
    accumulators = []
    for part in parts:
        accumulator = combine.create_accumulator()
        for group in part:
            accumulator = combine.add_input(accumulator, group)
        assert all(len(accumulator[kind][2]) <= 20 for kind in DuplicateCounts.KINDS)
        accumulators.append(accumulator)
    assert combine.extract_output(combine.merge_accumulators(accumulators)) == expected
    with TestPipeline() as p:
        combined = p | beam.Create(groups) | beam.CombineGlobally(DuplicateCounts(20))
        assert_that(combined, equal_to([expected]))
    with TestPipeline() as p:  # no copies at all: still one summary, of zeros
        nothing = p | beam.Create([]) | beam.CombineGlobally(DuplicateCounts(20))
        assert_that(nothing, equal_to([{"all": (0, 0, []), "across_splits": (0, 0, [])}]))


@pytest.mark.parametrize("files, per_task", [(1, 64), (3000, 64), (10_000, 157), (50_000, 782), (10_000_000, 1024)])
def test_parse_tasks_grow_with_the_dataset_within_bounds(files, per_task):
    assert files_per_task(files) == per_task


def test_parse_and_list_real_files(tmp_path):
    (tmp_path / "ann" / "sub").mkdir(parents=True)
    (tmp_path / "ann" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin>"
        "<xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>")
    (tmp_path / "ann" / "sub" / "b.xml").write_text("<annotation>")
    (tmp_path / "img" / "deep").mkdir(parents=True)
    (tmp_path / "img" / "deep" / "x.JPG").write_bytes(b"12345")
    (tmp_path / "img" / "readme.txt").write_text("skip me")
    patterns = [f"{tmp_path}/ann/**.xml", f"{tmp_path}/ann/*.xml"]  # overlapping: each file parsed once
    with TestPipeline() as p:
        num_shards = p | "Shards" >> beam.Create([3])
        parsed = p | ParseAnnotations(FORMATS["voc"], patterns, ParseContext(), class_map={},
                                      source_index=2, seed=0, num_shards=num_shards)
        shard = assign_shard("a.jpg", 0, 3)
        assert_that(parsed.records | beam.Map(lambda item: (item[0], item[1][0], [(r.key, r.boxes) for r in unpack_records(item[1][1])])),
                    equal_to([(shard, 2, [("a.jpg", (Box("cat", 1, 2, 3, 4, difficult=False, truncated=False,
                                                           view="Unspecified"),))])]), label="records")
        assert_that(parsed.rejected | beam.Map(lambda r: (r.source, r.reason)),
                    equal_to([(f"{tmp_path}/ann/sub/b.xml", "xml_malformed")]), label="rejected")
        assert_that(parsed.labels, equal_to(["cat"]), label="labels")
        assert_that(parsed.tally | beam.CombinePerKey(sum),
                    equal_to([("annotation_files_read", 2), ("boxes_read", 1)]), label="tally")
        listing = p | ListImages(str(tmp_path / "img"), source_index=2)
        assert_that(listing.chunks | beam.Map(lambda chunk: (chunk[0], unpack(chunk[1][1]))),
                    equal_to([("2-0", [("deep/x.JPG", 5)])]), label="images")
        assert_that(listing.image_totals, equal_to([(1, 5)]), label="image totals")
        sharded = listing.chunks | ShardImages(JoinRule(str(tmp_path / "img"), "voc"), source_index=2, seed=0, num_shards=num_shards)
        assert_that(sharded | beam.Map(lambda item: (item[0], (item[1][0], unpack(item[1][1])))),
                    equal_to([(assign_shard("deep/x.JPG", 0, 3), (2, [("deep/x.JPG", 5)]))]), label="sharded")


def test_yolo_join_matches_by_stem_and_makes_unlabeled_images_negatives():
    labeled = ImageRecord(key="images/train/a", source="/d/labels/train/a.txt", source_id="images/train/a",
                          boxes=(Box("cat", 0.1, 0.1, 0.5, 0.5),), units=RELATIVE)
    images = [("images/train/a.png", 5), ("images/train/b.jpg", 7), ("images/train/a.jpg", 6)]
    joined = join_source([labeled], images, JoinRule("/d", "yolo"))
    assert joined.records == [
        dataclasses.replace(labeled, key="images/train/a.jpg", source_id="images/train/a.jpg", image_bytes=6, images_root="/d"),
        ImageRecord(key="images/train/b.jpg", source="/d/images/train/b.jpg", source_id="images/train/b.jpg",
                    units=RELATIVE, source_split="train", image_bytes=7, images_root="/d"),
    ]
    assert [(r.source, r.reason) for r in joined.rejections] == [("/d/images/train/a.png", "image_label_ambiguous")]


def test_a_big_coco_file_is_parsed_in_parts_with_the_same_result(tmp_path, monkeypatch):
    import json

    from transforms.beam import read

    images = [{"id": i, "file_name": f"img{i}.jpg", "width": 64, "height": 48} for i in range(40)]
    boxes = [{"id": 100 + i, "image_id": i % 40, "category_id": 1 + i % 2, "bbox": [1, 2, 10, 8]} for i in range(90)]
    boxes.append({"id": 999, "image_id": 12345, "category_id": 1, "bbox": [1, 2, 3, 4]})  # reported once
    document = {"images": images, "annotations": boxes, "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(document))

    expected = [(assign_shard(f"img{i}.jpg", 3, 4), f"img{i}.jpg", len([b for b in boxes if b["image_id"] == i]))
                for i in range(40)]
    for part_bytes, processes in ((10 ** 9, 1), (path.stat().st_size // 5, 2)):  # whole; six parts on two forks
        monkeypatch.setattr(read, "PART_BYTES", part_bytes)
        tasks = list(read._PlanParsing(FORMATS["coco"], 0, REMOTE.exchange).process([str(path)]))
        assert len(tasks) == (1 if part_bytes > path.stat().st_size else 6)
        with TestPipeline() as p:
            parsed = p | ParseAnnotations(FORMATS["coco"], [str(path)], ParseContext(), class_map={},
                                          source_index=0, seed=3, num_shards=p | beam.Create([4]),
                                          runtime=_Forking(processes) if processes > 1 else REMOTE)
            records = parsed.records | beam.FlatMap(lambda item: [(item[0], r.key, len(r.boxes)) for r in unpack_records(item[1][1])])
            assert_that(records, equal_to(expected), label="records")
            assert_that(parsed.rejected | beam.Map(lambda r: r.reason), equal_to(["box_unknown_image"]), label="rejected")
            assert_that(parsed.tally | beam.CombinePerKey(sum),
                        equal_to([("annotation_files_read", 1), ("boxes_read", 91)]), label="tally")


class _Forking(Runtime):
    """Elements through the runner's shuffle, as on a remote runner, but handled by forked workers."""

    def __init__(self, processes: int):
        self._processes = processes

    def workers(self, dofn):
        from transforms.local.pool import ForkedWorkers

        return ForkedWorkers(dofn, self._processes)


def test_one_file_naming_an_image_twice_keeps_the_same_record_whatever_the_order():
    first = ImageRecord(key="a.jpg", source="/d/instances.json", source_id="7", boxes=(Box("cat", 1, 2, 3, 4),))
    second = ImageRecord(key="a.jpg", source="/d/instances.json", source_id="12", boxes=(Box("dog", 1, 2, 3, 4),))
    results = [join_source(order, [("a.jpg", 5)], JoinRule("/d", "coco")) for order in ([first, second], [second, first])]
    assert results[0] == results[1]
    assert [record.source_id for record in results[0].records] == ["12"]  # "12" < "7" as text
    assert [rejection.reason for rejection in results[0].rejections] == ["annotation_duplicate"]



TALLIES = ("images_read", "images_written", ("split_images", "train"), ("split_boxes", "train"), "boxes_written",
           ("class_boxes", "cat"))


def _check_write_shards(tmp_path, policy, records, images, *, rejected, tallies, duplicates, files):
    """Runs WriteShards over one shard of VOC `records` and `images` ({name: bytes}) and checks its outputs:
    rejections as (source file name, reason, boxes, detail), the TALLIES, duplicate groups, staged files."""
    from transforms.incremental import manifest as state
    from transforms.beam.write import FILES, ShardLayout, WriteShards

    folder = tmp_path / "images"
    folder.mkdir()
    for name, data in images.items():
        (folder / name).write_bytes(data)
    staging = tmp_path / "staging"
    staging.mkdir()
    with TestPipeline() as p:
        sharded = {
            "records": p | "Records" >> beam.Create([(0, (0, pack_records(records)))]),
            "images": p | "Images" >> beam.Create([(0, (0, pack(sorted((n, len(d)) for n, d in images.items()))))]),
        }
        layout = ShardLayout(str(staging), "ds", 0, (("train", 1.0),), policy, (JoinRule(str(folder), "voc"),))
        written = sharded | WriteShards(layout, num_shards=p | "Shards" >> beam.Create([1]),
                                        label_ids=p | "Labels" >> beam.Create([{"cat": 1}]))
        assert_that(written.rejected | beam.Map(lambda r: (r.source.rsplit("/", 1)[-1], r.reason, r.boxes, r.detail)),
                    equal_to(rejected), label="rejected")
        assert_that(written.tally | beam.CombinePerKey(sum) | beam.Filter(lambda item: item[0] in TALLIES),
                    equal_to(list(tallies.items())), label="tallies")
        assert_that(written.content | FindDuplicates(), equal_to(duplicates), label="duplicates")
        assert_that(written[FILES] | beam.FlatMap(lambda part: state.read_changes([part]))
                    | beam.Map(lambda change: (change.split, change.records, change.boxes)),
                    equal_to(files), label="files")


def _unlabeled_case():
    from tests import image_factory as make

    photo = make.encode(make.gradient(), "JPEG")
    images = {"bad.jpg": photo, "copy.jpg": photo, "mixed.jpg": make.encode(make.gradient(40, 30), "JPEG"),
              "none.jpg": make.encode(make.gradient(30, 20), "JPEG")}
    records = [
        ImageRecord("bad.jpg", "ann/bad.xml", boxes=(Box("cat", 30, 5, 10, 20),)),  # inverted: its only box
        ImageRecord("copy.jpg", "ann/copy.xml", boxes=(Box("cat", 1, 1, 20, 20),)),  # the same bytes as bad.jpg
        ImageRecord("mixed.jpg", "ann/mixed.xml", boxes=(Box("cat", 1, 1, 20, 20), Box("cat", 1, 1, 20, float("nan")))),
        ImageRecord("none.jpg", "ann/none.xml"),  # no object at all: a negative
    ]
    return records, images


NAN_DETAIL = "box 1 (cat): coordinates (1, 1, 20, nan)"


def test_the_writer_rejects_an_image_whose_every_box_was_rejected_before_writing_hashing_or_counting_it(tmp_path):
    from transforms.records.encode import ImagePolicy

    records, images = _unlabeled_case()
    _check_write_shards(
        tmp_path, ImagePolicy(), records, images,
        rejected=[  # bad.jpg's box goes with it, counted once: not also as a box rejection of its own
            ("bad.jpg", "image_boxes_all_rejected", 1,
             "its only box rejected: box_inverted (box 0 (cat): min > max in (30, 5, 10, 20)); annotation ann/bad.xml"),
            ("mixed.xml", "box_not_finite", 0, NAN_DETAIL),
        ],
        tallies={"images_read": 4, "images_written": 3, ("split_images", "train"): 3, ("split_boxes", "train"): 2,
                 "boxes_written": 2, ("class_boxes", "cat"): 2},
        duplicates=[],  # bad.jpg's bytes never entered the duplicate search
        files=[("train", 3, 2)],
    )


def test_keep_unlabeled_writes_such_an_image_as_a_negative_with_its_box_rejections(tmp_path):
    from transforms.records.encode import ImagePolicy

    records, images = _unlabeled_case()
    _check_write_shards(
        tmp_path, ImagePolicy(keep_unlabeled=True), records, images,
        rejected=[("bad.xml", "box_inverted", 0, "box 0 (cat): min > max in (30, 5, 10, 20)"),
                  ("mixed.xml", "box_not_finite", 0, NAN_DETAIL)],
        tallies={"images_read": 4, "images_written": 4, ("split_images", "train"): 4, ("split_boxes", "train"): 2,
                 "boxes_written": 2, ("class_boxes", "cat"): 2},
        duplicates=[(["bad.jpg", "copy.jpg"], ["train"])],
        files=[("train", 4, 2)],
    )


MALFORMED = ("box_malformed", "object 0 (cat): <bndbox/xmin> 'x' is not a number")


def _parse_rejections_case():
    """Records whose parser rejected boxes (`rejected_boxes`) beside the ones they carry."""
    from tests import image_factory as make

    images = {"unknown.jpg": make.encode(make.gradient(), "JPEG"), "both.jpg": make.encode(make.gradient(40, 30), "JPEG"),
              "kept.jpg": make.encode(make.gradient(30, 20), "JPEG"), "empty.jpg": b""}
    records = [
        ImageRecord("unknown.jpg", "ann/unknown.xml", rejected_boxes=(MALFORMED,)),  # its only box rejected by its parser
        ImageRecord("both.jpg", "ann/both.xml", boxes=(Box("cat", 30, 5, 10, 20),), rejected_boxes=(MALFORMED,)),
        ImageRecord("kept.jpg", "ann/kept.xml", boxes=(Box("cat", 1, 1, 20, 20),), rejected_boxes=(MALFORMED,)),
        ImageRecord("empty.jpg", "ann/empty.xml", boxes=(Box("cat", 1, 1, 20, 20),), rejected_boxes=(MALFORMED,)),
    ]
    return records, images


def test_the_writer_counts_the_boxes_a_parser_rejected_as_the_images_own(tmp_path):
    from transforms.records.encode import ImagePolicy

    records, images = _parse_rejections_case()
    _check_write_shards(
        tmp_path, ImagePolicy(), records, images,
        rejected=[
            ("unknown.jpg", "image_boxes_all_rejected", 1,
             f"its only box rejected: box_malformed ({MALFORMED[1]}); annotation ann/unknown.xml"),
            ("both.jpg", "image_boxes_all_rejected", 2,
             f"all 2 boxes rejected: box_inverted 1, box_malformed 1 (first: {MALFORMED[1]}); annotation ann/both.xml"),
            ("kept.xml", "box_malformed", 0, MALFORMED[1]),  # one box kept: the image is written
            ("empty.jpg", "image_empty", 1, "the file is empty"),  # rejected for itself, with the box it carries
            ("empty.xml", "box_malformed", 0, MALFORMED[1]),
        ],
        tallies={"images_read": 4, "images_written": 1, ("split_images", "train"): 1, ("split_boxes", "train"): 1,
                 "boxes_written": 1, ("class_boxes", "cat"): 1},
        duplicates=[],
        files=[("train", 1, 1)],
    )


def test_keep_unlabeled_writes_an_image_its_parser_left_no_box_with_its_box_rejections(tmp_path):
    from transforms.records.encode import ImagePolicy

    records, images = _parse_rejections_case()
    _check_write_shards(
        tmp_path, ImagePolicy(keep_unlabeled=True), records, images,
        rejected=[
            ("unknown.xml", "box_malformed", 0, MALFORMED[1]),
            ("both.xml", "box_malformed", 0, MALFORMED[1]),
            ("both.xml", "box_inverted", 0, "box 0 (cat): min > max in (30, 5, 10, 20)"),
            ("kept.xml", "box_malformed", 0, MALFORMED[1]),
            ("empty.jpg", "image_empty", 1, "the file is empty"),
            ("empty.xml", "box_malformed", 0, MALFORMED[1]),
        ],
        tallies={"images_read": 4, "images_written": 3, ("split_images", "train"): 3, ("split_boxes", "train"): 1,
                 "boxes_written": 1, ("class_boxes", "cat"): 1},
        duplicates=[],
        files=[("train", 3, 1)],
    )


def test_only_the_last_read_of_an_image_releases_its_cached_pages(tmp_path, monkeypatch):
    """The writer's read is the run's last of an image (the duplicate search reads it first)."""
    import os

    from transforms.beam.read import read_record_image

    (tmp_path / "a.jpg").write_bytes(b"jpeg bytes")
    record = ImageRecord(key="a.jpg", source="a.xml", images_root=str(tmp_path))
    advice = []
    monkeypatch.setattr(os, "posix_fadvise", lambda descriptor, offset, length, what: advice.append(what))
    assert read_record_image(record) == b"jpeg bytes" and advice == []
    assert read_record_image(record, last_read=True) == b"jpeg bytes" and advice == [os.POSIX_FADV_DONTNEED]
