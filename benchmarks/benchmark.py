"""Conversion speed and memory: the project's DirectRunner run beside the floor, a plain loop and Datumaro 1.13.

    python benchmarks/benchmark.py --n 2000 [--repeat 3] [--skip-datumaro] [--workdir /tmp/od-tfrecords-bench]
        [--project-args "--direct_running_mode multi_processing --direct_num_workers 2"] [--project-dir DIR]

One command converts one generated dataset with four converters, each in its own process tree:

- project: `python -m pipeline convert --format voc ...` (Beam DirectRunner), run in --project-dir (default:
  this repository) with --project-args appended,
- floor: benchmarks/floor.py, the least a converter that passes image bytes through does: read each
  image file, sha256 it, write it as a CRC32C-framed TFRecord record, one forked process per core,
  each with its own file; nothing else. Every converter's wall time is also given as a multiple of it.
- plain loop: benchmarks/plain_loop.py, one process, one loop, TensorFlow's TFRecordWriter,
- Datumaro 1.13: COCO -> tf_detection_api with the images in the records (benchmarks/datumaro_run.py),
  run by the Python of a virtualenv this script creates once under --workdir and reuses afterwards.

The dataset is N distinct photo-like 640x480 JPEGs (~170 KB each) with 1 to 4 boxes, written as Pascal
VOC xml per image plus one COCO instances JSON holding the same images and boxes. It is generated once
(in parallel over all cores) and cached under --workdir/voc-N.

The project's modules are compiled to bytecode first, as an installed package's are. Before each
converter's timed run, the converter runs once untimed on a small dataset (WARM_UP_IMAGES
images), so that its interpreter, libraries and code are in the page cache as its input is; then every
input file is read once (page cache warm), the output folder is removed and pending writes are flushed
(os.sync), so no earlier write is flushed to disk during the run.
With --repeat K each converter runs K times, interleaved (one run of each converter per round, the
order reversed every other round, so drifting load hits them alike) and the medians are reported;
"x floor" is the median of the K paired ratios (each run over the floor's run of the same round).
Each run is measured as: wall seconds; the seconds until its first TFRecord bytes reached a file under its
output folder (the project's fixed cost: start-up, and every annotation file parsed, since the label map
needs them all; polled every 0.01 s); CPU seconds (user + system of the process tree, from wait4:
every process the tree waited for); the machine's other CPU use meanwhile (all cores' busy time from
/proc/stat minus the tree's: above ~0.1 s per second of wall another job shared the machine); images/s; MB/s of input JPEG bytes; peak RSS of every process in
its tree, sampled with psutil every 0.1 s (the largest single process, and the largest sum over the
tree; RSS sums count shared pages once per process); and the kernel's ru_maxrss from wait4 (the top
process and the descendants it waited for). After each run the TFRecords it wrote are counted from
their framing (no TensorFlow) and the benchmark fails unless there are exactly N.
Before the runs and after them, the cost of writing into the page cache is probed (fresh pages, then the
pages just freed; see page_cache_write_cost): it moves the floor's time, as much as anything, from one
spell of a virtual machine to the next.
MB are 10^6 bytes, RSS is in MiB.

Prints a table (times relative to the floor, the plain loop and Datumaro: >1 is slower) and each
converter's fixed and marginal cost (wall and CPU ms per image between two N, and the time left at N=0 by
that line): with --also-n M, M images run in the same rounds and every round gives its own line (each
converter's slope over the floor's of the same round; medians over the rounds), otherwise from the
medians of this run and of the largest smaller N in --results, which may come from another spell of the
machine. Writes
--results/benchmark-N.json (with machine facts, versions and every run) and --results/benchmark-N.png
(wall and CPU seconds and peak RSS per converter; images/s against N when results for several N are in
--results).
"""
from __future__ import annotations

import argparse
import compileall
import io
import json
import multiprocessing
import os
import platform
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from importlib import metadata
from pathlib import Path

import psutil

import _rss  # benchmarks/: the process-tree RSS sampler

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 640, 480
DATUMARO_REQUIREMENT = "datumaro==1.13.*"
SAMPLE_SECONDS = 0.1
WARM_UP_IMAGES = 100
SCHEMA = 3  # results JSON layout (3: the floor, CPU seconds, runs); the N panel also reads layout 2
MARGINAL_SCHEMA = 3  # the fixed and marginal costs need CPU seconds and the floor

PROJECT, PLAIN, DATUMARO = "project (DirectRunner)", "plain loop (TensorFlow)", "Datumaro 1.13 (COCO)"
FLOOR = "floor (read+sha256+CRC)"


# --- dataset ------------------------------------------------------------------------------------------

