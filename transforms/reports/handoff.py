"""The output folder's README.md: what is in it, and the config snippets that train on it, ready to paste."""
from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence

from transforms import storage

README = "README.md"
# The split evaluated during training: the first of these the dataset has.
_EVAL_SPLITS = ("val", "validation", "valid", "eval", "dev", "test")


def absolute(output: str) -> str:
    """A path that works from any directory the training job runs in (gs:// paths already do)."""
    return os.path.abspath(output) if storage.is_local(output) else output.rstrip("/")


def eval_split(splits: Sequence[str]) -> Optional[str]:
    return next((split for split in _EVAL_SPLITS if split in splits), None)


def handoff_readme(summary: Mapping, output: str, name: str) -> str:
    """README.md for the output folder, from summary.json's counts."""
    folder = absolute(output)
    splits = list(summary["splits"])
    classes = summary["classes"]
    num_classes = max((item["id"] for item in classes), default=0)  # the largest id (ids may leave gaps); no background
    train = "train" if "train" in splits else (splits[0] if splits else "train")
    evaluation = eval_split([split for split in splits if split != train])
    masks = bool(summary.get("config", {}).get("include_masks"))
    # The OD API reads PNG instance masks only when told to, in each input reader.
    mask_fields = ["  load_instance_masks: true", "  mask_type: PNG_MASKS"] if masks else []
    pattern = lambda split: f"{folder}/{name}-{split}.tfrecord-*"
    label_map = f"{folder}/label_map.pbtxt"

    lines = [
        f"# {name}: TFRecords for the TensorFlow Object Detection API",
        "",
        f"{summary['images_written']} images with {summary['boxes']['written']} boxes of {len(classes)} classes, "
        f"written by od-tfrecords ({summary['images_rejected']} images rejected: see `rejected.jsonl`; "
        "every count in `summary.json`).",
        "",
        "| split | images | boxes | files |",
        "|---|---|---|---|",
        *(
            f"| {split} | {counts['images']} | {counts['boxes']} | `{name}-{split}.tfrecord-*` ({counts['shards']} shards) |"
            for split, counts in summary["splits"].items()
        ),
        "",
        "| id | class | boxes |",
        "|---|---|---|",
        *(f"| {item['id']} | {item['name']} | {item['boxes']} |" for item in classes[:50]),
        *([f"| | ... {len(classes) - 50} more in `label_map.pbtxt` | |"] if len(classes) > 50 else []),
        "",
        *([f"Class ids are the source's own (COCO category ids, YOLO index + 1, CVAT label order) and leave gaps: "
           f"`num_classes` below is the largest id, {num_classes}, not the {len(classes)} classes.", ""]
          if num_classes != len(classes) else []),
        "See what is inside: `python -m pipeline inspect . --report report/` (contact sheets, charts) and",
        "`python -m pipeline verify .` (reads every record, exit 1 on any problem).",
        "",
        "## TF Object Detection API: `pipeline.config`",
        "",
        "Replace these fields in the model's sample config:",
        "",
        "```",
        "model {",
        "  ssd {  # or faster_rcnn, center_net, ...: the same field",
        f"    num_classes: {num_classes}",
        "  }",
        "}",
        "train_input_reader {",
        f'  label_map_path: "{label_map}"',
        *mask_fields,
        "  tf_record_input_reader {",
        f'    input_path: "{pattern(train)}"',
        "  }",
        "}",
    ]
    if evaluation:
        lines += [
            "eval_config {",
            '  metrics_set: "coco_detection_metrics"',
            "}",
            "eval_input_reader {",
            f'  label_map_path: "{label_map}"',
            *mask_fields,
            "  shuffle: false",
            "  num_epochs: 1",
            "  tf_record_input_reader {",
            f'    input_path: "{pattern(evaluation)}"',
            "  }",
            "}",
        ]
    lines += [
        "```",
        "",
        "## TensorFlow Model Garden: `tf_example_decoder`",
        "",
        "```python",
        "import tensorflow as tf",
        "from official.vision.dataloaders import tf_example_decoder",
        "",
        f"decoder = tf_example_decoder.TfExampleDecoder(include_mask={masks}, regenerate_source_id=False)",
        f'files = tf.io.gfile.glob("{pattern(train)}")',
        "dataset = tf.data.TFRecordDataset(files).map(decoder.decode)",
        "# each element: image, source_id, height, width, groundtruth_classes, groundtruth_boxes",
        "# (normalized ymin, xmin, ymax, xmax), groundtruth_is_crowd, groundtruth_area",
        "```",
        "",
        "In an experiment config (YAML), Model Garden counts the background as a class:",
        "",
        "```yaml",
        "task:",
        "  model:",
        f"    num_classes: {num_classes + 1}",
        "  train_data:",
        f"    input_path: '{pattern(train)}'",
        "    decoder:",
        "      simple_decoder:",
        "        regenerate_source_id: false",
    ]
    if evaluation:
        lines += [
            "  validation_data:",
            f"    input_path: '{pattern(evaluation)}'",
            "    decoder:",
            "      simple_decoder:",
            "        regenerate_source_id: false",
        ]
    lines += [
        "```",
        "",
        "## TensorFlow Datasets",
        "",
        "`dataset_info.json` and `features.json` make this folder a TFDS dataset, with no copy of the data:",
        "",
        "```python",
        "import tensorflow_datasets as tfds",
        "",
        f'builder = tfds.builder_from_directory("{folder}")',
        f'dataset = builder.as_dataset(split="{train}")',
        '# example["image"]["encoded"] is the decoded image; example["image"]["object"]["bbox"]["xmin"], ...',
        "```",
        "",
    ]
    return "\n".join(lines)
