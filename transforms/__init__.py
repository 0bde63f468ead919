"""The building blocks of the conversion, in layers; the graph that joins them is pipeline/graph.py.

At this root, pure code (no Beam, no I/O): the image record model (model), box maths (boxes), the class
map and label map, splits, the splits a source names (source_splits), the join of annotations with image
files (join), the refusal rules (guards) and the failures a run ends with (outcomes); plus two helpers
everything shares: paths (local and gs:// path strings) and storage (files, local or gs://, over Beam's
FileSystems).

    formats/      one module per annotation format: file -> image records           (pure)
    images/       image bytes: sniff, probe headers, refuse bombs, convert or pass      (pure)
    records/      the OD API tf.train.Example and TFRecord wire, and reading it back     (pure)
    beam/         the PTransforms and DoFns the graph is made of
    incremental/  the published state: manifest, ingested-keys index, plan, lock, journal
    local/        the local runner's machinery: spill folder, forked pool, progress notes
    reports/      what inspect and verify judge and draw, and the output folder's README

tests/test_layers.py holds the import rules: the pure layers import no Beam, and only pipeline/local_runner.py
and the Beam steps reach local/.
"""
