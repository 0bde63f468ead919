"""Finding and parsing annotation files, and listing the image files they may name.

Image files are read only from inside --images, links included: a local image's path is resolved
(os.path.realpath: every symbolic link on it, the file's own and its folders') and must land inside the
resolved --images folder, else it is rejected (`path_outside_images`) before anything is opened, so no
byte of a file elsewhere is ever read or quoted. A link that stays inside (`a.jpg -> sub/b.jpg`) is
read. The resolved path is then opened with O_NOFOLLOW, so a last component swapped for a link after
the check fails to open; a folder on the path swapped for a link in that instant is not caught: that
takes someone writing to --images during the run. Hard links cannot be told from the file they name.
gs:// has no links. Annotation and config files (`read_file`) are not under --images and are read as
the user named them.
"""
from __future__ import annotations

import functools
import math
import os
import posixpath
import stat
from collections import defaultdict
from typing import Callable, Iterable, Iterator, List, NamedTuple, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms import formats, paths, storage
from transforms.class_map import ClassMap, apply_class_map, class_map_notes
from transforms.formats import FORMATS, AnnotationFormat, ClassNumbering, ParseContext, parse_annotation_file
from transforms.label_map import DECLARED, ZERO_USED
from transforms.images.probe import ImageProblem
from transforms.model import (
    ITEM_ANNOTATION, ITEM_BOX, ITEM_IMAGE, Ignored, ImageRecord, Rejection, boxes_given, pack, pack_records, unpack,
)
from transforms.join import JoinRule
from transforms.beam.runtime import IMAGES, LISTING, RECORDS, REMOTE, TASKS, Exchange, HandlingDoFn, Runtime
from transforms.splits import assign_shard
from transforms.beam.tally import TALLY

REJECTED = "rejected"
LABELS = "labels"
IMAGE_TOTALS = "image_totals"

IMAGE_EXTENSIONS = frozenset([".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"])


def read_file(path: str, limit: int = -1) -> bytes:
    """The file's bytes (the first `limit` only, if given).

    A local path that is not a regular file (a named pipe, a device) is refused, never read: reading
    one would block or never end.
    """
    if not storage.is_local(path):
        return storage.read_bytes(path, limit)  # gs://: one GET per file, a client per worker, retries
    return _read_local(path, limit)


def _read_local(path: str, limit: int = -1, flags: int = 0, release_cache: bool = False) -> bytes:
    # O_NONBLOCK: opening a named pipe must not wait for a writer. One open and one fstat per file, not
    # Beam's filesystem lookup: this runs once per annotation file and once per image.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | flags)
    with open(descriptor, "rb", buffering=0) as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(f"{path} is not a regular file")
        data = handle.read() if limit < 0 else handle.read(limit)
        if release_cache:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        return data


def read_record_image(record: ImageRecord, last_read: bool = False) -> bytes:
    """The bytes of a record's image: its file under --images, or the copy its annotation file embeds.

    `last_read`: the run reads this image no more (the writer's read), so a local file's pages leave the
    page cache at once. A conversion reads gigabytes once each: their pages would push out what the
    machine had cached. Speed neither gains nor loses by it here once the benchmark stopped favouring it
    (back to back, page cache warm: 5.4 s released against 5.3 s kept at 10,000 images, 23.7 against
    24.3 s at 50,000, medians of 3-6 runs). The next run reads the images from disk again.

    Raises ImageProblem("path_outside_images") when a link leads the file out of --images (see the
    module's docstring), ImageProblem("image_missing") when an annotation embeds no image after all;
    OSError and filesystem errors when the file cannot be read.
    """
    if not record.embedded_format:
        return read_image_file(record.images_root, record.key, last_read)
    embedded = FORMATS[record.embedded_format].embedded_image(read_file(record.source))
    if embedded is None:
        raise ImageProblem("image_missing", f"{record.key} is not under --images, nor embedded in the annotation")
    return embedded


def read_image_file(images_root: str, key: str, last_read: bool = False) -> bytes:
    """The bytes of the image file `key` (a normalized path relative to --images), never of a file outside it."""
    path = paths.join(images_root, key)
    if not storage.is_local(path):
        return read_file(path)
    root, resolved = _real_folder(images_root), _real_path(path)
    if resolved != root and not resolved.startswith(root.rstrip("/") + "/"):
        # Where the link leads is not named either: rejected.jsonl may travel with the dataset.
        raise ImageProblem("path_outside_images", f"{key}: a symbolic link on its path leads outside --images")
    return _read_local(resolved, flags=os.O_NOFOLLOW, release_cache=last_read)


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    """A folder's path with every link resolved; a run's images share few folders, so each is resolved once
    per worker (a folder swapped for a link during the run is not seen: the open below still refuses a
    link as the file itself)."""
    return os.path.realpath(folder)


