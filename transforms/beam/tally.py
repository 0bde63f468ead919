"""Counts that every step reports and the summary adds up, as (name, n) pairs on the TALLY output.

These counts are part of the output, so they travel as data and are summed like any other
PCollection, identically on every runner: summary.json is built from them and is the source of truth.
A DoFn adds to them with `self.count(...)`; they are summed per bundle and emitted once when the
bundle ends, so counting costs no extra elements per image.

The same sums are also added, once per bundle, to Beam metrics counters in the namespace
`od_tfrecords` under the same names (a tuple name joined with "/": `split_images/train`,
`class_boxes/raccoon`), so a running Dataflow job shows them live in its UI ("Custom counters").
They agree with summary.json when the job has finished (a test checks it on the DirectRunner); while
it runs, or if a runner retries a bundle (committed metrics count a bundle once, attempted ones may
count it twice), the summary's numbers are the ones to trust.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, Tuple, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

TALLY = "tally"
NAMESPACE = "od_tfrecords"

Name = Union[str, Tuple[str, ...]]


def metric_name(name: Name) -> str:
    """A tally's name as a Beam counter name: ("split_images", "train") -> "split_images/train"."""
    return "/".join(str(part) for part in name) if isinstance(name, tuple) else str(name)


class _Counters:
    """Beam counter objects, made once per DoFn instance (per worker), not once per element."""

    def __init__(self):
        self._counters: Dict[Name, object] = {}

    def inc(self, name: Name, n: int) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Metrics.counter(NAMESPACE, metric_name(name))
        counter.inc(n)


class CountingDoFn(beam.DoFn):
    """A DoFn with `count(name, n)`; names are strings or tuples such as ("split_images", "train").

    Each bundle's counts go to Beam counters and, unless `emits_tallies` is off, out as TALLY elements.
    """

    emits_tallies = True

    def setup(self):
        self._metrics = _Counters()

    def start_bundle(self):
        self._counts = Counter()

    def count(self, name, n: int = 1) -> None:
        if n:
            self._counts[name] += n

    def finish_bundle(self):
        window = GlobalWindow()
        metrics = getattr(self, "_metrics", None) or _Counters()  # a subclass's setup may not call ours
        for name, n in self._counts.items():
            metrics.inc(name, n)
            if self.emits_tallies:
                yield beam.pvalue.TaggedOutput(TALLY, WindowedValue((name, n), window.max_timestamp(), [window]))
        self._counts = Counter()


def counters_from(metrics_result) -> Dict[str, int]:
    """{name: committed value} of the od_tfrecords counters in a PipelineResult.metrics() query."""
    from apache_beam.metrics.metric import MetricsFilter

    counters = Counter()
    for result in metrics_result.query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = result.committed if result.committed is not None else result.attempted
        counters[result.key.metric.name] += value  # the same name in several steps adds up
    return dict(counters)
