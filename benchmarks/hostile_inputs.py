"""Peak memory of whole conversions of hostile datasets: does each stay bounded (the target: under 1 GB)?

    python benchmarks/hostile_inputs.py [--cases rejections,long_line,gif_screen,png_bomb] [--workdir DIR]
        [--project-dir DIR] [--keep]

Each case generates a small dataset built to make a converter hold too much, then runs the project's CLI
(`python -m pipeline convert`, defaults, in --project-dir) in a subprocess with an output folder and a
TMPDIR of its own, and samples the peak RSS of its process tree every 50 ms (benchmarks/_rss.py):

- rejections: a YOLO dataset of 1,000 tiny JPEGs, each with a label file of 1,000 malformed lines
  (`x y z w v`) after one good box: 1,000,000 box rejections. The lines of rejected.jsonl and summary.json's rejection
  count are checked against 1,000,000 (when the run publishes nothing, the rejections are looked for
  where its console output says).
- long_line: one JPEG whose YOLO label file is a single 200 MB line (`0 0.5 0.5 0.5 ...`, no newline).
- gif_screen: a 35-byte GIF whose logical screen is 13000x13000 (one 1x1 frame), named by a VOC file.
- png_bomb: a PNG declaring 20000x20000 pixels (1-bit grayscale: a zlib stream of zeros, ~50 KB), named
  by a VOC file.

Prints one row per case: exit code, wall seconds, the largest process's and the tree's peak RSS (MiB;
tree sums count shared pages once per process), and what the summary says (images written/rejected,
boxes rejected, the main rejection reason). The data goes to --workdir (default: a temporary folder,
removed at the end unless --keep); each run's console output is in <workdir>/<case>/run.log.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import zlib
from pathlib import Path

from _rss import SAMPLE_SECONDS, run_measured

REPO = Path(__file__).resolve().parents[1]
TARGET_MIB = 1024

REJECTION_IMAGES, REJECTION_LINES = 1000, 1000
LONG_LINE_BYTES = 200 * 10**6
GIF_SIDE = 13000
PNG_SIDE = 20000


def _jpeg(number: int, size=(32, 24)) -> bytes:
    """A tiny JPEG, its number in a comment segment right after the start-of-image marker: no two are
    byte-identical, so none is reported as a duplicate."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 140, 200)).save(buffer, format="JPEG", quality=85)
    base, comment = buffer.getvalue(), f"image {number}".encode()
    return base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]


def _voc(image_name: str, width: int, height: int) -> str:
    return (f"<annotation><filename>{image_name}</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size><object><name>thing</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
            f"<xmax>{width // 2}</xmax><ymax>{height // 2}</ymax></bndbox></object></annotation>")


def make_rejections(folder: Path) -> list:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    (folder / "classes.txt").write_text("cat\ndog\n")
    # one good box keeps each image (an image whose every box is rejected is rejected whole, as one line)
    bad = b"0 0.5 0.5 0.2 0.2\n" + b"x y z w v\n" * REJECTION_LINES
    for index in range(REJECTION_IMAGES):
        (folder / "images" / f"img{index:05d}.jpg").write_bytes(_jpeg(index))
        (folder / "labels" / f"img{index:05d}.txt").write_bytes(bad)
    return ["--format", "yolo", "--annotations", str(folder / "labels"), "--images", str(folder / "images"),
            "--classes", str(folder / "classes.txt")]


def make_long_line(folder: Path) -> list:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    (folder / "classes.txt").write_text("cat\n")
    (folder / "images" / "big.jpg").write_bytes(_jpeg(7, (64, 48)))
    chunk = b"0.5 " * (1 << 18)  # 1 MiB
    with open(folder / "labels" / "big.txt", "wb") as handle:
        handle.write(b"0 ")
        left = LONG_LINE_BYTES - 2
        while left > 0:
            handle.write(chunk[:left])
            left -= len(chunk)
    return ["--format", "yolo", "--annotations", str(folder / "labels"), "--images", str(folder / "images"),
            "--classes", str(folder / "classes.txt")]


def gif_with_screen(side: int) -> bytes:
    """35 bytes: a side x side logical screen with a 2-colour table, one 1x1 frame, the trailer."""
    header = b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0)  # global colour table of 2 entries
    palette = b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
    pixels = b"\x02" + b"\x02\x44\x01" + b"\x00"  # LZW minimum code size 2: clear, index 0, end
    data = header + palette + frame + pixels + b"\x3b"
    assert len(data) == 35
    return data


def make_gif_screen(folder: Path) -> list:
    (folder / "images").mkdir(parents=True)
    (folder / "annotations").mkdir()
    (folder / "images" / "img.gif").write_bytes(gif_with_screen(GIF_SIDE))
    (folder / "annotations" / "img.xml").write_text(_voc("img.gif", GIF_SIDE, GIF_SIDE))
    return ["--format", "voc", "--annotations", str(folder / "annotations"), "--images", str(folder / "images")]