def _real_path(path: str) -> str:
    """realpath(path), one lstat per file beyond its (cached) folder's."""
    folder, name = posixpath.split(path)
    candidate = posixpath.join(_real_folder(folder), name)
    try:
        is_link = stat.S_ISLNK(os.lstat(candidate).st_mode)
    except OSError:  # missing: reading it fails with the usual error
        return candidate
    return os.path.realpath(candidate) if is_link else candidate


PARSE_TASKS = 64  # the annotation files are spread over about this many tasks, within these bounds:
TASK_FILES_MIN, TASK_FILES_MAX = 64, 1024  # annotation files per parse task
IMAGE_LIST_CHUNK = 4096  # image files per element of a listing
PART_BYTES = 128 * 1024 * 1024  # a streamable annotation file larger than this is parsed in parts, in parallel


class ParseSettings(NamedTuple):
    """What decides the result of a source's parse tasks, besides each task's files and the shard count. The
    format is the source's own (transforms/source_splits.py `resolving_keys`), not only its name."""

    format: AnnotationFormat
    context: ParseContext
    class_map: dict
    source_index: int
    seed: int


def shard_batches(items: Iterable, join_key: Callable, seed: int, num_shards: int) -> Iterator[Tuple[int, List]]:
    """Items grouped by the shard of their join key: one (shard, items) batch per shard, not one per item."""
    by_shard = defaultdict(list)
    for item in items:
        by_shard[assign_shard(join_key(item), seed, num_shards)].append(item)
    for shard in sorted(by_shard):
        yield shard, by_shard[shard]


def files_per_task(files: int) -> int:
    """Annotation files per parse task: enough tasks to keep every worker busy to the end, and tasks big
    enough that each sends several records to each shard rather than one (a task sends one packed batch
    per shard its records fall in; at 50,000 files, 64-file tasks sent 35,000 batches of one or two
    records through the shuffle, and the runner's per-element costs and memory grew with them)."""
    return min(TASK_FILES_MAX, max(TASK_FILES_MIN, math.ceil(files / PARSE_TASKS)))


def parse_tasks(fmt: AnnotationFormat, patterns: Sequence[str]) -> Iterator[List[Tuple[str, int, int, int]]]:
    """A source's parse tasks, each a list of (path, part, parts, size); a huge streamable file becomes many
    one-part tasks.

    The listing is streamed twice, first only to count the files (the task size depends on it), so no
    list of every file is ever held. Which files share a task changes nothing in the output: the writer
    sorts each shard's records.
    """
    task_files = files_per_task(sum(1 for _ in storage.matching_files(patterns)))
    streamable = fmt.parse_part is not None
    batch = []
    for path, size in storage.matching_files(patterns):
        parts = math.ceil(size / PART_BYTES) if streamable and size > PART_BYTES else 1
        if parts > 1:
            for part in range(parts):
                yield [(path, part, parts, size)]
            continue
        batch.append((path, 0, 1, size))
        if len(batch) == task_files:
            yield batch
            batch = []
    if batch:
        yield batch


def task_key(source_index: int, number: int) -> str:
    """A parse task's key, unique across the run's sources."""
    return f"{source_index}-{number}"


class _PlanParsing(beam.DoFn):
    """Patterns -> parse tasks (task key, (0, packed [(path, part, parts, size)]), or a marker of a spilled one)."""

    def __init__(self, fmt: AnnotationFormat, source_index: int, exchange: Exchange):
        self._format = fmt
        self._source_index = source_index
        self._exchange = exchange

    def process(self, patterns: Sequence[str]):
        for number, task in enumerate(parse_tasks(self._format, patterns)):
            yield from self._exchange.send(TASKS, task_key(self._source_index, number), [(0, pack(task))], marker=True)


