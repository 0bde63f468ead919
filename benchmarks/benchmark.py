"""Conversion speed and memory: the project's DirectRunner run beside a plain single-process loop.

    python benchmarks/benchmark.py --n 2000

Generates N photo-sized JPEGs (640x480, ~170 KB, distinct) with Pascal VOC boxes once (cached under
--workdir), warms the page cache, then runs each converter as its own process and prints wall time,
images/s, MB/s of image bytes and peak RSS. Results also go to a JSON file.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 640, 480


def generate(folder: Path, n: int) -> None:
    """N distinct photo-like JPEGs (smooth colour fields plus sensor-like noise) and their VOC files."""
    import numpy as np
    from PIL import Image

    images, annotations = folder / "images", folder / "annotations"
    done = folder / "complete"
    if done.exists() and int(done.read_text()) == n:
        return
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    for index in range(n):
        rng = np.random.default_rng(index)
        coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((WIDTH, HEIGHT), Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.int16) + rng.normal(0, 22, (HEIGHT, WIDTH, 3)).astype(np.int16)
        buffer = io.BytesIO()
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
        name = f"img{index:07d}.jpg"
        (images / name).write_bytes(buffer.getvalue())
        objects = ""
        for box in range(1 + index % 4):
            x, y = rng.integers(0, WIDTH - 100), rng.integers(0, HEIGHT - 100)
            w, h = rng.integers(20, 100), rng.integers(20, 100)
            objects += (f"<object><name>class{(index + box) % 5}</name><bndbox><xmin>{x}</xmin><ymin>{y}</ymin>"
                        f"<xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>")
        (annotations / f"img{index:07d}.xml").write_text(
            f"<annotation><filename>{name}</filename><size><width>{WIDTH}</width><height>{HEIGHT}</height>"
            f"</size>{objects}</annotation>")
    done.write_text(str(n))


def warm_cache(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        if path.is_file():
            total += len(path.read_bytes())
    return total


def timed(command) -> dict:
    """Wall seconds and peak RSS (MB) of one process, from the kernel's own accounting."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    stdout, stderr = process.stdout.read().decode(), process.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[:4]} failed:\n{stdout}\n{stderr[-3000:]}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    parser.add_argument("--workdir", default="/tmp/od-tfrecords-bench", help="where the dataset is generated and cached")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"), help="folder for the JSON results")
    args = parser.parse_args()

    data = Path(args.workdir) / f"voc-{args.n}"
    print(f"generating {args.n} images in {data} (cached) ...", flush=True)
    generate(data, args.n)
    image_bytes = warm_cache(data / "images")
    output = Path(args.workdir) / "out"

    runs = {
        "project (DirectRunner)": [
            sys.executable, "-m", "pipeline", "convert", "--format", "voc",
            "--annotations", str(data / "annotations"), "--images", str(data / "images"),
            "--output", str(output / "project"),
        ],
        "plain loop (TensorFlow)": [
            sys.executable, str(REPO / "benchmarks" / "plain_loop.py"),
            "--annotations", str(data / "annotations"), "--images", str(data / "images"),
            "--output", str(output / "plain" / "all.tfrecord"),
        ],
    }
    results = {}
    for name, command in runs.items():
        print(f"running {name} ...", flush=True)
        result = timed(command)
        result["images_per_s"] = round(args.n / result["seconds"], 1)
        result["mb_per_s"] = round(image_bytes / 1e6 / result["seconds"], 1)
        results[name] = result

    baseline = results["plain loop (TensorFlow)"]["seconds"]
    print(f"\nN={args.n} images, {image_bytes / 1e6:.0f} MB of JPEG, {os.cpu_count()} cores, page cache warm")
    print(f"{'converter':<26}{'seconds':>9}{'images/s':>10}{'MB/s':>8}{'peak RSS MB':>13}{'x plain loop':>14}")
    for name, result in results.items():
        print(f"{name:<26}{result['seconds']:>9.2f}{result['images_per_s']:>10.1f}{result['mb_per_s']:>8.1f}"
              f"{result['peak_rss_mb']:>13.0f}{result['seconds'] / baseline:>14.2f}")

    Path(args.results).mkdir(parents=True, exist_ok=True)
    report = {"n": args.n, "image_mb": round(image_bytes / 1e6, 1), "cpus": os.cpu_count(),
              "python": platform.python_version(), "results": results}
    path = Path(args.results) / f"benchmark-{args.n}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
