"""Where data comes from: named datasets (``conll2003:train``) resolved against a data directory, and
``hf:NAME[:CONFIG][@SPLIT]`` sources loaded from the Hugging Face hub, failing fast when it is unreachable."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from lstmtext.errors import UsageError

# dataset → ({split: its file, or PREFIX for translation's PREFIX.de/PREFIX.en, in DATA_DIR/DATASET/}, the hf:
# source to read when no data directory holds it, {split: that split's name on the hub}). The files are named as
# each dataset is distributed.
DATASETS: dict[str, tuple[dict[str, str], str, dict[str, str]]] = {
    "sst2": ({"train": "train.tsv", "dev": "dev.tsv"}, "hf:stanfordnlp/sst2", {"train": "train", "dev": "validation"}),
    "imdb": (
        {"train": "train.jsonl.gz", "test": "test.jsonl.gz"},
        "hf:stanfordnlp/imdb",
        {"train": "train", "test": "test"},
    ),
    "conll2003": (
        {"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"},
        "hf:eriktks/conll2003",
        {"train": "train", "dev": "validation", "test": "test"},
    ),
    "wikitext2": (
        {"train": "wiki.train.tokens", "dev": "wiki.valid.tokens", "test": "wiki.test.tokens"},
        "hf:Salesforce/wikitext:wikitext-2-v1",
        {"train": "train", "dev": "validation", "test": "test"},
    ),
    "multi30k": (
        {"train": "train", "dev": "val", "test": "test_2016_flickr"},
        "hf:bentrevett/multi30k",
        {"train": "train", "dev": "validation", "test": "test"},
    ),
}
DATA_ENV = "LSTMTEXT_DATA"
_NAMED: dict[str, str] = {}  # hf: source → the named dataset it stands for, for load_hf's error line


def _named(source: str) -> tuple[str, str] | None:
    """(dataset, split) when ``source`` is written DATASET:SPLIT rather than as a path or an hf: source. The
    name takes two characters or more, so a Windows path (C:\\file) stays a path."""
    m = re.fullmatch(r"([A-Za-z0-9][\w-]+):([\w-]*)", source)
    if m is None or is_hf(source) or Path(source).exists():
        return None
    return m.group(1), m.group(2)


def resolve_source(source: str) -> str:
    """A data source as the readers take it: a path, a PREFIX (translation) or ``hf:NAME``. ``DATASET:SPLIT``
    (``conll2003:train``) is looked up in the data directory named by $LSTMTEXT_DATA (``--data-dir``), laid out
    as DATASETS says; when no data directory holds it, it is read from the Hugging Face hub."""
    named = _named(source) if source else None
    if named is None:
        return source
    dataset, split = named
    if dataset not in DATASETS:
        raise UsageError(
            f"{source}: unknown dataset '{dataset}' (known: {', '.join(DATASETS)}); or pass a file path or hf:NAME"
        )
    files, hf, hf_splits = DATASETS[dataset]
    if split not in files:
        raise UsageError(f"{source}: {dataset} has no split '{split}' (splits: {', '.join(files)})")
    root = os.environ.get(DATA_ENV, "")
    if root:
        if not Path(root).is_dir():
            raise UsageError(f"{root}: not a folder (the data directory, from --data-dir or ${DATA_ENV})")
        path = Path(root) / dataset / files[split]
        if path.exists() or any(path.parent.glob(path.name + ".*")):
            return str(path)
    resolved = f"{hf}@{hf_splits[split]}"
    _NAMED[resolved] = (
        f"{source} is not in {root}/{dataset}"
        if root
        else f"no data directory holds {source} (set one with --data-dir or ${DATA_ENV})"
    )
    return resolved


def _reported(dataset: str) -> str:
    """The split a dataset's scores are reported on: its test split, else (SST-2) its dev split."""
    files = DATASETS[dataset][0]
    return "test" if "test" in files else "dev"


def reported_split(source: str) -> str | None:
    """Why ``source`` is a split kept for reporting scores (a test split), or None: a named dataset's reported
    split (``conll2003:test``; ``sst2:dev``, as SST-2's test labels are not public), that split's file in the
    data directory, an ``hf:`` source ``@test``, or a file or PREFIX whose name says test (``eng.testb``,
    ``test.tsv``, ``test_2016_flickr``)."""
    named = _named(source) if source else None
    if named is not None:
        dataset, split = named
        if dataset in DATASETS and split == _reported(dataset):
            return f"{source} is the split {dataset} scores are reported on"
        return None
    if is_hf(source):
        split = source.partition("@")[2]
        return f"{source} is a test split" if split.lower().startswith("test") else None
    path = Path(source)
    root = os.environ.get(DATA_ENV, "")
    for dataset in DATASETS if root and path.exists() else ():
        reported = Path(root) / dataset / DATASETS[dataset][0][_reported(dataset)]
        if any(p.exists() and p.samefile(path) for p in (reported, *reported.parent.glob(reported.name + ".*"))):
            return f"{source} is the split {dataset} scores are reported on ({dataset}:{_reported(dataset)})"
    words = re.split(r"[._\-\s]+", path.name.lower())
    if any(w in ("test", "testb") for w in words) or path.parent.name.lower() == "test":
        return f"{source}: its name marks a test split"
    return None


def is_hf(source: str) -> bool:
    return source.startswith("hf:")


def _hub_reachable(timeout: float = 2.0) -> bool:
    """A TCP connection to the hub within ``timeout`` s (in a thread, since name lookup has no timeout)."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(
                (url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout
            ).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def _go_offline() -> None:
    """The hub clients then answer from their cache at once instead of retrying for tens of seconds. They
    read HF_HUB_OFFLINE when imported, so their imported settings are the ones set."""
    import datasets.config
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True


def load_hf(source: str, split: str, streaming: bool = False):
    """``hf:NAME[:CONFIG][@SPLIT]`` → a datasets.Dataset (an IterableDataset read as it downloads, with
    ``streaming``). Unreachable hubs become one clear line."""
    spec = source[3:]
    if "@" in spec:
        spec, split = spec.split("@", 1)
    name, _, config = spec.partition(":")
    try:
        import logging

        for logger in ("huggingface_hub", "datasets", "fsspec", "urllib3", "httpx"):
            logging.getLogger(logger).setLevel(logging.ERROR)
        import datasets
        from datasets.utils.logging import disable_progress_bar

        if not datasets.config.HF_HUB_OFFLINE and not _hub_reachable():
            _go_offline()
        disable_progress_bar()
        datasets.logging.set_verbosity_error()
        ds = datasets.load_dataset(name, config or None, **({"streaming": True} if streaming else {}))
    except Exception as e:  # the hub client raises many kinds: ConnectionError, OfflineModeIsEnabled, …
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = f"{_NAMED[source]}; " if source in _NAMED else ""
        raise UsageError(
            f"{source}: cannot load this Hugging Face dataset ({type(e).__name__}: {first[:160]}); "
            f"{hint}if you are offline, pass a local file instead"
        ) from None
    if split not in ds:
        fallback = {"validation": ("validation", "valid", "dev", "test"), "test": ("test", "validation")}
        for alt in fallback.get(split, ()):
            if alt in ds:
                split = alt
                break
        else:
            raise UsageError(f"{source}: has no split '{split}' (splits: {', '.join(ds)})")
    return ds[split]
