"""Packaging for local installs and for Dataflow workers (--setup_file ./setup.py).

Dataflow runs `pip install` of this package on every worker, so both packages the pipeline's code
lives in, `pipeline` and `transforms`, must be in it (a test builds the wheel and checks), and every
dependency has a range: a worker starting next month installs what the launcher ran with.
"""
import setuptools

setuptools.setup(
    name="od-tfrecords",
    version="0.1.0",
    description="Apache Beam pipeline: object-detection datasets to TensorFlow OD API TFRecords",
    # find_namespace_packages: transforms/ has no __init__.py, and find_packages silently left it out
    packages=setuptools.find_namespace_packages(
        include=["pipeline", "pipeline.*", "transforms", "transforms.*"], exclude=["*.__pycache__"]
    ),
    python_requires=">=3.10",
    install_requires=[
        "apache-beam[gcp]>=2.60,<3",
        "google-crc32c>=1.5,<2",
        "defusedxml>=0.7,<1",
        "PyYAML>=6,<7",
        "Pillow>=10,<13",
        "matplotlib>=3.7,<4",
    ],
    extras_require={
        "masks": ["pycocotools>=2.0.7,<3"],
        "test": [
            "pycocotools>=2.0.7,<3",
            "tensorflow-cpu>=2.15,<3",
            "tensorflow-datasets>=4.9,<5",
            "numpy>=1.26,<3",
            "pytest>=8,<10",
            "hypothesis>=6.100,<7",
            "gcp-storage-emulator>=2026.7,<2028",  # a GCS-protocol server on 127.0.0.1 for the gs:// tests
        ],
    },
    entry_points={"console_scripts": ["od-tfrecords=pipeline.cli:main"]},
)
