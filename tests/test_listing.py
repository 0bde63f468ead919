"""The streamed listing finds exactly what Beam's FileSystems.match finds, one file at a time."""
from __future__ import annotations

import os

import pytest
from apache_beam.io.filesystems import FileSystems

from transforms import storage

PATTERNS = [
    ["/**.xml"], ["/*.xml"], ["/a/"], ["/**"], ["/x.xml"], ["/fifo.xml"], ["/**.xml", "/*.xml"], ["/nope/**"],
    ["/a/*/*.xml"], ["/a/b/[wz].*"], ["/?.xml"], ["/*/*.xml"], ["/c/*/er/*.xml"], ["/c/**/r.xml"],
]


@pytest.fixture
def tree(tmp_path):
    for name in ["x.xml", "a/y.xml", "a/b/z.XML", "a/b/w.xml", "c/q.txt", "c/deep/er/r.xml"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("." * len(name))
    os.symlink(tmp_path / "a", tmp_path / "link")  # a link to a folder is not followed
    os.symlink(tmp_path / "x.xml", tmp_path / "c" / "x-link.xml")  # a link to a file is a file
    os.symlink(tmp_path / "gone.xml", tmp_path / "c" / "dangling.xml")  # skipped, as by Beam
    os.mkfifo(tmp_path / "fifo.xml")  # listed: reading it is refused later, with a reason
    return tmp_path


@pytest.mark.parametrize("patterns", PATTERNS, ids=lambda patterns: ",".join(patterns))
def test_matching_files_finds_what_beam_matches(tree, patterns):
    absolute = [f"{tree}{pattern}" for pattern in patterns]
    expected = {(m.path, m.size_in_bytes) for result in FileSystems.match(absolute) for m in result.metadata_list}
    found = list(storage.matching_files(absolute))
    assert len(found) == len(set(found))  # a file two patterns match is listed once
    assert set(found) == expected



def test_matching_files_on_gcs_finds_what_beam_matches():
    from tests.gcs_emulator import running_emulator

    with running_emulator("od-listing") as gcs:
        for name in ["ann/a.xml", "ann/sub/b.xml", "ann/c.txt", "annex/d.xml", "img/x.jpg"]:
            gcs.upload_bytes(name, b"." * len(name))
        storage._local.__dict__.clear()  # clients made now, for this emulator
        for patterns in (["ann/**.xml"], ["ann/*.xml"], ["ann/a.xml"], ["ann/missing.xml"], ["ann**", "ann/**.xml"]):
            absolute = [f"gs://od-listing/{pattern}" for pattern in patterns]
            expected = {(m.path, m.size_in_bytes) for result in FileSystems.match(absolute) for m in result.metadata_list}
            found = list(storage.matching_files(absolute))
            assert len(found) == len(set(found))
            assert set(found) == expected, patterns
        assert storage.list_files("gs://od-listing/ann/**") == [
            "gs://od-listing/ann/a.xml", "gs://od-listing/ann/c.txt", "gs://od-listing/ann/sub/b.xml"]
        storage._local.__dict__.clear()


def test_a_folder_s_own_files_come_first_and_no_folder_below_the_pattern_is_entered(tree, monkeypatch):
    scanned = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda folder: scanned.append(folder) or scandir(folder))
    first = next(storage.matching_files([f"{tree}/**.xml"]))
    assert os.path.dirname(first[0]) == str(tree) and scanned == [str(tree)]  # found before any subfolder is read
    scanned.clear()
    assert {os.path.basename(path) for path, _ in storage.matching_files([f"{tree}/*/*.xml"])} == {"y.xml", "x-link.xml"}
    assert sorted(scanned) == sorted([str(tree), str(tree / "a"), str(tree / "c")])  # not a/b, c/deep
