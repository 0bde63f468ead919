"""Packaging for local installs and for Dataflow workers (--setup_file ./setup.py)."""
import setuptools

setuptools.setup(
    name="od-tfrecords",
    version="0.1.0",
    description="Apache Beam pipeline: object-detection datasets to TensorFlow OD API TFRecords",
    packages=setuptools.find_packages(include=["pipeline", "pipeline.*", "transforms", "transforms.*"]),
    python_requires=">=3.10",
    install_requires=[
        "apache-beam[gcp]>=2.60,<3",
        "google-crc32c>=1.5,<2",
        "defusedxml>=0.7,<1",
        "PyYAML>=6,<7",
        "Pillow>=10,<13",
        "ijson>=3.2,<4",
        "matplotlib>=3.7,<4",
    ],
    extras_require={
        "masks": ["pycocotools>=2.0.7,<3"],
        "test": [
            "pycocotools>=2.0.7,<3",
            "tensorflow-cpu>=2.15,<3",
            "numpy",
            "pytest>=8",
            "hypothesis>=6.100",
        ],
    },
    entry_points={"console_scripts": ["od-tfrecords=pipeline.cli:main"]},
)
