"""Streaming COCO parse at scale: a ~1 GB instances JSON parsed as `parts` independent parts.

    python benchmarks/coco_stream.py [--images 1000000] [--boxes 7000000] [--parts N]
        [--workdir /tmp/od-tfrecords-bench] [--skip-json-load]

Generates (once, cached under --workdir/coco-big/) a COCO JSON with --images images and --boxes boxes
(polygon segmentations, as COCO's instances files have), written as text straight to the file. Then
parses it the way the pipeline does, part after part in this one process, with
`parse_annotation_part(coco.FORMAT, ...)`: each part streams the whole file and keeps its share of
images. Parts default to what the pipeline chooses: ceil(file size / 128 MiB). Prints seconds per part,
the total, images and boxes found, and the process's peak RSS (ru_maxrss). Unless --skip-json-load,
a child process then json.loads the same file, for its peak RSS and seconds by comparison.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from transforms.beam.read import PART_BYTES  # noqa: E402  (the pipeline's part size, so the two never drift)


def generate(path: str, images: int, boxes: int, seed: int = 0) -> None:
    """COCO text written directly, in the usual key order (info, images, annotations, categories)."""
    rng = random.Random(seed)
    categories = [(index, f"class_{index}") for index in range(1, 81)]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", buffering=1 << 22) as out:
        out.write('{"info": {"description": "benchmark", "version": "1.0"}, "licenses": [], "images": [')
        for image_id in range(1, images + 1):
            out.write(
                f'{"," if image_id > 1 else ""}{{"id": {image_id}, "file_name": "train/{image_id:012d}.jpg", '
                f'"width": 640, "height": 480, "license": 1}}'
            )
        out.write('], "annotations": [')
        chunk = []
        for box_id in range(1, boxes + 1):
            image_id = 1 + (box_id - 1) * images // boxes
            x, y = rng.randint(0, 500), rng.randint(0, 350)
            w, h = round(rng.uniform(2, 139), 2), round(rng.uniform(2, 129), 2)
            chunk.append(
                f'{"," if box_id > 1 else ""}{{"id": {box_id}, "image_id": {image_id}, "category_id": {rng.randint(1, 80)}, '
                f'"bbox": [{x}, {y}, {w}, {h}], "area": {round(w * h, 2)}, "iscrowd": 0, '
                f'"segmentation": [[{x}, {y}, {x + w:.2f}, {y}, {x + w:.2f}, {y + h:.2f}, {x}, {y + h:.2f}]]}}'
            )
            if len(chunk) == 10000:
                out.write("".join(chunk))
                chunk = []
        out.write("".join(chunk))
        out.write('], "categories": [')
        out.write(", ".join(f'{{"id": {i}, "name": "{name}", "supercategory": "thing"}}' for i, name in categories))
        out.write("]}\n")
    os.replace(tmp, path)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--boxes", type=int, default=7_000_000)
    parser.add_argument("--parts", type=int, default=0, help="0: ceil(size / 128 MiB), as the pipeline")
    parser.add_argument("--workdir", default="/tmp/od-tfrecords-bench")
    parser.add_argument("--skip-json-load", action="store_true", help="skip the json.load comparison")
    parser.add_argument("--json-load-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    folder = os.path.join(args.workdir, "coco-big")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"instances-{args.images}-{args.boxes}.json")
    if args.json_load_only:  # the child of the comparison: a fresh process, so its peak RSS is its own
        start = time.perf_counter()
        with open(path, "rb") as stream:
            document = json.load(stream)
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "images": len(document["images"]),
                          "boxes": len(document["annotations"]), "peak_rss_mib": peak_rss_mib()}))
        return
    if not os.path.exists(path):
        start = time.perf_counter()
        generate(path, args.images, args.boxes)
        print(f"generated {path} in {time.perf_counter() - start:.1f} s")
    size = os.path.getsize(path)
    parts = args.parts or max(1, math.ceil(size / PART_BYTES))
    print(f"file: {path}  {size / 2**20:.0f} MiB  parts: {parts}")

    from transforms.formats import coco, parse_annotation_part
    from transforms.model import ImageRecord, Rejection

    def open_stream():
        return open(path, "rb")

    images = boxes = rejections = 0
    total_start = time.perf_counter()
    for part in range(parts):
        start = time.perf_counter()
        for item in parse_annotation_part(coco.FORMAT, path, open_stream, part=part, parts=parts):
            if isinstance(item, ImageRecord):
                images += 1
                boxes += len(item.boxes)
            elif isinstance(item, Rejection):
                rejections += 1
        print(f"part {part + 1}/{parts}: {time.perf_counter() - start:.1f} s  peak RSS so far {peak_rss_mib():.0f} MiB",
              flush=True)
    total = time.perf_counter() - total_start
    print(f"streaming: {total:.1f} s total ({total / parts:.1f} s per part), images {images}, boxes {boxes}, "
          f"rejections {rejections}, peak RSS {peak_rss_mib():.0f} MiB")

    if not args.skip_json_load:
        child = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--json-load-only", "--images", str(args.images),
             "--boxes", str(args.boxes), "--workdir", args.workdir],
            capture_output=True, text=True,
        )
        if child.returncode:
            print(f"json.load: failed (exit {child.returncode}) {child.stderr.strip()[-300:]}")
        else:
            result = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"json.load: {result['seconds']:.1f} s, images {result['images']}, boxes {result['boxes']}, "
                  f"peak RSS {result['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
