"""Does a local run's memory stay flat as the dataset grows? Peak RSS of every process, up to 100,000s of images.

    python benchmarks/memory_scaling.py [--sizes 3000,50000,300000] [--workdir /tmp/od-tfrecords-bench]
        [--project-dir DIR]

benchmarks/benchmark.py measures speed on photo-sized images, where 50,000 images are 8.5 GB; memory
that grows with the number of images would only show at sizes that do not fit its page cache. This
script takes what grows with N in a converter, the images' metadata, apart from their pixels: it
generates N tiny distinct JPEGs (one 64x48 JPEG with the image's number in a comment segment, so no
two are byte-identical, ~1 KB each) and a VOC file with one box for each, then runs the project's
conversion (`python -m pipeline convert`, defaults, in --project-dir: e.g. an older checkout made with
`git worktree add --detach DIR COMMIT`) once per size, and prints wall seconds, images/s and the peak RSS
of the largest process and of the process tree (sampled every 50 ms by benchmarks/_rss.py). It checks
that each run wrote N records. Datasets are cached under --workdir/tiny-N.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import time
from pathlib import Path

from _rss import run_measured
from benchmark import REPO, count_tfrecords

WIDTH, HEIGHT = 64, 48


def _base_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), (90, 140, 200)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def generate(folder: Path, n: int) -> None:
    """N distinct tiny JPEGs and their VOC files; skipped when already complete."""
    done = folder / "complete"
    if done.exists() and int(done.read_text()) == n:
        return
    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    (folder / "annotations").mkdir()
    base = _base_jpeg()
    for index in range(n):
        comment = f"image {index}".encode()
        # A COM segment right after the start-of-image marker: the same pixels, distinct bytes.
        data = base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]
        name = f"img{index:07d}"
        (folder / "images" / f"{name}.jpg").write_bytes(data)
        (folder / "annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>{WIDTH}</width><height>{HEIGHT}</height>"
            f"</size><object><name>class{index % 5}</name><bndbox><xmin>4</xmin><ymin>5</ymin><xmax>40</xmax>"
            f"<ymax>30</ymax></bndbox></object></annotation>")
    done.write_text(str(n))
    print(f"  generated {n} images in {time.perf_counter() - started:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="3000,50000,300000", help="comma-separated numbers of images")
    parser.add_argument("--workdir", default="/tmp/od-tfrecords-bench", help="where the datasets are cached")
    parser.add_argument("--project-dir", default=str(REPO), help="checkout whose `python -m pipeline` is measured")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    workdir, project = Path(args.workdir), Path(args.project_dir)
    rows = []
    for n in sizes:
        data = workdir / f"tiny-{n}"
        print(f"N={n}: dataset in {data} ...", flush=True)
        generate(data, n)
        output = workdir / "memory-scaling-output"
        shutil.rmtree(output, ignore_errors=True)
        command = [sys.executable, "-m", "pipeline", "convert", "--format", "voc", "--annotations",
                   str(data / "annotations"), "--images", str(data / "images"), "--output", str(output)]
        os.sync()
        log = workdir / f"memory-scaling-{n}.log"
        measured = run_measured(command, log, cwd=project)
        if measured["exit_code"] != 0:
            raise SystemExit(f"N={n}: the conversion failed ({measured['exit_code']}):\n{log.read_text()[-3000:]}")
        records, _ = count_tfrecords(output)
        if records != n:
            raise SystemExit(f"N={n}: the project wrote {records} records, not {n}")
        shutil.rmtree(output, ignore_errors=True)
        rows.append((n, measured))
        print(f"  {measured['seconds']:.1f} s, largest process {measured['rss_max_process_mib']:.0f} MiB", flush=True)

    print(f"\nproject in {project}, 2 cores: peak RSS by dataset size ({WIDTH}x{HEIGHT} JPEGs, one box each)")
    print(f"{'images':>9} {'seconds':>8} {'images/s':>9} {'largest process':>16} {'tree sum':>10}")
    for n, measured in rows:
        print(f"{n:>9,} {measured['seconds']:>8.1f} {n / measured['seconds']:>9,.0f} "
              f"{measured['rss_max_process_mib']:>12.0f} MiB {measured['rss_max_tree_sum_mib']:>6.0f} MiB")
    first, last = rows[0][1]["rss_max_process_mib"], rows[-1][1]["rss_max_process_mib"]
    print(f"largest process: {last / first:.2f}x from {rows[0][0]:,} to {rows[-1][0]:,} images")


if __name__ == "__main__":
    main()
