"""The few file operations the pipeline needs, the same for local folders and gs:// prefixes.

Everything goes through Beam's FileSystems (so any scheme Beam knows works), except three paths on
gs://: a listing, which streams the bucket page by page (Beam's match lists a prefix whole first), and
the two hot paths, which a worker repeats for every image and every staged file:

- reading a whole object (or its first bytes) is one ranged GET with a storage client made once per
  worker thread, instead of Beam's GcsIO.open, which builds a new client (a new connection pool, a new
  TLS handshake) and sends two metadata requests before the download for every file;
- writing a small object is one upload.

Both retry transient errors (429, 5xx, dropped connections, timeouts) with Beam's exponential backoff,
and count the retries in the Beam counter `od_tfrecords:gcs_retries`; a missing object or a refused
permission is not transient and is raised at once. When STORAGE_EMULATOR_HOST names a GCS emulator,
the storage client is anonymous, as google-cloud-storage's own default for an emulator.
"""
from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
import threading
import time
import warnings
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar

from apache_beam.io.filesystem import CompressionTypes, FileSystem
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.utils import retry

T = TypeVar("T")
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
RETRY_ATTEMPTS = 6  # 0.5 + 1 + 2 + 4 + 8 s of waiting at most (each jittered) before giving up
RETRY_INITIAL_SECONDS = 0.5
RETRY_MAX_SECONDS = 16.0
_RETRIES = Metrics.counter("od_tfrecords", "gcs_retries")
_local = threading.local()


def is_local(path: str) -> bool:
    return "://" not in path


def is_gcs(path: str) -> bool:
    return path.startswith("gs://")


def split_gcs_path(path: str) -> Tuple[str, str]:
    bucket, _, name = path[len("gs://"):].partition("/")
    if not bucket or not name:
        raise ValueError(f"{path} names no object (gs://BUCKET/NAME)")
    return bucket, name


# ---------------------------------------------------------------------------------------------------
# transient errors and retries


def is_transient(error: BaseException) -> bool:
    """True for errors worth retrying: throttling, server errors, dropped connections, timeouts."""
    try:
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth_exceptions
    except ImportError:  # no GCP libraries: only the built-in kinds can be judged
        api = auth_exceptions = None
    if api is not None:
        if isinstance(error, (api.TooManyRequests, api.InternalServerError, api.BadGateway,
                              api.ServiceUnavailable, api.GatewayTimeout)):
            return True
        if isinstance(error, api.GoogleAPICallError):
            return getattr(error, "code", None) in (408, 429, 500, 502, 503, 504)
        if isinstance(error, auth_exceptions.TransportError):
            return True
    try:
        import requests

        if isinstance(error, (requests.ConnectionError, requests.Timeout)):
            return True
    except ImportError:
        pass
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    details = getattr(error, "exception_details", None)  # Beam's BeamIOError wraps per-path errors
    if isinstance(details, dict) and details:
        return all(isinstance(inner, BaseException) and is_transient(inner) for inner in details.values())
    return False


def with_retries(action: Callable[[], T], *, attempts: int = RETRY_ATTEMPTS, sleep=time.sleep) -> T:
    """`action()`, retried on transient errors with Beam's exponential backoff (each wait jittered)."""
    retrying = retry.with_exponential_backoff(
        num_retries=attempts - 1, initial_delay_secs=RETRY_INITIAL_SECONDS, max_delay_secs=RETRY_MAX_SECONDS,
        retry_filter=is_transient, logger=_retrying, clock=_Sleeper(sleep),
    )
    return retrying(action)()


class _Sleeper:
    """The clock Beam's backoff waits with."""

    def __init__(self, sleep):
        self.sleep = sleep


def _retrying(message: str, *args) -> None:
    """Beam's backoff reports each retry here, just before its wait: counted, and logged quietly."""
    _RETRIES.inc()
    logging.getLogger(__name__).debug(message, *args)


# ---------------------------------------------------------------------------------------------------
# one storage client per worker thread


_options = None  # the run's pipeline options, given by the command that builds the pipeline


def use_pipeline_options(options) -> None:
    """Make this process's storage clients with the run's options (credentials, impersonation), as Beam's
    own GCS filesystem does; clients made before are dropped. On a remote worker Beam's runtime options
    serve instead."""
    global _options
    _options = options
    forget_clients()


def _pipeline_options():
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.options.value_provider import RuntimeValueProvider

    return _options or RuntimeValueProvider.runtime_options or PipelineOptions([])