class ParseAnnotationFiles(HandlingDoFn):
    """Parse tasks -> (shard, (source index, packed records)) batches, rejections, class names and tallies (see
    ParseAnnotations)."""

    def __init__(self, fmt: AnnotationFormat, context: ParseContext, class_map: ClassMap, source_index: int,
                 seed: int, runtime: Runtime):
        super().__init__(runtime)
        self._format = fmt
        self._context = context
        self._class_map = class_map
        self._source_index = source_index
        self._seed = seed

    @property
    def settings(self) -> ParseSettings:
        """Everything but the task and the shard count that decides what a task's parse gives."""
        return ParseSettings(self._format, self._context, self._class_map, self._source_index, self._seed)

    def handle(self, task, num_shards: int):
        records = []
        source_classes = set()  # as the annotations spell them, before the class map
        numbering = set()  # the label map step's notes of the ids the source declares (transforms/label_map.py)
        from_context = formats.context_numbering(self._format, self._context)  # YOLO: --classes
        if from_context is not None:
            self._number("--classes", from_context, numbering, source_classes)
        exchange = self._runtime.exchange
        for path, part, parts, size in unpack(exchange.one_payload(TASKS, task)):
            for item in self._parse(path, part, parts, size, source_classes, numbering):
                if isinstance(item, ImageRecord):
                    records.append(item)
                else:
                    yield item
        self.note("parsed", len(records))
        for shard, batch in shard_batches(records, _record_join_key, self._seed, num_shards):
            yield from exchange.send(RECORDS, shard, [(self._source_index, pack_records(batch))])
        for label in sorted({box.label for record in records for box in record.boxes if box.label}):
            yield beam.pvalue.TaggedOutput(LABELS, label)
        for note in class_map_notes(source_classes, self._class_map):  # checked by the label map step
            yield beam.pvalue.TaggedOutput(LABELS, note)
        for note in sorted(numbering):
            yield beam.pvalue.TaggedOutput(LABELS, note)

    def _number(self, origin: str, numbering: ClassNumbering, notes: set, source_classes: set) -> None:
        """The label map step's notes of a ClassNumbering: each declared (id, name) under the name --class_map
        gives it (none for a name mapped to null), and whether the source's boxes use id 0."""
        for class_id, name in numbering.ids:
            if self._class_map:
                source_classes.add(name)  # a class map key may name a declared class no box uses
            target = self._class_map.get(name, name) if name in self._class_map else name
            if target is not None:
                notes.add((DECLARED, self._source_index, origin, class_id, target))
        if numbering.zero_used:
            notes.add((ZERO_USED, self._source_index))

    def _parse(self, path: str, part: int, parts: int, size: int, source_classes: set, numbering: set):
        if part == 0:
            self.count("annotation_files_read")
        try:
            if parts == 1:
                # Refused unread by the listing's size; and never read more than a byte past the limit, so a
                # file that grew since it was listed is refused by parse_annotation_file, not read whole.
                too_large = formats.too_large(path, size, self._context)
                items = [too_large] if too_large else parse_annotation_file(
                    self._format, path, read_file(path, self._context.max_annotation_bytes + 1), self._context,
                    numbered=True)
            else:
                opener = lambda: FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
                items = formats.parse_annotation_part(self._format, path, opener, self._context, part, parts,
                                                      numbered=True)
            items = list(items)
        except Exception as error:  # an unreadable file (or part) is one rejection, whatever the filesystem raised
            where = f"part {part + 1} of {parts}: " if parts > 1 else ""
            yield _reject(Rejection(path, "annotation_unreadable", f"{where}{error}", ITEM_ANNOTATION))
            return
        for item in items:
            if isinstance(item, Ignored):
                self.count(("ignored", item.what), item.count)
            elif isinstance(item, ClassNumbering):
                self._number(path, item, numbering, source_classes)
            elif isinstance(item, ImageRecord):
                # its parser's box rejections travel with it, and are counted here, once, as boxes read
                self.count("boxes_read", boxes_given(item))
                if self._class_map:
                    source_classes.update(box.label for box in item.boxes if box.label)
                record, dropped = apply_class_map(item, self._class_map)
                if dropped:
                    self.count("boxes_dropped_by_class_map", dropped)
                yield record
            else:
                self.count("boxes_read", 1 if item.item == ITEM_BOX else item.boxes)
                if item.item == ITEM_IMAGE:  # named, but refused before the join (e.g. an unsafe path)
                    self.count("images_read")
                yield _reject(item)


def _reject(rejection: Rejection):
    return beam.pvalue.TaggedOutput(REJECTED, rejection)


def _record_join_key(record: ImageRecord) -> str:
    return record.key