def _write_one_image(job: tuple[Path, int]) -> None:
    """Image `index` and its VOC file: a smooth colour field plus sensor-like noise, deterministic per index."""
    import numpy as np
    from PIL import Image

    folder, index = job
    xml_path = folder / "annotations" / f"img{index:07d}.xml"
    if xml_path.exists():  # written last, so the image is complete too (resuming an interrupted run)
        return
    rng = np.random.default_rng(index)
    coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((WIDTH, HEIGHT), Image.BICUBIC)
    # Uniform noise of the spread of Gaussian sensor noise (sd about 22): the same JPEG size, five times faster to draw.
    pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-38, 39, (HEIGHT, WIDTH, 3), dtype=np.int16)
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    name = f"img{index:07d}.jpg"
    (folder / "images" / name).write_bytes(buffer.getvalue())
    objects = ""
    for box in range(1 + index % 4):
        x, y = rng.integers(0, WIDTH - 100), rng.integers(0, HEIGHT - 100)
        w, h = rng.integers(20, 100), rng.integers(20, 100)
        objects += (f"<object><name>class{(index + box) % 5}</name><bndbox><xmin>{x}</xmin><ymin>{y}</ymin>"
                    f"<xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>")
    xml_path.write_text(
        f"<annotation><filename>{name}</filename><size><width>{WIDTH}</width><height>{HEIGHT}</height>"
        f"</size>{objects}</annotation>")


def generate_voc(folder: Path, n: int) -> None:
    """N distinct photo-like JPEGs and their VOC files, over all cores; skipped when already complete."""
    done = folder / "complete"
    if done.exists() and int(done.read_text()) == n:
        return
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with multiprocessing.Pool(os.cpu_count()) as pool:
        for count, _ in enumerate(pool.imap_unordered(_write_one_image, ((folder, i) for i in range(n)), 64), 1):
            if count % 5000 == 0:
                print(f"  {count}/{n} images, {time.perf_counter() - started:.0f} s", flush=True)
    done.write_text(str(n))
    print(f"  generated in {time.perf_counter() - started:.0f} s on {os.cpu_count()} processes", flush=True)


def write_coco(folder: Path) -> Path:
    """COCO instances JSON of the same images and boxes, read back from the VOC files; cached.

    Layout for Datumaro's coco_instances importer: folder/coco/annotations/instances_default.json and
    folder/coco/images, a link to folder/images. VOC corners (xmin, ymin, xmax, ymax) become COCO
    [x, y, width, height] = [xmin, ymin, xmax - xmin, ymax - ymin].
    """
    root = folder / "coco"
    path = root / "annotations" / "instances_default.json"
    if path.exists():
        return root
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (root / "images").exists():
        (root / "images").symlink_to(Path("..") / "images")
    images, boxes = [], []
    for image_id, xml_path in enumerate(sorted((folder / "annotations").glob("*.xml")), 1):
        xml = ElementTree.parse(xml_path).getroot()
        images.append({"id": image_id, "file_name": xml.findtext("filename"),
                       "width": int(xml.findtext("size/width")), "height": int(xml.findtext("size/height"))})
        for obj in xml.iter("object"):
            x0, y0, x1, y1 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append({"image_id": image_id, "name": obj.findtext("name"), "bbox": [x0, y0, x1 - x0, y1 - y0],
                          "area": (x1 - x0) * (y1 - y0), "iscrowd": 0, "segmentation": []})
    names = sorted({box["name"] for box in boxes})
    category = {name: i for i, name in enumerate(names, 1)}
    annotations = [{"id": i, "category_id": category[box.pop("name")], **box} for i, box in enumerate(boxes, 1)]
    document = {"images": images, "annotations": annotations,
                "categories": [{"id": i, "name": name, "supercategory": ""} for name, i in category.items()]}
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(document))
    partial.rename(path)
    return root


def warm_up(command: list[str], log: Path, cwd: Path) -> None:
    """Runs a converter once, untimed, on a small dataset: its interpreter, libraries and code are then in
    the page cache as its input is (a first run after the cache dropped them measured 1.4x slower here,
    for the project and the plain loop alike)."""
    with open(log, "w") as handle:
        subprocess.run(command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, check=True)


def warm_page_cache(folder: Path) -> int:
    """Reads every file under folder once (coco/images is a link to images/, so each image is read once)."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 22):
                    total += len(chunk)
    return total


QUIET_CORES, QUIET_WINDOW = 0.15, 1.0


def wait_for_quiet(limit: float) -> float:
    """Waits until the machine's cores were busy less than QUIET_CORES on average over QUIET_WINDOW seconds
    (another job, e.g. a test run, would share them with the run), or `limit` seconds; returns the wait."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        before = _rss._machine_busy_seconds()
        time.sleep(QUIET_WINDOW)
        if (_rss._machine_busy_seconds() - before) / QUIET_WINDOW < QUIET_CORES:
            break
    waited = round(time.perf_counter() - started - QUIET_WINDOW, 1) if limit > 0 else 0.0
    if waited >= 1:
        print(f"  waited {waited:.0f} s for the machine to be idle", flush=True)
    return max(0.0, waited)