def forget_clients() -> None:
    """Drop this process's clients: a forked child must not share its parent's connections."""
    global _local
    _local = threading.local()


def gcs_client():
    """This thread's google-cloud-storage client, made once (heavy: credentials, a connection pool)."""
    client = getattr(_local, "client", None)
    if client is None:
        from google.cloud import storage

        if os.environ.get(EMULATOR_ENV):  # an emulator takes anonymous requests, as google-cloud-storage's default for one
            client = storage.Client.create_anonymous_client()
        else:
            from apache_beam.io.gcp.gcsio import create_storage_client

            client = create_storage_client(_pipeline_options())
        _local.client = client
    return client


def _read_gcs(path: str, limit: int) -> bytes:
    bucket, name = split_gcs_path(path)
    blob = gcs_client().bucket(bucket).blob(name)
    if limit == 0:
        return b""
    # raw_download: the stored bytes, never gunzipped by decompressive transcoding (as Beam reads them)
    if limit > 0:
        try:
            return blob.download_as_bytes(start=0, end=limit - 1, raw_download=True, checksum=None)
        except Exception as error:
            if getattr(error, "code", None) == 416:  # a range past the end of an empty object
                return b""
            raise
    return blob.download_as_bytes(raw_download=True)


# ---------------------------------------------------------------------------------------------------
# the operations


def read_bytes(path: str, limit: int = -1) -> bytes:
    """The file's bytes (the first `limit` only, if given); gs:// in one GET, with retries."""
    if is_gcs(path):
        return with_retries(lambda: _read_gcs(path, limit))
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read(limit)


def write_bytes(path: str, data: bytes) -> None:
    if is_gcs(path):
        bucket, name = split_gcs_path(path)
        blob = gcs_client().bucket(bucket).blob(name)
        # A whole-object overwrite of our own staging file: safe to repeat, so retried.
        with_retries(lambda: blob.upload_from_string(data, content_type="application/octet-stream", retry=None))
        return
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(data)


_GLOB_CHARACTER = re.compile(r"([*?[])")


def literal(path: str) -> str:
    """`path` as a pattern that matches only itself: a folder named `o[1]` or `o*` is that folder, never
    `o1` or `o_other` beside it. Join it with a pattern for what lies below (`literal(folder) + "/*"`)."""
    return _GLOB_CHARACTER.sub(r"[\1]", path)


def _literal_prefix(pattern: str) -> Tuple[str, bool]:
    """(the path a pattern's literal start names, whether the whole pattern is literal), with the
    one-character classes `literal` makes (`[[]`, `[*]`, `[?]`, or any `[c]`) read as their character."""
    prefix, index = [], 0
    while index < len(pattern):
        character = pattern[index]
        if character == "[" and index + 2 < len(pattern) and pattern[index + 2] == "]" and pattern[index + 1] not in "!]":
            prefix.append(pattern[index + 1])
            index += 3
        elif character in "*?[":
            return "".join(prefix), False
        else:
            prefix.append(character)
            index += 1
    return "".join(prefix), True


def _compiled(pattern: str):
    with warnings.catch_warnings():  # `[[]` (a literal `[`) reads to re as a possible nested set: it is not
        warnings.simplefilter("ignore", FutureWarning)
        return re.compile(FileSystem.translate_pattern(pattern)).match


def list_files(pattern: str) -> List[str]:
    """The paths a pattern matches, sorted (a small folder's: staged files, published shards)."""
    return with_retries(lambda: sorted(path for path, _ in matching_files([pattern])))


def matching_files(patterns: Sequence[str]) -> Iterator[Tuple[str, int]]:
    """(path, size in bytes) of every file the patterns match, as Beam's FileSystems.match finds them, streamed.

    FileSystems.match gathers all of a pattern's matches into one list before it returns: a million
    FileMetadata objects for a big folder. This walks the same listing (the filesystem's own: local,
    gs://, any scheme Beam knows, paged where the store pages) with the same pattern rules, and yields
    each file as it is listed, in the listing's order. A file that several patterns match is yielded
    once, for the first of them.
    """
    earlier = []
    for pattern in patterns:
        if pattern.endswith("/"):
            pattern += "*"
        matches = _compiled(pattern)
        for path, size in _listing(pattern, matches):
            if not any(matched(path) for matched in earlier):
                yield path, size
        earlier.append(matches)


