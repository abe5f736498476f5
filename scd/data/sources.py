"""Train/dev/test splits from a directory of official files or from the Hugging Face hub.

Data sets without a labeled test set (CommonsenseQA, CREAK, CoS-E) are used as the field does: the official dev
file serves as test (map ``test`` to it) and dev is held out from train (map ``dev`` to None).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from scd.data.example import Example
from scd.data.formats import DataFormat, get_format
from scd.data.perturb import stable_hash

SPLIT_NAMES = ("train", "dev", "test")


def load_splits(
    fmt: str,
    path: str | Path | None = None,
    hub_id: str | None = None,
    *,
    splits: Mapping[str, str | None],
    dev_size: int,
    limit: int | None = None,
    seed: int = 0,
    test_size: int | None = None,
    hub_config: str | None = None,
) -> dict[str, list[Example]]:
    """Load the "train", "dev" and "test" splits of a data set in format ``fmt``.

    ``splits`` maps each split to a file name in the directory ``path`` or a split name of the hub data set
    ``hub_id`` (with config ``hub_config``). A dev or test split mapped to None (or left out) is held out from
    train: ``dev_size`` examples for dev and ``test_size`` (default ``dev_size``) for test, chosen by a hash of
    (``seed``, id), so the choice does not depend on file order. ``limit`` then caps every split to a
    deterministic subset of that many examples, kept in file order.
    """
    data_format = get_format(fmt)
    if (path is None) == (hub_id is None):
        raise ValueError(f"give exactly one of path (a directory) or hub_id, got path={path!r}, hub_id={hub_id!r}")
    unknown = sorted(set(splits) - set(SPLIT_NAMES))
    if unknown:
        raise ValueError(f"unknown split names {unknown} in splits; known: {', '.join(SPLIT_NAMES)}")
    sources = {name: splits.get(name) for name in SPLIT_NAMES}
    if sources["train"] is None:
        raise ValueError("splits['train'] must name a file or hub split: dev and test are held out from train")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of examples or None, got {limit}")

    loaded: dict[str, list[Example]] = {}
    for name, source in sources.items():
        if source is None:
            continue
        if path is not None:
            loaded[name] = data_format.read(Path(path) / source)
        else:
            loaded[name] = _load_hub(data_format, hub_id, hub_config, source)

    held_out = {name: dev_size if name == "dev" or test_size is None else test_size
                for name in ("test", "dev") if sources[name] is None}
    if held_out:
        loaded.update(_hold_out(loaded["train"], held_out, seed))

    if limit is not None:
        loaded = {name: _subset(examples, limit, seed) for name, examples in loaded.items()}
    for name in SPLIT_NAMES:
        if not loaded[name]:
            raise ValueError(f"split {name!r} of {fmt} is empty after loading (check dev_size/test_size)")
    return {name: loaded[name] for name in SPLIT_NAMES}


def _rank(example: Example, seed: int) -> int:
    # A key of its own so split membership is not correlated with the perturbed answer (hashed from the bare id).
    return stable_hash(seed, f"split/{example.id}")


def _hold_out(train: list[Example], sizes: dict[str, int], seed: int) -> dict[str, list[Example]]:
    """Move ``sizes[name]`` examples of train into each named split; the rest stays train, all in file order."""
    if any(size < 0 for size in sizes.values()):
        raise ValueError(f"held-out split sizes must not be negative, got {sizes}")
    total = sum(sizes.values())
    if total >= len(train):
        raise ValueError(f"cannot hold out {total} examples ({sizes}) from only {len(train)} train examples")
    ranked = sorted(range(len(train)), key=lambda index: _rank(train[index], seed))
    owner: dict[int, str] = {}
    start = 0
    for name, size in sizes.items():
        owner.update((index, name) for index in ranked[start : start + size])
        start += size
    result: dict[str, list[Example]] = {"train": [], **{name: [] for name in sizes}}
    for index, example in enumerate(train):
        result[owner.get(index, "train")].append(example)
    return result


def _subset(examples: list[Example], limit: int, seed: int) -> list[Example]:
    """The ``limit`` examples ranked first by hash, in file order (the first lines may be sorted by label)."""
    if len(examples) <= limit:
        return examples
    keep = set(sorted(range(len(examples)), key=lambda index: _rank(examples[index], seed))[:limit])
    return [example for index, example in enumerate(examples) if index in keep]


def _load_hub(data_format: DataFormat, hub_id: str, hub_config: str | None, hub_split: str) -> list[Example]:
    try:
        import datasets  # optional dependency, only for hub loading
    except ImportError as err:
        raise ImportError("loading a data set from the Hugging Face hub needs the `datasets` library: "
                          "pip install datasets") from err
    rows = datasets.load_dataset(hub_id, hub_config, split=hub_split)
    config = f" config {hub_config!r}" if hub_config else ""
    source = f"hub dataset {hub_id!r}{config} split {hub_split!r}"
    return data_format.normalize_rows(source, ((f"row {index}", row) for index, row in enumerate(rows)))
