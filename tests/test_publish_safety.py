"""What a run may touch and what survives it: paths taken literally, one run at a time, a publish that a
kill cannot leave half done, staged files checked before anything moves, full and read-only folders."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from tests import image_factory as make
from tests.small_datasets import digest, voc_dataset
from tests.conftest import REPO, read_examples, run_cli
from transforms.incremental import lock
from transforms.incremental import manifest as state
from transforms import storage
from transforms.outcomes import PublishFailed
from transforms.beam.publish import check_staged

def convert(annotations, images, output, *flags, check_exit=0):
    return run_cli("convert", "--format", "voc", "--annotations", annotations, "--images", images,
                   "--output", output, "--splits", "train=0.5,val=0.5", *flags, check_exit=check_exit)


def patched_cli(patch: str, *args) -> subprocess.CompletedProcess:
    """The real CLI in a new process with `patch` (Python source) run first: a fault injected at one place."""
    program = textwrap.dedent(patch) + "\nimport sys\nfrom pipeline.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", program, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)


def published(folder: Path) -> dict:
    """The published files' contents, with the folder's own path and summary.json's timing left out."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes().replace(str(folder).encode(), b"OUTPUT")
            files[str(path.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    summary = json.loads((folder / "summary.json").read_text().replace(str(folder), "OUTPUT"))
    summary.pop("durations")
    files.pop("summary.json")
    files.pop("README.md")  # quotes the duration
    return {**files, "summary": summary}


# --- paths are literal ------------------------------------------------------------------------------


@pytest.mark.slow
def test_glob_characters_in_output_images_and_annotations_are_taken_literally(tmp_path):
    annotations, images = voc_dataset(tmp_path / "src", 6)
    neighbour = tmp_path / "o1"
    other = tmp_path / "o_other"
    convert(annotations, images, neighbour)
    convert(annotations, images, other)
    before = {folder: digest(folder) for folder in (neighbour, other)}

    odd_annotations, odd_images = voc_dataset(tmp_path / "odd src", 4, label="dog", images="im[g]s", annotations="ann[1]")
    voc_dataset(tmp_path / "odd src", 9, label="cow", images="imgs", annotations="ann1")  # what the patterns would match
    for output in (tmp_path / "o[1]", tmp_path / "o*"):
        result = convert(odd_annotations, odd_images, output)
        assert "Wrote 4 of 4 images" in result.stdout, result.stdout
        shards = sorted(str(path) for path in output.glob("*.tfrecord-*"))  # Path.glob: the folder taken literally
        examples = read_examples(shards)
        assert len(examples) == 4 and all(example["image/object/class/text"] == [b"dog"] for example in examples)
        assert len(shards) == 2 and all(os.path.getsize(path) > 0 for path in shards)
        verified = run_cli("verify", output, "--json", check_exit=0)
        assert json.loads(verified.stdout)["records"] == 4
    assert {folder: digest(folder) for folder in (neighbour, other)} == before


def test_literal_patterns_match_only_themselves(tmp_path):
    for name in ("o[1]", "o1", "o*", "o_other", "o?"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a-train.tfrecord-00000").write_text(name)
    for name in ("o[1]", "o*", "o?"):
        found = storage.list_files(storage.literal(str(tmp_path / name)) + "/*.tfrecord-*")
        assert found == [str(tmp_path / name / "a-train.tfrecord-00000")]
    assert storage.list_files(storage.literal(str(tmp_path / "o[1]" / "a-train.tfrecord-00000"))) == [
        str(tmp_path / "o[1]" / "a-train.tfrecord-00000")]


# --- one run at a time --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_plain_run_is_refused_while_another_run_holds_the_lock(tmp_path):
    annotations, images = voc_dataset(tmp_path / "src", 4)
    output = tmp_path / "out"
    convert(annotations, images, output)
    published = digest(output)
    token = lock.acquire(str(output), 24)  # this test process: a live run on this host
    try:
        result = convert(annotations, images, output, "--seed", "5", check_exit=2)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: another run is writing this output")
        assert digest(output) == {**published, ".lock": digest(output)[".lock"]}
    finally:
        lock.release(str(output), token)
    convert(annotations, images, output, "--seed", "5")
    assert not (output / ".lock").exists() and not (output / ".staging").exists()


# --- a publish that a kill cannot leave half done --------------------------------------------------


def _staged_publish(tmp_path: Path):
    """An OUTPUT with an old dataset (its manifest names its files) and a staged new one; (output, plan args)."""
    output, staging = tmp_path / "out", tmp_path / "out" / ".staging" / "run"
    staging.mkdir(parents=True)
    old = {"d-train.tfrecord-00000-of-00002": "old a", "d-train.tfrecord-00001-of-00002": "old b",
           "summary.json": "old summary", "manifest.json": "old manifest", "neighbour.txt": "not ours"}
    for name, text in old.items():
        (output / name).write_text(text)
    new = {"d-train.tfrecord-00000-of-00001": "new a", "label_map.pbtxt": "new map", "summary.json": "new summary",
           "manifest.json": "new manifest"}
    for name, text in new.items():
        (staging / name).write_text(text)
    moves = [(str(staging / name), name) for name in new]
    deletes = [str(output / name) for name in ("d-train.tfrecord-00000-of-00002", "d-train.tfrecord-00001-of-00002")]
    return output, staging, moves, deletes, old, new


def test_a_publish_killed_at_any_step_leaves_the_old_dataset_or_a_journal_the_next_run_finishes(tmp_path):
    class Killed(BaseException):
        pass

    real = {"move": storage.move, "delete": storage.delete}
    files = lambda output: {path.name: path.read_text() for path in output.iterdir() if path.is_file()}
    for kill_at in range(1, 100):
        steps = []

        def faulty(operation):
            def step(*args):
                steps.append(operation)
                if len(steps) == kill_at:
                    raise Killed()
                return real[operation](*args)
            return step

        output, staging, moves, deletes, old, new = _staged_publish(tmp_path / f"kill-{kill_at}")
        storage.move, storage.delete = faulty("move"), faulty("delete")
        try:
            state.publish(str(output), str(staging), moves, deletes=deletes)
            killed = False
        except Killed:
            killed = True
        finally:
            storage.move, storage.delete = real["move"], real["delete"]
        journaled = (output / state.STATE / state.JOURNAL).exists()
        if killed and not journaled:
            assert files(output) == old, kill_at  # killed before the journal was in place: untouched
        state.recover(str(output))  # what the next run does first, under the lock
        assert files(output) == (old if killed and not journaled else {**new, "neighbour.txt": "not ours"}), kill_at
        if not killed:
            assert kill_at > 5  # every step of a whole publish was a place to die
            break


@pytest.mark.slow
def test_a_plain_run_killed_while_it_publishes_is_finished_by_the_next(tmp_path):
    annotations, images = voc_dataset(tmp_path / "src", 8)
    output, clean = tmp_path / "out", tmp_path / "clean"
    convert(annotations, images, output, "--seed", "1")
    convert(annotations, images, clean, "--seed", "2")
    kill_on_third_move = """
        import os, signal
        from transforms import storage
        real_move, moves = storage.move, []
        def move(sources, destinations):
            moves.append(sources)
            if len(moves) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_move(sources, destinations)
        storage.move = move
    """
    result = patched_cli(kill_on_third_move, "convert", "--format", "voc", "--annotations", annotations, "--images",
                         images, "--output", output, "--splits", "train=0.5,val=0.5", "--seed", "2")
    assert result.returncode == -signal.SIGKILL
    assert (output / state.STATE / state.JOURNAL).exists()
    verified = run_cli("verify", output)
    assert verified.returncode == 1 and "publish_interrupted" in verified.stdout, verified.stdout

    convert(annotations, images, output, "--seed", "2")  # takes the stale lock, finishes the journal, runs anew
    assert published(output) == published(clean)
    assert not (output / ".staging").exists() and not (output / ".lock").exists()
    run_cli("verify", output, check_exit=0)


# --- staged files are checked before anything moves -----------------------------------------------


def test_a_missing_or_short_staged_file_fails_the_publish(tmp_path):
    staged = tmp_path / "d-train.tfrecord-00000-of-00001"
    staged.write_bytes(b"x" * (100 + 16 * 2))
    change = state.FileChange("new", 0, str(staged), "train", records=2, bytes=100)
    check_staged([change])
    staged.write_bytes(b"x" * 50)
    with pytest.raises(PublishFailed, match="holds 50 bytes, its writer wrote 132"):
        check_staged([change])
    staged.unlink()
    with pytest.raises(PublishFailed, match="is not in the staging folder"):
        check_staged([change])


@pytest.mark.slow
def test_a_staged_shard_cut_short_publishes_nothing(tmp_path):
    annotations, images = voc_dataset(tmp_path / "src", 6)
    output = tmp_path / "out"
    convert(annotations, images, output)
    published = digest(output)
    cut_after_close = """
        import os
        from transforms.beam import write
        real_close = write._ShardFiles.close
        def close(self):
            real_close(self)
            for split in self.counts:
                path = self.path(split)
                os.truncate(path, os.path.getsize(path) // 2)
        write._ShardFiles.close = close
    """
    result = patched_cli(cut_after_close, "convert", "--format", "voc", "--annotations", annotations, "--images",
                         images, "--output", output, "--splits", "train=0.5,val=0.5", "--seed", "3")
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: nothing was published: ")
    assert "its writer wrote" in result.stderr
    assert digest(output) == published  # no staging, no lock, the old dataset


# --- full and read-only folders -----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KiB tmpfs mounted for the test (root only; CI runs as root)."""
    mount_point = tmp_path / "small disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount_point)], capture_output=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.slow
def test_a_full_output_disk_is_one_line_and_keeps_the_published_dataset(tmp_path, small_disk):
    annotations, images = voc_dataset(tmp_path / "small", 2)
    output = small_disk / "out"
    convert(annotations, images, output)
    published = digest(output)
    big_annotations, big_images = voc_dataset(tmp_path / "big", 12, width=640)
    for path in big_images.iterdir():  # noisy pictures: JPEG cannot squeeze them under the disk's size
        noise = Image.frombytes("RGB", (640, 480), random.Random(path.name).randbytes(640 * 480 * 3))
        path.write_bytes(make.encode(noise, "JPEG", quality=95))
    result = convert(big_annotations, big_images, output, check_exit=1)
    assert result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert result.stderr.startswith(f"error: no space left in --output {output}"), result.stderr
    assert "nothing was published" in result.stderr
    assert digest(output) == published  # the failed run's staging is gone too
    convert(annotations, images, output, "--seed", "4")  # and the next run has the room it needs


@pytest.mark.slow
def test_a_full_tmpdir_is_one_line_that_names_it(tmp_path, small_disk):
    annotations, images = voc_dataset(tmp_path / "src", 4)
    (small_disk / "filler").write_bytes(b"\0" * (300 * 1024 - 4096 * 2))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "convert", "--format", "voc", "--annotations", str(annotations),
         "--images", str(images), "--output", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(small_disk)},
    )
    assert result.returncode in (1, 2), result.stderr[-3000:]
    assert result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert "TMPDIR" in result.stderr and str(small_disk) in result.stderr
    assert not list((tmp_path / "out").glob("*.tfrecord-*"))


@pytest.mark.slow
def test_a_read_only_output_is_one_line(tmp_path, small_disk):
    annotations, images = voc_dataset(tmp_path / "src", 2)
    output = small_disk / "out"
    convert(annotations, images, output)
    published = digest(output)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = convert(annotations, images, output, "--seed", "9", check_exit=2)
    assert result.stderr.count("\n") == 1 and f"cannot take the lock in {output}" in result.stderr
    assert "Read-only file system" in result.stderr
    assert digest(output) == published
