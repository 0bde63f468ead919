"""The baseline: what a typical one-off script does. One process, one loop, TensorFlow's own writer.

Reads each Pascal VOC file and its image, builds the same OD API tf.train.Example with TensorFlow's
protobuf classes, and appends it to one TFRecord file. No validation, no splits, no sharding.
"""
from __future__ import annotations

import argparse
import glob
import os
import xml.etree.ElementTree as ElementTree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    import tensorflow as tf

    def feature(kind, values):
        if kind == "bytes":
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if kind == "float":
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with tf.io.TFRecordWriter(args.output) as writer:
        for xml_path in sorted(glob.glob(os.path.join(args.annotations, "*.xml"))):
            root = ElementTree.parse(xml_path).getroot()
            filename = root.findtext("filename")
            width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
            with open(os.path.join(args.images, filename), "rb") as handle:
                encoded = handle.read()
            objects = list(root.iter("object"))
            corner = lambda name, scale: [float(o.findtext(f"bndbox/{name}")) / scale for o in objects]
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": feature("bytes", [encoded]),
                "image/format": feature("bytes", [b"jpeg"]),
                "image/filename": feature("bytes", [filename.encode()]),
                "image/source_id": feature("bytes", [filename.encode()]),
                "image/height": feature("int64", [height]),
                "image/width": feature("int64", [width]),
                "image/object/bbox/xmin": feature("float", corner("xmin", width)),
                "image/object/bbox/ymin": feature("float", corner("ymin", height)),
                "image/object/bbox/xmax": feature("float", corner("xmax", width)),
                "image/object/bbox/ymax": feature("float", corner("ymax", height)),
                "image/object/class/text": feature("bytes", [o.findtext("name").encode() for o in objects]),
                "image/object/class/label": feature("int64", [1 for _ in objects]),
            }))
            writer.write(example.SerializeToString())


if __name__ == "__main__":
    main()
