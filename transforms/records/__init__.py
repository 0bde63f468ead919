"""The OD API record: tf.train.Example and TFRecord bytes written and read without TensorFlow (pure)."""