def png_bomb(side: int) -> bytes:
    """A valid 1-bit grayscale PNG of side x side zero pixels: each row a filter byte and side/8 zeros."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = bytes(1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    stream = b"".join(compressor.compress(row * 1000) for _ in range(side // 1000))
    stream += compressor.compress(row * (side % 1000)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", stream) + chunk(b"IEND", b""))


def make_png_bomb(folder: Path) -> list:
    (folder / "images").mkdir(parents=True)
    (folder / "annotations").mkdir()
    (folder / "images" / "img.png").write_bytes(png_bomb(PNG_SIDE))
    (folder / "annotations" / "img.xml").write_text(_voc("img.png", PNG_SIDE, PNG_SIDE))
    return ["--format", "voc", "--annotations", str(folder / "annotations"), "--images", str(folder / "images")]


CASES = {
    "rejections": make_rejections,
    "long_line": make_long_line,
    "gif_screen": make_gif_screen,
    "png_bomb": make_png_bomb,
}


def _count_lines(path: Path) -> int:
    lines = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            lines += block.count(b"\n")
    return lines


def find_results(output: Path, log: Path) -> tuple:
    """(summary.json, rejected.jsonl) paths: in the output folder, else where the console output names them,
    else anywhere under the output folder (a staging folder of a run that did not publish)."""
    found = {"summary.json": None, "rejected.jsonl": None}
    for name in found:
        if (output / name).is_file():
            found[name] = output / name
    if None in found.values():
        text = log.read_text(errors="replace") if log.exists() else ""
        for match in re.findall(r"(/[^\s'\"(),;:]+)", text):
            path = Path(match.rstrip("."))
            for name in found:
                if found[name] is None:
                    if path.name == name and path.is_file():
                        found[name] = path
                    elif path.is_dir() and (path / name).is_file():
                        found[name] = path / name
    for name in found:
        if found[name] is None and output.is_dir():
            found[name] = next(iter(sorted(output.rglob(name))), None)
    return found["summary.json"], found["rejected.jsonl"]


def describe(summary_path, rejected_path) -> dict:
    facts = {"rejected_lines": _count_lines(rejected_path) if rejected_path else None}
    if summary_path is None:
        return facts
    summary = json.loads(summary_path.read_text())
    rejections = summary.get("rejections", {})
    facts.update(
        written=summary.get("images_written"), images_rejected=summary.get("images_rejected"),
        boxes_rejected=summary.get("boxes", {}).get("rejected"), rejections=sum(rejections.values()),
        main_reason=max(rejections, key=rejections.get) if rejections else None,
    )
    return facts


def _last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:100] if lines else ""


def run_case(name: str, root: Path, project: Path) -> dict:
    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)
    data, output, tmp = folder / "data", folder / "output", folder / "tmp"
    tmp.mkdir(parents=True)
    print(f"{name}: generating in {data} ...", flush=True)
    arguments = CASES[name](data)
    command = [sys.executable, "-m", "pipeline", "convert", *arguments, "--output", str(output)]
    environment = dict(os.environ, TMPDIR=str(tmp))
    log = folder / "run.log"
    print(f"{name}: running the CLI ...", flush=True)
    measured = run_measured(command, log, cwd=project, env=environment)
    summary_path, rejected_path = find_results(output, log)
    measured.update(describe(summary_path, rejected_path))
    measured["summary_path"], measured["rejected_path"] = (str(summary_path) if summary_path else None,
                                                          str(rejected_path) if rejected_path else None)
    if summary_path is None:
        measured["error"] = _last_error(log)
    if name == "rejections":
        expected = REJECTION_IMAGES * REJECTION_LINES
        measured["check"] = (f"rejected.jsonl {measured['rejected_lines']:,} lines, summary {measured.get('rejections')} "
                             f"rejections: {'agree with' if measured['rejected_lines'] == measured.get('rejections') == expected else 'NOT'} {expected:,}"
                             if measured["rejected_lines"] is not None else "no rejected.jsonl found")
    print(f"{name}: exit {measured['exit_code']}, {measured['seconds']:.1f} s, largest process "
          f"{measured['rss_max_process_mib']:.0f} MiB ({measured['rss_max_process_command']}), up to "
          f"{measured['max_processes_in_tree']} processes, log {log}", flush=True)
    return measured


def _says(measured: dict) -> str:
    if measured.get("written") is None:
        return f"no summary: {measured.get('error', '')}"
    says = (f"{measured['written']} written, {measured['images_rejected']} images and "
            f"{measured['boxes_rejected']:,} boxes rejected")
    if measured.get("main_reason"):
        says += f", mostly {measured['main_reason']}"
    return says


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--workdir", help="where the datasets and outputs go (default: a temporary folder, removed after)")
    parser.add_argument("--project-dir", default=str(REPO), help="checkout whose `python -m pipeline` is measured")
    parser.add_argument("--keep", action="store_true", help="keep the default temporary folder")
    args = parser.parse_args()
    cases = [case.strip() for case in args.cases.split(",") if case.strip()]
    unknown = [case for case in cases if case not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    temporary = args.workdir is None
    root = Path(args.workdir or tempfile.mkdtemp(prefix="od-tfrecords-hostile-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for case in cases:
            rows.append((case, run_case(case, root, Path(args.project_dir))))
    finally:
        if temporary and not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print(f"\nproject in {args.project_dir}; peak RSS sampled every {SAMPLE_SECONDS * 1000:.0f} ms; target: under "
          f"{TARGET_MIB} MiB")
    print(f"{'case':<11} {'exit':>4} {'seconds':>8} {'largest MiB':>12} {'tree MiB':>9} {'< 1 GiB':>7}  summary")
    for case, measured in rows:
        within = "yes" if measured["rss_max_tree_sum_mib"] < TARGET_MIB else "NO"  # the tree, the stricter figure
        print(f"{case:<11} {measured['exit_code']:>4} {measured['seconds']:>8.1f} {measured['rss_max_process_mib']:>12.0f} "
              f"{measured['rss_max_tree_sum_mib']:>9.0f} {within:>7}  {_says(measured)}")
    for case, measured in rows:
        if "check" in measured:
            print(f"{case}: {measured['check']}")


if __name__ == "__main__":
    main()