class ParseAnnotations(beam.PTransform):
    """Annotation file patterns -> (shard, (source index, packed records)) batches, Rejections, class names
    (`labels`: plain strings, with a class map the notes that check it, transforms/class_map.py, and the
    ids the source declares, transforms/label_map.py DECLARED and ZERO_USED) and tallies.

    Matching happens on a worker and the parse tasks are reshuffled, so millions of small VOC files
    (in batches) or the parts of one huge COCO file are parsed in parallel rather than by whichever
    worker listed them. Records leave already grouped by the shard that will join and write them; on
    a local run they are spilled (transforms/beam/runtime.py) and none is emitted.
    """

    def __init__(self, fmt: AnnotationFormat, patterns: Sequence[str], context: ParseContext, class_map: ClassMap,
                 *, source_index: int, seed: int, num_shards, runtime: Runtime = REMOTE):
        super().__init__()
        self._format = fmt
        self._patterns = list(patterns)
        self._context = context
        self._class_map = dict(class_map)
        self._source_index = source_index
        self._seed = seed
        self._num_shards = num_shards  # a singleton PCollection
        self._runtime = runtime

    def expand(self, pbegin):
        parse = ParseAnnotationFiles(self._format, self._context, self._class_map, self._source_index, self._seed,
                                     self._runtime)
        return (
            pbegin
            | "Patterns" >> beam.Create([self._patterns])
            | "PlanTasks" >> beam.ParDo(_PlanParsing(self._format, self._source_index, self._runtime.exchange))
            | "Spread" >> beam.Reshuffle()
            | "Parse" >> beam.ParDo(parse, beam.pvalue.AsSingleton(self._num_shards)).with_outputs(
                REJECTED, LABELS, TALLY, main="records"
            )
        )


class _ListImageFiles(beam.DoFn):
    def __init__(self, source_index: int, exchange: Exchange):
        self._source_index = source_index
        self._exchange = exchange

    def process(self, root: str):
        for number, chunk in enumerate(image_chunks(root)):
            yield beam.pvalue.TaggedOutput(IMAGE_TOTALS, (len(chunk), sum(size for _, size in chunk)))
            yield from self._exchange.send(LISTING, f"{self._source_index}-{number}", [(0, pack(chunk))], marker=True)


def image_chunks(root: str) -> Iterator[List[Tuple[str, int]]]:
    """The image files under --images, as (path relative to it, size in bytes), in chunks of IMAGE_LIST_CHUNK."""
    chunk = []
    for path, size in storage.matching_files([paths.join(storage.literal(root), "**")]):
        relative = paths.relative_to(root, path)
        if posixpath.splitext(relative)[1].lower() in IMAGE_EXTENSIONS:
            chunk.append((relative, size))
            if len(chunk) == IMAGE_LIST_CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


class ListImages(beam.PTransform):
    """Every image file under --images: listing chunks (chunk id, (0, packed [(path relative to it, size in
    bytes)])), or markers of spilled ones, and each chunk's (images, image bytes) (`image_totals`)."""

    def __init__(self, images_root: str, source_index: int = 0, runtime: Runtime = REMOTE):
        super().__init__()
        self._root = images_root
        self._source_index = source_index
        self._exchange = runtime.exchange

    def expand(self, pbegin):
        return pbegin | "Root" >> beam.Create([self._root]) | "List" >> beam.ParDo(
            _ListImageFiles(self._source_index, self._exchange)
        ).with_outputs(IMAGE_TOTALS, main="chunks")


class ShardImages(beam.PTransform):
    """Listing chunks -> (shard, (source index, packed image files)), sharded by the source's join key; on a
    local run the chunks are read from the spill folder and the batches go there, and none is emitted."""

    def __init__(self, rule: JoinRule, *, source_index: int, seed: int, num_shards, runtime: Runtime = REMOTE):
        super().__init__()
        self._rule = rule
        self._source_index = source_index
        self._seed = seed
        self._num_shards = num_shards
        self._exchange = runtime.exchange

    def expand(self, image_lists):
        join_key = lambda image: self._rule.image_join_key(image[0])
        index, seed, exchange = self._source_index, self._seed, self._exchange

        def by_shard(chunk, num_shards):
            images = unpack(exchange.one_payload(LISTING, chunk))
            for shard, batch in shard_batches(images, join_key, seed, num_shards):
                yield from exchange.send(IMAGES, shard, [(index, pack(batch))])

        return image_lists | "ByShard" >> beam.FlatMap(by_shard, beam.pvalue.AsSingleton(self._num_shards))
