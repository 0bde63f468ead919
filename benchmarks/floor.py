"""The floor: the least any converter that passes image bytes through must do, and nothing else.

    python benchmarks/floor.py --images DIR --output DIR [--processes P]

Lists the image files of DIR (no annotations are read), splits the list into P contiguous slices
(default: one per core) and forks one process per slice. Each process reads each of its files whole,
hashes it with hashlib.sha256 (OpenSSL), and appends it to its own file OUTPUT/floor-<i>.tfrecord as one
TFRecord record: 8-byte little-endian length, masked CRC32C of the length, the bytes, masked CRC32C of
the bytes (google_crc32c, the project's own CRC library, C implementation). No parsing, no validation,
no Example protobuf, no splits, no shuffle: a lower bound for the project's wall time on these files.

Prints one line: images, bytes, seconds, and the sha256 of all hashes (so the work cannot be skipped).
"""
from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import struct
import sys
import time

import google_crc32c

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def _masked_crc(data) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _convert_slice(job: tuple) -> tuple:
    """Reads, hashes and frames the files of one slice into one output file; (files, bytes, hashes digest)."""
    paths, output = job
    digest, total = hashlib.sha256(), 0
    with open(output, "wb", buffering=1 << 20) as out:
        for path in paths:
            with open(path, "rb") as handle:
                data = handle.read()
            digest.update(hashlib.sha256(data).digest())
            length = struct.pack("<Q", len(data))
            out.write(length)
            out.write(_masked_crc(length))
            out.write(data)
            out.write(_masked_crc(data))
            total += len(data)
    return len(paths), total, digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="folder of image files")
    parser.add_argument("--output", required=True, help="folder for floor-<i>.tfrecord (created)")
    parser.add_argument("--processes", type=int, default=os.cpu_count(), help="default: one per core")
    args = parser.parse_args()

    started = time.perf_counter()
    os.makedirs(args.output, exist_ok=True)
    with os.scandir(args.images) as entries:
        paths = sorted(e.path for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file())
    processes = max(1, min(args.processes, len(paths)))
    size = -(-len(paths) // processes)
    jobs = [(paths[i * size:(i + 1) * size], os.path.join(args.output, f"floor-{i}.tfrecord")) for i in range(processes)]
    if processes == 1:
        results = [_convert_slice(jobs[0])]
    else:
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            results = pool.map(_convert_slice, jobs, chunksize=1)
    files = sum(r[0] for r in results)
    total = sum(r[1] for r in results)
    combined = hashlib.sha256("".join(r[2] for r in results).encode()).hexdigest()[:16]
    print(f"floor: {files} images, {total / 1e6:.1f} MB, {processes} processes, "
          f"{time.perf_counter() - started:.2f} s, digest {combined}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