# --- Datumaro's virtualenv -----------------------------------------------------------------------------

def ensure_datumaro_venv(workdir: Path) -> dict:
    """Python of a virtualenv with Datumaro 1.13 and tensorflow-cpu (its exporter imports TensorFlow).

    Created once under workdir and reused: the marker file is written only after a complete install.
    """
    venv = workdir / "datumaro-1.13-venv"
    python = venv / "bin" / "python"
    marker = venv / "benchmark-installed"
    install_seconds = None
    if not marker.exists():
        print(f"installing {DATUMARO_REQUIREMENT} and tensorflow-cpu into {venv} (once) ...", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        started = time.perf_counter()
        log = workdir / "datumaro-venv-install.log"
        with open(log, "w") as output:
            for command in ([sys.executable, "-m", "venv", str(venv)],
                            [str(python), "-m", "pip", "install", "--upgrade", "pip"],
                            [str(python), "-m", "pip", "install", DATUMARO_REQUIREMENT, "tensorflow-cpu"]):
                if subprocess.run(command, stdout=output, stderr=subprocess.STDOUT).returncode != 0:
                    raise SystemExit(f"{' '.join(command)} failed, see {log}")
        install_seconds = round(time.perf_counter() - started, 1)
        marker.write_text(f"{install_seconds}\n")
        print(f"  installed in {install_seconds} s", flush=True)
    probe = ("from importlib.metadata import version; "
             "print(version('datumaro'), version('tensorflow-cpu'), version('numpy'))")
    versions = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    return {"python": str(python), "datumaro": versions[0], "tensorflow": versions[1], "numpy": versions[2],
            "install_seconds_this_run": install_seconds,
            "install_seconds_first_run": float(marker.read_text())}


# --- measuring one converter ---------------------------------------------------------------------------

def run_measured(command: list[str], log: Path, cwd: Path = REPO, output_folder: Path | None = None) -> dict:
    """Runs command in cwd to completion; wall seconds and peak RSS (MiB) of its process tree; with
    output_folder, the seconds until its first TFRecord bytes reached a file there."""
    measured = _rss.run_measured(command, log, cwd=cwd, interval=SAMPLE_SECONDS, output_folder=output_folder)
    if measured.pop("exit_code") != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{log.read_text()[-3000:]}")
    return measured


def count_tfrecords(folder: Path) -> tuple[int, int]:
    """Records and files of every *.tfrecord* file under folder (hidden folders such as .staging skipped).

    TFRecord framing: 8-byte little-endian length, 4-byte CRC of the length, the data, 4-byte CRC. A file
    whose last record does not end exactly at its end fails the benchmark.
    """
    records = files = 0
    for path in sorted(folder.rglob("*.tfrecord*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        files += 1
        position, size = 0, path.stat().st_size
        with open(path, "rb") as handle:
            while position + 12 <= size:
                handle.seek(position)
                position += 12 + struct.unpack("<Q", handle.read(8))[0] + 4
                records += 1
        if position != size:
            raise SystemExit(f"{path}: the last record ends at byte {position}, the file has {size}")
    return records, files


# --- the three converters ------------------------------------------------------------------------------

def converter_commands(data: Path, coco: Path, output: Path, datumaro_python: str | None,
                       project_args: list[str]) -> dict[str, list[str]]:
    voc = ["--annotations", str(data / "annotations"), "--images", str(data / "images")]
    commands = {
        FLOOR: [sys.executable, str(REPO / "benchmarks" / "floor.py"), "--images", str(data / "images"),
                "--output", str(output / "floor")],
        PROJECT: [sys.executable, "-m", "pipeline", "convert", "--format", "voc", *voc,
                  "--output", str(output / "project"), *project_args],
        PLAIN: [sys.executable, str(REPO / "benchmarks" / "plain_loop.py"), *voc,
                "--output", str(output / "plain" / "all.tfrecord")],
    }
    if datumaro_python:
        commands[DATUMARO] = [datumaro_python, str(REPO / "benchmarks" / "datumaro_run.py"),
                              "--coco", str(coco), "--output", str(output / "datumaro")]
    return commands


def output_folder(output: Path, name: str) -> Path:
    return output / {FLOOR: "floor", PROJECT: "project", PLAIN: "plain", DATUMARO: "datumaro"}[name]


def timed_run(name: str, command: list[str], destination: Path, data: Path, n: int, label: str, log: Path,
              cwd: Path, args: argparse.Namespace) -> dict:
    """One timed run of one converter on one dataset, its output's records counted (exactly n, or the benchmark
    fails)."""
    # Read first, then remove: the pages the last run's output frees are then left for this run's
    # writes, whichever converter ran last. The project releases the images' pages as it goes, so a
    # read after the removal re-read them into those freed pages: the floor took 3.2-3.8 s after the
    # project and 1.9-2.6 s after itself (10,000 images), a bias in the project's favour.
    input_bytes = warm_page_cache(data)
    shutil.rmtree(destination, ignore_errors=True)
    os.sync()  # earlier writes (another converter's output, the dataset) are not flushed during this run
    waited = wait_for_quiet(args.quiet_wait)
    load_before = [round(x, 2) for x in os.getloadavg()]
    print(f"{label}: {name} ({input_bytes / 1e6:.0f} MB of input read to warm the cache, "
          f"load average {load_before[0]}) ...", flush=True)
    destination.mkdir(parents=True)  # watched from the start for the first record written
    result = run_measured(command, log, cwd, output_folder=destination)
    result["load_average_before"] = load_before  # the machine may be shared: other CPU use slows runs
    result["waited_for_quiet_s"] = waited
    result["other_cpu_s"] = round(max(0.0, result["machine_busy_s"] - result["cpu_s"]), 2)
    records, files = count_tfrecords(destination)
    if records != n:
        raise SystemExit(f"{name} wrote {records} records in {files} files under {destination}, "
                         f"expected {n}; log: {result['log']}")
    result.update(records=records, tfrecord_files=files,
                  output_mb=round(sum(p.stat().st_size for p in destination.rglob("*") if p.is_file()) / 1e6, 1))
    print(f"  {result['seconds']} s wall, {result['cpu_s']} s CPU, {result['other_cpu_s']} s other CPU, "
          f"{records} records in {files} file(s) verified", flush=True)
    if not args.keep_outputs:
        shutil.rmtree(destination, ignore_errors=True)
    return result


# --- facts, table, chart -------------------------------------------------------------------------------

def machine_facts(datumaro: dict | None, project_dir: Path) -> dict:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    git = lambda *a: subprocess.run(["git", *a], cwd=project_dir, capture_output=True, text=True).stdout.strip()
    return {
        "cpus": os.cpu_count(), "cpus_physical": psutil.cpu_count(logical=False), "cpu_model": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "platform": platform.platform(),
        "python": platform.python_version(),
        "apache_beam": version("apache-beam"),
        "tensorflow": version("tensorflow") or version("tensorflow-cpu"),
        "protobuf": version("protobuf"), "numpy": version("numpy"), "pillow": version("pillow"),
        "datumaro_venv": datumaro,
        "project_dir": str(project_dir),
        "git_commit": git("rev-parse", "HEAD") or None,  # of project_dir; None if it is no git checkout
        "git_dirty_files": len(git("status", "--porcelain", "--untracked-files=no").splitlines()),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


PAGE_PROBE_MIB = 512


def page_cache_write_cost(folder: Path) -> list[float]:
    """Seconds to write PAGE_PROBE_MIB into a new file's page cache, twice: the second time into the pages
    the first file's removal just freed.

    Every converter here writes as many bytes as it reads, and where those bytes land decides much of its
    system time. On a virtual machine whose host takes back the guest's idle memory, a page touched for
    the first time in a while costs a fault on the host too: writing 1.7 GB took 6.0 s of system time on
    fresh pages and 0.45-0.9 s on reused ones, on this machine. The floor and the project both pay it,
    in proportions that vary from run to run; a first figure far above the second says the machine was
    in that state, and the x floor ratios of that run should be read with it.
    """
    block, seconds = b"\0" * 2**20, []
    for _ in range(2):
        path = folder / "page-probe.bin"
        started = time.perf_counter()
        try:  # a full disk ends the benchmark, but never leaves the probe's file behind
            with open(path, "wb") as handle:
                for _ in range(PAGE_PROBE_MIB):
                    handle.write(block)
            seconds.append(round(time.perf_counter() - started, 2))
        finally:
            path.unlink(missing_ok=True)
    return seconds


def print_table(n: int, image_bytes: int, results: dict, repeat: int) -> None:
    plain = results[PLAIN]["seconds"] if PLAIN in results else None
    datumaro = results[DATUMARO]["seconds"] if DATUMARO in results else None
    print(f"\nN={n} images, {image_bytes / 1e6:.0f} MB of JPEG, {os.cpu_count()} cores, page cache warm, "
          f"median of {repeat} paired run(s)")
    print(f"{'converter':<25}{'wall s':>8}{'x floor':>9}{'1st record s':>13}{'CPU s':>8}{'CPU/wall':>9}{'images/s':>10}{'MB/s':>8}"
          f"{'RSS max 1 proc':>17}{'RSS max tree':>15}{'procs':>7}{'x plain':>9}{'x Datumaro':>12}{'other CPU s':>13}")
    for name, r in results.items():
        versus_datumaro = f"{r['seconds'] / datumaro:>12.2f}" if datumaro else f"{'-':>12}"
        versus_plain = f"{r['seconds'] / plain:>9.2f}" if plain else f"{'-':>9}"
        first = f"{r['first_record_s']:>13.2f}" if r.get("first_record_s") is not None else f"{'-':>13}"
        print(f"{name:<25}{r['seconds']:>8.2f}{r['time_x_floor']:>9.2f}{first}{r['cpu_s']:>8.2f}{r['cpu_s'] / r['seconds']:>9.2f}"
              f"{r['images_per_s']:>10.1f}{r['mb_per_s']:>8.1f}"
              f"{r['rss_max_process_mib']:>13.0f} MiB{r['rss_max_tree_sum_mib']:>11.0f} MiB{r['max_processes_in_tree']:>7}"
              f"{versus_plain}{versus_datumaro}{r['other_cpu_s']:>13.2f}")
        if repeat > 1:
            runs = r["runs"]
            listed = lambda key: " ".join(f"{run[key]:.2f}" if run.get(key) is not None else "-" for run in runs)
            print(f"{'':<25}runs: wall {listed('seconds')}; x floor {listed('x_floor')}; 1st record {listed('first_record_s')}; "
                  f"CPU {listed('cpu_s')}; other CPU {listed('other_cpu_s')}")
    print("x floor, x plain, x Datumaro: wall time relative to that converter (above 1 is slower; x floor is the median "
          "of paired ratios). 1st record s: from the start until the first TFRecord bytes reached a file. CPU s: "
          "user+system of the process tree. CPU/wall: cores busy on average. RSS sampled "
          f"every {SAMPLE_SECONDS} s; 'tree' sums all processes of the converter. other CPU s: the machine's busy CPU "
          "seconds during the run that were not the converter's (noise).")


def print_marginal(report: dict, results_folder: Path) -> dict:
    """Fixed and marginal cost of each converter, from this run and the largest smaller N in results_folder."""
    n, smaller = report["n"], None
    for other in results_folder.glob("benchmark-*.json"):
        try:
            loaded = json.loads(other.read_text())
        except (OSError, ValueError):
            continue
        if loaded.get("schema", 0) >= MARGINAL_SCHEMA and loaded["n"] < n and (smaller is None or loaded["n"] > smaller["n"]):
            smaller = loaded
    if smaller is None:
        return {}
    m = smaller["n"]
    lines = {name: _line(r, smaller["results"][name], n, m) for name, r in report["results"].items()
             if name in smaller["results"]}
    costs = {}
    for name, line in lines.items():
        floor = lines.get(FLOOR)
        costs[name] = {"from_n": m, "wall_ms_per_image": round(line["wall"] * 1e3, 3),
                       "cpu_ms_per_image": round(line["cpu"] * 1e3, 3),
                       "x_floor_wall": round(line["wall"] / floor["wall"], 2) if floor else float("nan"),
                       "x_floor_cpu": round(line["cpu"] / floor["cpu"], 2) if floor else float("nan"),
                       "fixed_wall_s": round(line["fixed_wall"], 2), "fixed_cpu_s": round(line["fixed_cpu"], 2)}
    _print_costs(f"from N={m:,} (results of {smaller.get('finished_at', '?')}) -> N={n:,}", costs,
                 "the slope between the two N (medians)")
    return costs


def print_paired_marginal(runs: dict, small_runs: dict, n: int, m: int) -> dict:
    """Fixed and marginal cost of each converter from the two N run in the same rounds: a line per round,
    each converter's slope over the floor's of the same round, and their medians over the rounds."""
    lines = {name: [_line(big, small, n, m) for big, small in zip(runs[name], small_runs[name])] for name in runs}
    median = lambda values: statistics.median(list(values))
    costs = {}
    for name, rounds in lines.items():
        x_cpu = [round(r["cpu"] / f["cpu"], 2) for r, f in zip(rounds, lines[FLOOR])]
        costs[name] = {"from_n": m, "paired_rounds": len(rounds),
                       "wall_ms_per_image": round(median(r["wall"] for r in rounds) * 1e3, 3),
                       "cpu_ms_per_image": round(median(r["cpu"] for r in rounds) * 1e3, 3),
                       "x_floor_wall": round(median(r["wall"] / f["wall"] for r, f in zip(rounds, lines[FLOOR])), 2),
                       "x_floor_cpu": round(median(x_cpu), 2),
                       "fixed_wall_s": round(median(r["fixed_wall"] for r in rounds), 2),
                       "fixed_cpu_s": round(median(r["fixed_cpu"] for r in rounds), 2),
                       "x_floor_cpu_rounds": x_cpu,
                       "fixed_wall_s_rounds": [round(r["fixed_wall"], 2) for r in rounds]}
    _print_costs(f"from N={m:,} -> N={n:,}, paired in each round (medians over the rounds)", costs,
                 "the slope between the two N in each round")
    return costs


def _line(big: dict, small: dict, n: int, m: int) -> dict:
    """The line through a converter's results at N and M images: seconds per image, and where it meets N=0."""
    wall = (big["seconds"] - small["seconds"]) / (n - m)
    cpu = (big["cpu_s"] - small["cpu_s"]) / (n - m)
    return {"wall": wall, "cpu": cpu, "fixed_wall": big["seconds"] - wall * n, "fixed_cpu": big["cpu_s"] - cpu * n}


def _print_costs(title: str, costs: dict, slope: str) -> None:
    print(f"\nfixed and marginal cost {title}:")
    print(f"{'converter':<25}{'wall ms/image':>14}{'CPU ms/image':>14}{'x floor wall':>14}{'x floor CPU':>13}"
          f"{'fixed wall s':>14}{'fixed CPU s':>13}")
    for name, c in costs.items():
        print(f"{name:<25}{c['wall_ms_per_image']:>14.3f}{c['cpu_ms_per_image']:>14.3f}{c['x_floor_wall']:>14.2f}"
              f"{c['x_floor_cpu']:>13.2f}{c['fixed_wall_s']:>14.2f}{c['fixed_cpu_s']:>13.2f}")
        if "x_floor_cpu_rounds" in c:
            print(f"{'':<25}rounds: x floor CPU {' '.join(map(str, c['x_floor_cpu_rounds']))}; "
                  f"fixed wall {' '.join(map(str, c['fixed_wall_s_rounds']))}")
    print(f"ms/image: {slope}; fixed: where that line meets N=0.")


def write_chart(path: Path, report: dict, results_folder: Path) -> None:
    """Wall and CPU seconds and peak RSS per converter for this N; images/s against N if several N were run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_n = {}
    for other in results_folder.glob("benchmark-*.json"):
        try:
            loaded = json.loads(other.read_text())
        except (OSError, ValueError):
            continue
        if loaded.get("schema") in (2, SCHEMA):
            by_n[loaded["n"]] = loaded
    by_n[report["n"]] = report
    several = len(by_n) > 1

    names = list(report["results"])
    colours = {FLOOR: "tab:gray", PROJECT: "tab:blue", PLAIN: "tab:orange", DATUMARO: "tab:green"}
    short = {FLOOR: "floor\n(read+sha256+CRC)", PROJECT: "project\n(DirectRunner)", PLAIN: "plain loop\n(TensorFlow)",
             DATUMARO: "Datumaro 1.13\n(COCO)"}
    figure, axes = plt.subplots(1, 3 if several else 2, figsize=(16 if several else 11, 4.8))
    seconds_axis, rss_axis = axes[0], axes[1]

    results = report["results"]
    width = 0.38
    positions = range(len(names))
    bars = seconds_axis.bar([p - width / 2 for p in positions], [results[name]["seconds"] for name in names], width,
                            color=[colours[name] for name in names], label="wall")
    seconds_axis.bar_label(bars, labels=[f"{results[n]['seconds']:.1f} s\n{results[n]['time_x_floor']:.1f}x floor"
                                         for n in names], fontsize=8)
    cpu_bars = seconds_axis.bar([p + width / 2 for p in positions], [results[name]["cpu_s"] for name in names], width,
                                color=[colours[name] for name in names], hatch="//", edgecolor="white", alpha=0.6,
                                label="CPU (user+sys, all processes)")
    seconds_axis.bar_label(cpu_bars, fmt="%.1f", fontsize=8)
    seconds_axis.set_xticks(list(positions), [short[name] for name in names])
    seconds_axis.legend(fontsize=8, loc="upper left")
    seconds_axis.set_ylabel("seconds (lower is better)")
    seconds_axis.set_title(f"Wall and CPU time, N={report['n']}"
                           + (f", median of {report['repeat']}" if report.get("repeat", 1) > 1 else ""))
    seconds_axis.margins(y=0.2)

    single = [report["results"][name]["rss_max_process_mib"] for name in names]
    tree = [report["results"][name]["rss_max_tree_sum_mib"] for name in names]
    a = rss_axis.bar([p - width / 2 for p in positions], single, width, label="largest single process",
                     color=[colours[name] for name in names], alpha=0.55)
    b = rss_axis.bar([p + width / 2 for p in positions], tree, width, label="sum over process tree",
                     color=[colours[name] for name in names], hatch="//", edgecolor="white")
    rss_axis.bar_label(a, fmt="%.0f", fontsize=8)
    rss_axis.bar_label(b, fmt="%.0f", fontsize=8)
    rss_axis.set_xticks(list(positions), [short[name] for name in names])
    rss_axis.set_ylabel("peak RSS, MiB")
    rss_axis.set_title(f"Peak memory, N={report['n']}")
    rss_axis.legend(fontsize=8, loc="upper left")
    rss_axis.margins(y=0.2)

    if several:
        speed_axis = axes[2]
        for name in colours:
            points = sorted((n, r["results"][name]["images_per_s"]) for n, r in by_n.items() if name in r["results"])
            if points:
                speed_axis.plot(*zip(*points), marker="o", color=colours[name], label=name)
        speed_axis.set_xscale("log")
        speed_axis.set_xticks(sorted(by_n), [f"{n:,}" for n in sorted(by_n)])
        speed_axis.minorticks_off()
        speed_axis.set_xlabel("N images (log scale)")
        speed_axis.set_ylabel("images/s (higher is better)")
        speed_axis.set_title("Throughput against N")
        speed_axis.set_ylim(bottom=0)
        speed_axis.legend(fontsize=8)
        speed_axis.grid(alpha=0.3)

    facts = report["machine"]
    figure.suptitle(f"{facts['cpus']} cores, Python {facts['python']}, Beam {facts['apache_beam']}, "
                    f"page cache warm, project "
                    + (f"commit {facts['git_commit'][:8]}{' + local changes' if facts['git_dirty_files'] else ''}"
                       if facts["git_commit"] else f"from {facts['project_dir']}"), fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- main ----------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    parser.add_argument("--also-n", type=int, default=None,
                        help="a smaller number of images run in the same rounds, for fixed and marginal costs "
                             "paired round by round (default: from --results, see the module's docstring)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of paired runs (one run of each converter per round); medians are reported")
    parser.add_argument("--workdir", default="/tmp/od-tfrecords-bench",
                        help="where the dataset and Datumaro's virtualenv are created and cached")
    parser.add_argument("--results", default=str(REPO / "benchmarks" / "results"), help="folder for JSON and PNG")
    parser.add_argument("--skip-datumaro", action="store_true", help="run only the floor, the project and the plain loop")
    parser.add_argument("--skip-plain", action="store_true", help="do not run the plain loop")
    parser.add_argument("--project-args", default="", help="extra arguments for the project's run, e.g. Beam options")
    parser.add_argument("--project-dir", default=str(REPO),
                        help="checkout whose `python -m pipeline` is measured (default: this repository), "
                             "e.g. a `git worktree add --detach DIR COMMIT`")
    parser.add_argument("--keep-outputs", action="store_true", help="keep the TFRecords written (default: removed)")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="before each run, wait up to this many seconds for the machine to be idle (other jobs "
                             f"below {QUIET_CORES} core over {QUIET_WINDOW} s); 0: do not wait (default 120)")
    args = parser.parse_args()
    if args.also_n is not None and not 0 < args.also_n < args.n:
        parser.error(f"--also-n must be between 0 and --n ({args.n}), not {args.also_n}")

    workdir, results_folder = Path(args.workdir), Path(args.results)
    workdir.mkdir(parents=True, exist_ok=True)
    results_folder.mkdir(parents=True, exist_ok=True)
    data, output, logs = workdir / f"voc-{args.n}", workdir / "out", workdir / "logs"
    logs.mkdir(exist_ok=True)

    print(f"dataset: {args.n} images in {data} (cached) ...", flush=True)
    generate_voc(data, args.n)
    coco = write_coco(data)
    warm_data = workdir / f"voc-{WARM_UP_IMAGES}"
    generate_voc(warm_data, WARM_UP_IMAGES)
    warm_coco = write_coco(warm_data)
    datumaro = None if args.skip_datumaro else ensure_datumaro_venv(workdir)
    repeat = max(1, args.repeat)
    report = {"schema": SCHEMA, "n": args.n, "repeat": repeat,
              "machine": machine_facts(datumaro, Path(args.project_dir).resolve()),
              "project_args": args.project_args, "results": {}}
    project_args = shlex.split(args.project_args)
    commands = converter_commands(data, coco, output, datumaro and datumaro["python"], project_args)
    warm_ups = converter_commands(warm_data, warm_coco, workdir / "warm-up", datumaro and datumaro["python"], project_args)
    if args.skip_plain:
        commands.pop(PLAIN)
    cwd_of = lambda name: Path(args.project_dir) if name == PROJECT else REPO

    output.mkdir(parents=True, exist_ok=True)
    report["machine"]["page_cache_write_s_at_start"] = page_cache_write_cost(output)
    print(f"writing {PAGE_PROBE_MIB} MiB into the page cache: {report['machine']['page_cache_write_s_at_start'][0]} s "
          f"on fresh pages, {report['machine']['page_cache_write_s_at_start'][1]} s on the pages just freed", flush=True)
    for package in ("pipeline", "transforms"):  # compiled once, as an installed package's modules are
        # (an interpreter run with PYTHONDONTWRITEBYTECODE=1, as some CI images set, recompiles them every run)
        compileall.compile_dir(str(Path(args.project_dir) / package), quiet=1)
    for name in commands:  # untimed, once: interpreter, libraries and code in the page cache
        destination = output_folder(output, name)
        warm_up(warm_ups[name], logs / f"{destination.name}-warm-up.log", cwd=cwd_of(name))

    image_bytes = sum(p.stat().st_size for p in (data / "images").iterdir())
    datasets = {args.n: (data, commands)}
    if args.also_n:  # a smaller N in the same rounds: each round gives a line of its own (print_paired_marginal)
        small = workdir / f"voc-{args.also_n}"
        generate_voc(small, args.also_n)
        small_commands = converter_commands(small, write_coco(small), output, datumaro and datumaro["python"],
                                            project_args)
        datasets[args.also_n] = (small, {name: small_commands[name] for name in commands})
    runs = {n: {name: [] for name in commands} for n in datasets}
    for round_ in range(repeat):
        order = list(commands) if round_ % 2 == 0 else list(reversed(commands))
        sizes = sorted(datasets) if round_ % 2 == 0 else sorted(datasets, reverse=True)
        for n in sizes:
            folder, commands_n = datasets[n]
            for name in order:
                result = timed_run(name, commands_n[name], output_folder(output, name), folder, n,
                                   f"round {round_ + 1}/{repeat}" + (f", N={n}" if args.also_n else ""),
                                   logs / f"{output_folder(output, name).name}-{n}-{round_}.log", cwd_of(name), args)
                runs[n][name].append(result)
    small_runs = runs.get(args.also_n)
    runs = runs[args.n]

    for name, measured in runs.items():
        for round_, run in enumerate(measured):
            run["x_floor"] = round(run["seconds"] / runs[FLOOR][round_]["seconds"], 3)
        middle = lambda key: round(statistics.median(run[key] for run in measured), 3)
        result = {key: middle(key) for key in ("seconds", "cpu_s", "cpu_user_s", "cpu_sys_s", "other_cpu_s",
                                                "rss_max_process_mib", "rss_max_tree_sum_mib", "ru_maxrss_mib")}
        firsts = [run["first_record_s"] for run in measured if run.get("first_record_s") is not None]
        result["first_record_s"] = round(statistics.median(firsts), 2) if firsts else None
        result.update(time_x_floor=middle("x_floor"), max_processes_in_tree=max(r["max_processes_in_tree"] for r in measured),
                      rss_max_process_command=max(measured, key=lambda r: r["rss_max_process_mib"])["rss_max_process_command"],
                      records=measured[0]["records"], tfrecord_files=measured[0]["tfrecord_files"],
                      output_mb=measured[0]["output_mb"],
                      images_per_s=round(args.n / result["seconds"], 1),
                      mb_per_s=round(image_bytes / 1e6 / result["seconds"], 1), command=commands[name], runs=measured)
        report["results"][name] = result

    report["image_mb"] = round(image_bytes / 1e6, 1)
    report["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["machine"]["page_cache_write_s_at_end"] = page_cache_write_cost(output)
    plain = report["results"][PLAIN]["seconds"] if PLAIN in report["results"] else None
    for result in report["results"].values():
        if plain:
            result["time_x_plain_loop"] = round(result["seconds"] / plain, 3)
        if DATUMARO in report["results"]:
            result["time_x_datumaro"] = round(result["seconds"] / report["results"][DATUMARO]["seconds"], 3)
    print_table(args.n, image_bytes, report["results"], repeat)
    at_start, at_end = report["machine"]["page_cache_write_s_at_start"], report["machine"]["page_cache_write_s_at_end"]
    print(f"writing {PAGE_PROBE_MIB} MiB into the page cache (fresh pages / pages just freed): {at_start[0]} / {at_start[1]} s "
          f"before the runs, {at_end[0]} / {at_end[1]} s after (see page_cache_write_cost)")
    if small_runs:
        report["marginal"] = print_paired_marginal(runs, small_runs, args.n, args.also_n)
        report["also_n_runs"] = small_runs
    else:
        report["marginal"] = print_marginal(report, results_folder)

    json_path = results_folder / f"benchmark-{args.n}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    chart_path = results_folder / f"benchmark-{args.n}.png"
    write_chart(chart_path, report, results_folder)
    print(f"\nresults: {json_path}\nchart:   {chart_path}")


if __name__ == "__main__":
    main()