def _listing(pattern: str, matches: Callable) -> Iterator[Tuple[str, int]]:
    prefix, whole = _literal_prefix(pattern)
    filesystem = FileSystems.get_filesystem(prefix)
    if whole:  # no wildcard: one file or none
        if filesystem.exists(prefix):
            yield prefix, filesystem.metadata(prefix).size_in_bytes
        return
    if is_local(pattern):
        deepest = None if "**" in pattern else pattern.count("/")
        yield from ((path, size) for path, size in _local_files(os.path.dirname(prefix), deepest) if matches(path))
        return
    if is_gcs(pattern):  # page by page: a bucket may hold millions of images
        bucket, _, name = prefix[len("gs://"):].partition("/")
        for blob in gcs_client().list_blobs(bucket, prefix=name):
            path = f"gs://{bucket}/{blob.name}"
            if matches(path):
                yield path, blob.size
        return
    if filesystem.has_dirs():  # e.g. hdfs://: the folder is listed; other object stores list by prefix
        prefix = posixpath.dirname(prefix) + "/"
    # any other filesystem Beam knows: its own match, which lists the prefix whole before it returns
    for result in FileSystems.match([literal(prefix) + "**"]):
        for metadata in result.metadata_list:
            if matches(metadata.path):
                yield metadata.path, metadata.size_in_bytes


def _local_files(folder: str, deepest: Optional[int] = None) -> Iterator[Tuple[str, int]]:
    """(path, size) of every file below a local folder, as Beam's local listing (os.walk) finds them, but one
    entry at a time: os.walk reads a whole folder's names into a list first, a million for a big image folder.

    Like os.walk, a folder's own files come before its subfolders' (a search that stops at its first
    match stops early); folders whose paths have `deepest` slashes or more are not entered (a pattern
    without ** matches nothing below its own depth).
    """
    try:
        entries = os.scandir(folder)
    except OSError:  # gone or unreadable: nothing listed, as os.walk does
        return
    subfolders = []
    with entries:
        for entry in entries:
            try:
                if entry.is_dir():
                    if not entry.is_symlink():  # os.walk does not follow links to folders
                        subfolders.append(entry.path)
                    continue
                yield entry.path, entry.stat().st_size
            except OSError:  # vanished since it was listed, or a dangling link: as Beam's listing, skipped
                continue
    for subfolder in subfolders:
        if deepest is None or subfolder.count("/") < deepest:
            yield from _local_files(subfolder, deepest)


def move(sources: Sequence[str], destinations: Sequence[str]) -> None:
    if sources:  # not retried here: Beam's GCS rename retries its own batch copy and delete
        FileSystems.rename(list(sources), list(destinations))


def delete(paths: Sequence[str]) -> None:
    """Delete these files, each path taken literally (Beam's FileSystems.delete reads a local or gs:// path
    as a pattern: deleting `o*/a` would delete `o_other/a`)."""
    for path in paths:
        if is_local(path):
            os.remove(path)
        elif is_gcs(path):
            bucket, name = split_gcs_path(path)
            blob = gcs_client().bucket(bucket).blob(name)
            with_retries(lambda: blob.delete(retry=None))
        else:
            FileSystems.delete([path])


def remove_tree(folder: str) -> None:
    """Delete a folder (or gs:// prefix) and everything below it; nothing when it does not exist."""
    if is_local(folder):
        shutil.rmtree(folder, ignore_errors=True)
    else:
        delete(list_files(literal(folder.rstrip("/")) + "/**"))


def exists(path: str) -> bool:
    return os.path.exists(path) if is_local(path) else with_retries(lambda: FileSystems.exists(path))


def size(path: str) -> Optional[int]:
    """The file's size in bytes, or None when there is no such file."""
    if is_local(path):
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return None
    filesystem = FileSystems.get_filesystem(path)
    if not with_retries(lambda: filesystem.exists(path)):
        return None
    return with_retries(lambda: filesystem.metadata(path).size_in_bytes)


def remove_empty_folder(folder: str) -> None:
    """Remove a local folder left empty; object stores have no empty folders to remove."""
    if is_local(folder):
        try:
            os.rmdir(folder)
        except OSError:
            pass  # not empty (another run is staging there) or already gone


def open_records(path: str):
    """A record file's bytes; `.gz` files (some tools compress) are decompressed on the way."""
    return FileSystems.open(path, compression_type=CompressionTypes.AUTO)
