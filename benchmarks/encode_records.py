"""Building records with and without TensorFlow: why the workers never import it.

    python benchmarks/encode_records.py [--n 2000]

Encodes the same OD API records for N generated JPEGs two ways, in fresh processes so import costs
are counted: the project's own writer (transforms.records.encode + transforms.records.example: hand-written protobuf
wire format and TFRecord framing) and TensorFlow's (tf.train.Example + tf.io.TFRecordWriter). Prints
import seconds, per-record microseconds, peak RSS, and checks that both files hold the same records.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_COMMON = r"""
import glob, json, resource, sys, time
started = time.perf_counter()
{imports}
imported = time.perf_counter()
paths = sorted(glob.glob(sys.argv[1] + "/*.jpg"))[: int(sys.argv[2])]
images = [open(path, "rb").read() for path in paths]
began = time.perf_counter()
{loop}
done = time.perf_counter()
print(json.dumps({{"import_s": imported - started, "per_record_us": 1e6 * (done - began) / len(images),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

_PROJECT = _COMMON.format(
    imports="""from transforms.records.encode import ImagePolicy, encode_record
from transforms.records.example import tfrecord_frame
from transforms.model import Box, ImageRecord""",
    loop="""policy, labels = ImagePolicy(), {"cat": 1, "dog": 2}
with open(sys.argv[3], "wb") as handle:
    for path, data in zip(paths, images):
        name = path.rsplit("/", 1)[1]
        record = ImageRecord(key=name, source="a.xml", source_id=name, boxes=(Box("cat", 10, 20, 110, 220), Box("dog", 5, 5, 50, 60)))
        handle.writelines(tfrecord_frame(encode_record(record, data, policy, labels).example))""",
)

_TENSORFLOW = _COMMON.format(
    imports="""import hashlib
import tensorflow as tf
from PIL import Image
import io""",
    loop="""def feature(kind, values):
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if kind == "float":
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
with tf.io.TFRecordWriter(sys.argv[3]) as writer:
    for path, data in zip(paths, images):
        width, height = Image.open(io.BytesIO(data)).size  # the header only, as the project's probe
        name = path.rsplit("/", 1)[1].encode()
        example = tf.train.Example(features=tf.train.Features(feature={
            "image/encoded": feature("bytes", [data]), "image/format": feature("bytes", [b"jpeg"]),
            "image/filename": feature("bytes", [name]), "image/source_id": feature("bytes", [name]),
            "image/key/sha256": feature("bytes", [hashlib.sha256(data).hexdigest().encode()]),
            "image/height": feature("int64", [height]), "image/width": feature("int64", [width]),
            "image/object/bbox/xmin": feature("float", [10 / width, 5 / width]),
            "image/object/bbox/ymin": feature("float", [20 / height, 5 / height]),
            "image/object/bbox/xmax": feature("float", [110 / width, 50 / width]),
            "image/object/bbox/ymax": feature("float", [220 / height, 60 / height]),
            "image/object/class/text": feature("bytes", [b"cat", b"dog"]),
            "image/object/class/label": feature("int64", [1, 2]),
        }))
        writer.write(example.SerializeToString())""",
)


def _run(code: str, images: str, n: int, output: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code, images, str(n), output], cwd=REPO, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--images", default="/tmp/od-tfrecords-bench/voc-2000/images",
                        help="a folder of JPEGs (benchmark.py generates one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        ours, theirs = Path(folder, "project.tfrecord"), Path(folder, "tf.tfrecord")
        results = {"project (no TensorFlow)": _run(_PROJECT, args.images, args.n, str(ours)),
                   "TensorFlow tf.train.Example": _run(_TENSORFLOW, args.images, args.n, str(theirs))}
        import tensorflow as tf

        def features(path):
            return [dict(tf.train.Example.FromString(r.numpy()).features.feature) for r in tf.data.TFRecordDataset(str(path))]

        # The project writes more keys (difficult, truncated, ...): every key TensorFlow's records hold must agree.
        same = all(all(mine[key] == value for key, value in tfs.items())
                   for mine, tfs in zip(features(ours), features(theirs), strict=True))
    print(f"N={args.n} records; every feature of the TensorFlow-built records is the same in ours: {same}")
    print(f"{'writer':<30}{'import s':>10}{'us/record':>11}{'peak RSS MiB':>14}")
    for name, result in results.items():
        print(f"{name:<30}{result['import_s']:>10.2f}{result['per_record_us']:>11.0f}{result['peak_rss_mib']:>14.0f}")


if __name__ == "__main__":
    main()
