"""Dataset-wide facts computed once: the label map, the shard count, the duplicate groups."""
from __future__ import annotations

import dataclasses
import hashlib
import heapq
from typing import Dict, Optional, Sequence

import apache_beam as beam

from transforms.incremental import manifest as state
from transforms.beam.content_groups import content_batches, copies_by_content
from transforms.records.encode import ImagePolicy, image_boxes, is_unlabeled, prepare_record_image
from transforms.images.prep import VALIDATE_STRUCTURE
from transforms.join import JoinRule, join_shard
from transforms.class_map import class_names_checked
from transforms.label_map import (
    DECLARED, RULE_SORTED, RULE_SOURCE, ZERO_USED, ClassIdConflict, LabelIds, extend_label_map, source_label_map,
)
from transforms.outcomes import UnusableInput
from transforms.model import Rejection
from transforms.beam.read import REJECTED, read_record_image
from transforms.records.reader import split_order
from transforms.beam.tally import TALLY, CountingDoFn
from transforms.splits import Splits
from transforms.beam.runtime import REMOTE, Exchange, Runtime
from transforms.beam.write import CONTENT, auto_num_shards
from transforms.incremental.index import read_index_part
from transforms.incremental.plan import IncrementalPlan, index_part_path

HASHES = "hashes"  # --drop_duplicates: every joined image's sha256, grouped like the writers' CONTENT


class BuildLabelMap(beam.PTransform):
    """The class names the parsers found -> one {class name: id} dict (a LabelIds), extending `seed` without
    renumbering it.

    Every class an annotation names gets an id, even if its images are rejected later: ids must not
    depend on which images happened to be readable in one run. With a class map, the parse steps' notes
    among the names are checked here (the only step that sees every class): a key that matches no class
    ends the run (exit 2) before any record is written. With `rule` "source" (--class_ids), the ids the
    sources declare are kept (transforms/label_map.py `source_label_map`; `sources` names them in its
    messages); two sources giving one class different ids end the run the same way.
    """

    def __init__(self, seed: Dict[str, int], rule: str = RULE_SORTED, class_map: Optional[Dict] = None,
                 sources: Sequence[str] = ()):
        super().__init__()
        self._seed = dict(seed)
        self._rule = rule
        self._merged = frozenset(target for target in (class_map or {}).values() if target is not None)
        self._sources = tuple(sources)

    @staticmethod
    def label_ids(elements, seed, rule, merged=frozenset(), sources=()) -> LabelIds:
        """The label map of the label map step's elements (names and notes, in any order)."""
        names = class_names_checked(elements)
        if rule != RULE_SOURCE:
            return LabelIds(extend_label_map(seed, names), rule)
        notes = [element for element in elements if not isinstance(element, str)]
        declared = [tuple(note[1:]) for note in notes if note[0] == DECLARED]
        zero_used = [note[1] for note in notes if note[0] == ZERO_USED]
        describe = lambda index: sources[index] if index < len(sources) else f"source {index + 1}"
        try:
            ids, shifted = source_label_map(seed, names, declared, zero_used, merged, describe)
        except ClassIdConflict as error:
            raise UnusableInput(str(error)) from None
        return LabelIds(ids, rule, 1 if shifted else 0)

    def expand(self, class_names):
        seed, rule, merged, sources = self._seed, self._rule, self._merged, self._sources
        return (
            class_names
            | "Distinct" >> beam.Distinct()
            | "All" >> beam.combiners.ToList()
            | "Number" >> beam.Map(lambda elements: BuildLabelMap.label_ids(elements, seed, rule, merged, sources))
        )


class CountShards(beam.PTransform):
    """(images, image bytes) counts -> the number of shards per split: fixed by the user, or sized from the bytes.

    Never from the number of workers: the same data must give the same files on every runner. Sized
    from every image under --images, since the shard count is needed before the join.
    """

    def __init__(self, requested: int, splits: Splits):
        super().__init__()
        self._requested = requested
        self._splits = splits

    def expand(self, image_totals):
        if self._requested:
            return image_totals.pipeline | "Requested" >> beam.Create([self._requested])
        splits = self._splits
        return (
            image_totals
            | "Total" >> beam.CombineGlobally(beam.combiners.TupleCombineFn(sum, sum))
            | "Size" >> beam.Map(lambda totals: auto_num_shards(*totals, splits))
        )


class FindDuplicates(beam.PTransform):
    """(group, (second hex digit, packed [(sha256, key, split)])) batches, or markers of spilled ones -> (sorted
    keys, sorted splits) of each set of images that share their bytes: in more than one split, a leak (only
    splits the source defines can do that: hashed splits follow the bytes)."""

    def __init__(self, runtime: Runtime = REMOTE):
        super().__init__()
        self._exchange = runtime.exchange

    def expand(self, content):
        exchange = self._exchange

        def groups(item):
            for copies in copies_by_content(exchange, CONTENT, *item):
                if len(copies) > 1:
                    yield sorted(key for key, _ in copies), sorted({split for _, split in copies})

        return content | "ByPrefix" >> beam.GroupByKey() | "Groups" >> beam.FlatMap(groups)


