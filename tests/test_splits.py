"""transforms/splits.py: --splits parsing and the split/shard assignment (docs/design.md section 4)."""
import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transforms import splits as splits_module
from transforms.splits import SplitError, assign_shard, assign_split, parse_splits

KEYS = [f"images/img_{index:05d}.jpg" for index in range(10000)]
DEFAULT = (("train", 0.8), ("val", 0.1), ("test", 0.1))


# --- parse_splits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train=0.8,val=0.1,test=0.1", DEFAULT),
        ("train=1", (("train", 1.0),)),
        (" train=0.7 , val=0.3 ", (("train", 0.7), ("val", 0.3))),
        ("train=0.5,eval_2=0.5", (("train", 0.5), ("eval_2", 0.5))),
        ("train=1.0,val=0,test=0.0", (("train", 1.0), ("val", 0.0), ("test", 0.0))),
        ("a=0.1,b=0.2,c=0.3,d=0.4", (("a", 0.1), ("b", 0.2), ("c", 0.3), ("d", 0.4))),
        ("t=.25,v=75e-2", (("t", 0.25), ("v", 0.75))),
    ],
)
def test_parse_valid_splits(text, expected):
    assert parse_splits(text) == expected


def test_ten_tenths_add_up_to_one_despite_rounding():
    text = ",".join(f"s{index}=0.1" for index in range(10))
    assert sum(fraction for _, fraction in parse_splits(text)) != 1.0  # 0.9999999999999999
    assert [name for name, _ in parse_splits(text)] == [f"s{index}" for index in range(10)]


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "is not NAME=FRACTION"),
        ("train", "is not NAME=FRACTION"),
        ("train=0.8,", "is not NAME=FRACTION"),
        ("train=0.8,,val=0.2", "is not NAME=FRACTION"),
        ("train:0.8,val:0.2", "is not NAME=FRACTION"),
        ("Train=0.8,val=0.2", "must be lower-case"),
        ("=1", "must be lower-case"),
        ("1train=1", "must be lower-case"),
        ("train-set=1", "must be lower-case"),
        ("train =1", "must be lower-case"),
        ("train=abc", "not a number"),
        ("train=", "not a number"),
        ("train=80%,val=20%", "not a number"),
        ("train=1.5,val=-0.5", "outside [0, 1]"),
        ("train=-0.2,val=1.2", "outside [0, 1]"),
        ("train=nan", "outside [0, 1]"),
        ("train=inf", "outside [0, 1]"),
        ("train=0.5,train=0.5", "named twice"),
        ("train=0.8,val=0.1", "add up to 0.9"),
        ("train=0.8,val=0.3", "add up to 1.1"),
        ("train=0,val=0", "add up to 0"),
    ],
)
def test_parse_invalid_splits_raises_split_error(text, words):
    with pytest.raises(SplitError) as raised:
        parse_splits(text)
    assert words in str(raised.value)


def test_split_error_is_a_value_error():
    assert issubclass(SplitError, ValueError)


# --- assign_split -------------------------------------------------------------------------------------


def test_assign_split_is_deterministic_and_returns_a_configured_name():
    first = [assign_split(key, 0, DEFAULT) for key in KEYS[:500]]
    assert first == [assign_split(key, 0, DEFAULT) for key in KEYS[:500]]
    assert set(first) <= {"train", "val", "test"}


def test_assign_split_is_roughly_proportional_on_10000_keys():
    counts = collections.Counter(assign_split(key, 0, DEFAULT) for key in KEYS)
    assert set(counts) == {"train", "val", "test"}
    for name, fraction in DEFAULT:
        assert abs(counts[name] / len(KEYS) - fraction) < 0.03, counts


def test_seed_changes_the_assignment_but_not_the_proportions():
    seed0 = [assign_split(key, 0, DEFAULT) for key in KEYS]
    seed7 = [assign_split(key, 7, DEFAULT) for key in KEYS]
    changed = sum(a != b for a, b in zip(seed0, seed7))
    # Independent draws disagree with probability 1 - (0.64 + 0.01 + 0.01) = 0.34.
    assert 0.30 < changed / len(KEYS) < 0.38
    assert abs(seed7.count("train") / len(KEYS) - 0.8) < 0.03


