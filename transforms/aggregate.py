"""Dataset-wide facts computed once: the label map, the shard count, the duplicate groups."""
from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam

from transforms.encode import ImagePolicy, prepare_record_image
from transforms.image_prep import VALIDATE_STRUCTURE
from transforms.join import JoinRule, join_shard
from transforms.label_map import extend_label_map
from transforms.model import Rejection, unpack
from transforms.read import REJECTED, read_record_image
from transforms.tally import TALLY, CountingDoFn
from transforms.splits import Splits
from transforms.spill import Spill, gather
from transforms.write import CONTENT, auto_num_shards, shard_inputs


class BuildLabelMap(beam.PTransform):
    """The class names the parsers found -> one {class name: id} dict, extending `seed` without renumbering it.

    Every class an annotation names gets an id, even if its images are rejected later: ids must not
    depend on which images happened to be readable in one run.
    """

    def __init__(self, seed: Dict[str, int]):
        super().__init__()
        self._seed = dict(seed)

    def expand(self, class_names):
        seed = self._seed
        return (
            class_names
            | "Distinct" >> beam.Distinct()
            | "All" >> beam.combiners.ToList()
            | "Number" >> beam.Map(lambda names: extend_label_map(seed, names))
        )


class CountShards(beam.PTransform):
    """Packed lists of (image file, size) -> the number of shards per split: fixed by the user, or sized from the bytes.

    Never from the number of workers: the same data must give the same files on every runner. Sized
    from every image under --images, since the shard count is needed before the join.
    """

    def __init__(self, requested: int, splits: Splits):
        super().__init__()
        self._requested = requested
        self._splits = splits

    def expand(self, image_lists):
        if self._requested:
            return image_lists.pipeline | "Requested" >> beam.Create([self._requested])
        splits = self._splits
        return (
            image_lists
            | "ImageBytes" >> beam.Map(lambda images: sum(size for _, size in unpack(images)))
            | "Total" >> beam.CombineGlobally(sum)
            | "Size" >> beam.Map(lambda total: auto_num_shards(total, splits))
        )


class FindDuplicates(beam.PTransform):
    """(sha256 prefix, (shard, packed [(sha256, key)])) batches, or markers of spilled ones -> sorted key lists
    of the images that share their bytes."""

    def __init__(self, spill: Optional[Spill] = None):
        super().__init__()
        self._spill = spill

    def expand(self, content):
        spill = self._spill

        def groups(item):
            prefix, batches = item
            yield from _shared_content(pair for _, packed in gather(spill, CONTENT, prefix, batches) for pair in unpack(packed))

        return content | "ByPrefix" >> beam.GroupByKey() | "Groups" >> beam.FlatMap(groups)


def _shared_content(pairs: Iterable[Tuple[str, str]]) -> Iterator[List[str]]:
    keys_by_sha256 = defaultdict(list)
    for sha256, key in pairs:
        keys_by_sha256[sha256].append(key)
    for keys in keys_by_sha256.values():
        if len(keys) > 1:
            yield sorted(keys)


class _HashImages(beam.DoFn):
    """A shard's joined records -> (sha256 of the bytes each will hold, (shard, record)).

    The same content the writer's split uses; the join's rejections are the writer's to report.
    """

    def __init__(self, policy: ImagePolicy, rules: Sequence[JoinRule], spill: Optional[Spill]):
        self._policy = dataclasses.replace(policy, validate=VALIDATE_STRUCTURE)  # the writer validates
        self._rules = tuple(rules)
        self._spill = spill

    def process(self, element):
        shard, grouped = element
        for record in join_shard(*shard_inputs(self._spill, shard, grouped), self._rules).records:
            try:
                data = read_record_image(record)
                digest = hashlib.sha256(prepare_record_image(record, data, self._policy).encoded).hexdigest()
            except Exception:  # unusable: the writer reads it again and rejects it with the reason
                continue
            yield digest, (shard, record)


class _KeepFirst(CountingDoFn):
    def process(self, element):
        _, copies = element
        (_, kept), *others = sorted(copies, key=lambda item: (item[1].key, item[1].images_root))
        self.count("duplicate_images_dropped", len(others))
        for shard, copy in others:
            yield shard, [(copy.images_root, copy.key)]
            yield beam.pvalue.TaggedOutput(
                REJECTED,
                Rejection(copy.source, "image_duplicate", f"{copy.key} has the same bytes as {kept.key}", boxes=len(copy.boxes)),
            )


class DropDuplicates(beam.PTransform):
    """Sharded metadata -> (shard, [(images root, key)]) of every copy but the first by path; those rejected.

    Deciding before the writer needs each image's hash before the shuffle, so this reads every image
    a second time (and converts the few that need it twice); it runs only when --drop_duplicates asks.
    The writer skips the keys it is given.
    """

    def __init__(self, policy: ImagePolicy, rules: Sequence[JoinRule], spill: Optional[Spill] = None):
        super().__init__()
        self._policy = policy
        self._rules = rules
        self._spill = spill

    def expand(self, sharded):
        return (
            sharded
            | "GroupByShard" >> beam.CoGroupByKey()
            | "Hash" >> beam.ParDo(_HashImages(self._policy, self._rules, self._spill))
            | "ByContent" >> beam.GroupByKey()
            | "KeepFirst" >> beam.ParDo(_KeepFirst()).with_outputs(REJECTED, TALLY, main="dropped")
        )