class DuplicateCounts(beam.CombineFn):
    """(sorted keys, sorted splits) of each set of copies -> what the summary reports of them, in bounded memory:
    {"all" | "across_splits": (groups, images, the first `examples` sorted groups of keys)}.

    Counts are summed and only the smallest `examples` groups are kept at every step (a bounded
    "smallest N"), so no worker holds every group; the result equals sorting all groups and taking the
    first N (transforms/beam/publish.py `duplicate_counts`).
    """

    KINDS = ("all", "across_splits")

    def __init__(self, examples: int):
        self._examples = examples

    def create_accumulator(self):
        return {kind: (0, 0, []) for kind in self.KINDS}

    def _add(self, part, groups, images, examples):
        held_groups, held_images, held = part
        return held_groups + groups, held_images + images, heapq.nsmallest(self._examples, held + examples)

    def add_input(self, accumulator, element):
        keys, splits = element
        keys = list(keys)
        accumulator = dict(accumulator, all=self._add(accumulator["all"], 1, len(keys), [keys]))
        if len(splits) > 1:
            accumulator["across_splits"] = self._add(accumulator["across_splits"], 1, len(keys), [keys])
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for accumulator in accumulators:
            for kind in self.KINDS:
                merged[kind] = self._add(merged[kind], *accumulator[kind])
        return merged

    def extract_output(self, accumulator):
        return accumulator


class _HashImages(beam.DoFn):
    """A shard's joined records -> (group, (second hex digit, packed [(sha256, key, images root, source, boxes,
    shard, source split)])) batches for the duplicate search (transforms/beam/content_groups.py), or one marker per spilled group.

    The same content the writer's split uses; the join's rejections are the writer's to report, and so is an
    image that lost every box (its parser's rejections and the box checks'): it is left out, else its
    copies would be dropped as duplicates of an image that is then rejected. In an incremental run an
    image ingested before and unchanged since is not read: its hash is in the index.
    """

    def __init__(self, policy: ImagePolicy, rules: Sequence[JoinRule], exchange: Exchange,
                 incremental: Optional[IncrementalPlan]):
        self._policy = dataclasses.replace(policy, validate=VALIDATE_STRUCTURE)  # the writer validates
        self._rules = tuple(rules)
        self._exchange = exchange
        self._incremental = incremental

    def process(self, element):
        shard, grouped = element
        plan = self._incremental
        ingested = read_index_part(index_part_path(grouped)) if plan else {}
        rows = []
        for record in join_shard(*self._exchange.shard_inputs(shard, grouped), self._rules).records:
            previous = ingested.get(state.identity(record, len(self._rules))) if plan else None
            if previous is not None and previous.fingerprint == state.fingerprint(record):
                digest = previous.sha256
            else:
                try:
                    image = prepare_record_image(record, read_record_image(record), self._policy)
                    if is_unlabeled(record, image_boxes(record, image), self._policy):
                        continue  # the writer rejects it (image_boxes_all_rejected): no copy of it may yield to it
                    digest = hashlib.sha256(image.encoded).hexdigest()
                except Exception:  # unusable: the writer reads it again and rejects it with the reason
                    continue
            rows.append((digest, record.key, record.images_root, record.source, len(record.boxes), shard,
                         record.source_split or ""))
        for group, batches in content_batches(rows):
            yield from self._exchange.send(HASHES, group, batches, marker=True)


class _KeepFirst(CountingDoFn):
    def __init__(self, exchange: Exchange):
        self._exchange = exchange

    def process(self, element):
        for copies in copies_by_content(self._exchange, HASHES, *element):
            # the first of train, val, test (splits the source defines), then by (key, images root)
            (kept_key, *_), *others = sorted(copies, key=lambda copy: (split_order(copy[5]), copy[:2]))
            self.count("duplicate_images_dropped", len(others))
            for key, images_root, source, boxes, shard, _ in others:
                yield shard, [(images_root, key)]
                detail = f"{key} has the same bytes as {kept_key}"
                yield beam.pvalue.TaggedOutput(REJECTED, Rejection(source, "image_duplicate", detail, boxes=boxes))


class DropDuplicates(beam.PTransform):
    """Sharded metadata -> (shard, [(images root, key)]) of every copy but the first by path; those rejected.

    Deciding before the writer needs each image's hash before the shuffle, so this reads every image
    a second time (and converts the few that need it twice), but for those an incremental run has
    ingested before and finds unchanged; it runs only when --drop_duplicates asks.
    The writer skips the keys it is given.
    """

    def __init__(self, policy: ImagePolicy, rules: Sequence[JoinRule], runtime: Runtime = REMOTE,
                 incremental: Optional[IncrementalPlan] = None):
        super().__init__()
        self._policy = policy
        self._rules = rules
        self._exchange = runtime.exchange
        self._incremental = incremental

    def expand(self, sharded):
        return (
            sharded
            | "GroupByShard" >> beam.CoGroupByKey()
            | "Hash" >> beam.ParDo(_HashImages(self._policy, self._rules, self._exchange, self._incremental))
            | "ByContent" >> beam.GroupByKey()
            | "KeepFirst" >> beam.ParDo(_KeepFirst(self._exchange)).with_outputs(REJECTED, TALLY, main="dropped")
        )