def test_a_keys_split_does_not_change_when_the_dataset_grows_or_the_shard_count_changes():
    small = {key: assign_split(key, 3, DEFAULT) for key in KEYS[:100]}
    for num_shards in (1, 2, 7, 64):
        # what the writer does: shard by key, split by content, for every image of a bigger dataset
        placed = {key: (assign_shard(key, 3, num_shards), assign_split(key, 3, DEFAULT)) for key in KEYS}
        assert {key: placed[key][1] for key in small} == small


def test_split_and_shard_are_independent():
    # If both came from the same hash value, some shards would hold only one split.
    by_shard = collections.defaultdict(collections.Counter)
    for key in KEYS:
        by_shard[assign_shard(key, 0, 10)][assign_split(key, 0, DEFAULT)] += 1
    for shard, counts in by_shard.items():
        total = sum(counts.values())
        assert abs(counts["train"] / total - 0.8) < 0.06, (shard, counts)
        assert abs(counts["val"] / total - 0.1) < 0.05, (shard, counts)


@pytest.mark.parametrize(
    "splits, never",
    [
        ((("train", 0.5), ("val", 0.0), ("test", 0.5)), "val"),
        ((("val", 0.0), ("train", 0.6), ("test", 0.4)), "val"),
        ((("train", 0.7), ("test", 0.3), ("val", 0.0)), "val"),
        ((("train", 1.0), ("val", 0.0)), "val"),
    ],
)
def test_zero_fraction_split_is_never_chosen(splits, never):
    chosen = collections.Counter(assign_split(key, 1, splits) for key in KEYS)
    assert never not in chosen
    assert set(chosen) == {name for name, fraction in splits if fraction > 0}


def test_point_past_a_rounded_down_total_goes_to_the_last_non_empty_split(monkeypatch):
    monkeypatch.setattr(splits_module, "_unit_interval", lambda *parts: 0.9999999999999999)
    tenths = parse_splits(",".join(f"s{index}=0.1" for index in range(10)))
    assert assign_split("k", 0, tenths) == "s9"
    assert assign_split("k", 0, (("a", 0.5), ("b", 0.4999999), ("c", 0.0))) == "b"


# --- assign_shard -------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_shards", [1, 2, 3, 10, 1000])
def test_assign_shard_in_range_and_uses_every_shard(num_shards):
    shards = [assign_shard(key, 5, num_shards) for key in KEYS]
    assert all(isinstance(shard, int) and 0 <= shard < num_shards for shard in shards)
    if num_shards <= 10:
        counts = collections.Counter(shards)
        assert set(counts) == set(range(num_shards))
        assert max(counts.values()) - min(counts.values()) < 0.1 * len(KEYS) / num_shards + 100


def test_assign_shard_is_deterministic_and_seeded():
    assert [assign_shard(key, 0, 16) for key in KEYS[:200]] == [assign_shard(key, 0, 16) for key in KEYS[:200]]
    assert [assign_shard(key, 0, 16) for key in KEYS[:200]] != [assign_shard(key, 1, 16) for key in KEYS[:200]]


class _AllOnes:
    @staticmethod
    def sha256(data):
        class _Digest:
            @staticmethod
            def digest():
                return b"\xff" * 32

        return _Digest()


def test_assign_shard_stays_in_range_for_the_largest_digest(monkeypatch):
    monkeypatch.setattr(splits_module, "hashlib", _AllOnes)
    assert assign_shard("any key", 0, 4) < 4


# --- across processes ---------------------------------------------------------------------------------

_CHILD = """
import sys
from transforms.splits import assign_shard, assign_split
splits = (("train", 0.8), ("val", 0.1), ("test", 0.1))
for index in range(300):
    key = f"images/img_{index:05d}.jpg"
    print(assign_split(key, 11, splits), assign_shard(key, 11, 7))
"""


def test_same_assignment_in_separate_processes_with_different_hash_seeds():
    root = Path(__file__).resolve().parents[1]
    outputs = []
    for hash_seed in ("1", "2"):
        environment = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(root))
        result = subprocess.run(
            [sys.executable, "-c", _CHILD], cwd=root, env=environment, capture_output=True, text=True, check=True
        )
        outputs.append(result.stdout)
    expected = "".join(
        f"{assign_split(key, 11, DEFAULT)} {assign_shard(key, 11, 7)}\n" for key in KEYS[:300]
    )
    assert outputs == [expected, expected]
