"""Object-detection datasets to TensorFlow TFRecords with Apache Beam."""
