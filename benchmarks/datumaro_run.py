"""Datumaro's COCO -> TF Object Detection API conversion, as `datum convert` does it. Run by benchmark.py
with the Python of Datumaro's own virtualenv (Datumaro 1.13 and tensorflow-cpu, nothing of this project).

    DATUMARO_VENV/bin/python benchmarks/datumaro_run.py --coco DIR --output DIR

DIR for --coco holds annotations/instances_default.json and images/. The body is that of Datumaro's
`datum convert -if coco_instances -i DIR -f tf_detection_api -o OUT -- --save-media`
(datumaro/cli/commands/convert.py: Dataset.import_from, then Dataset.export); the CLI itself is not used
because it needs the `datumaro[cli]` extras (scipy, matplotlib, tensorboardX, tabulate) that the
conversion does not. `save_media=True` puts the image bytes into the records, as the other converters do;
Datumaro's exporter then decodes every JPEG and re-encodes it (OpenCV, quality 75) rather than copying
the file's bytes.
"""
from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco", required=True, help="COCO dataset root (annotations/ and images/)")
    parser.add_argument("--output", required=True, help="folder for default.tfrecord and the label map")
    args = parser.parse_args()

    from datumaro.components.dataset import Dataset

    dataset = Dataset.import_from(args.coco, "coco_instances")
    dataset.export(save_dir=args.output, format="tf_detection_api", save_media=True)


if __name__ == "__main__":
    main()
