"""Fuzzing the readers of untrusted input: checkpoint files, recipes and each task's data files. Whatever the
input, the only exception that may come out is UsageError (the one clean line of the CLI). Derandomized, so a
run is the same on every machine."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmtext import checkpoint as ckpt
from lstmtext.config import build_recipe, resolve_recipe
from lstmtext.errors import UsageError
from lstmtext.tasks import TASKS, get_task

FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _write(data: bytes, suffix: str = ".ckpt") -> Path:
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as f:
        f.write(data)
    return Path(f.name)


def _only_usage_errors(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except UsageError:
        return None


def _checkpoint(header, body: bytes) -> bytes:
    data = json.dumps(header).encode()
    return struct.pack("<Q", len(data)) + data + body


@FUZZ
@given(st.binary(max_size=300) | st.binary(max_size=200).map(lambda b: struct.pack("<Q", len(b)) + b))
def test_random_bytes_as_a_checkpoint(data):
    path = _write(data)
    try:
        _only_usage_errors(ckpt.load, path)
    finally:
        path.unlink()


tensor_entries = st.dictionaries(
    st.text(max_size=6),
    json_values
    | st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(["F32", "F16", "I64", "U8", "F64", "X"]),
            "shape": st.lists(st.integers(-2, 6), max_size=3),
            "data_offsets": st.lists(st.integers(-4, 80), min_size=2, max_size=2),
        }
    ),
    max_size=3,
)
metadata = st.fixed_dictionaries(
    {},
    optional={
        "format_version": st.sampled_from([0, 1, 2, "1", None]),
        "task": st.sampled_from([*TASKS, "poetry", 3]),
        "recipe": json_values,
        "tokenizer": st.sampled_from(["", "eA==", "@@", 5]),
        "kind": st.sampled_from(["resume", "model"]),
        "labels": json_values,
        "loop": json_values,
        "optimizer": json_values,
    },
)


@FUZZ
@given(tensor_entries, metadata | json_values, st.binary(max_size=64))
def test_random_json_metadata_in_a_checkpoint(tensors, meta, body):
    header = {"__metadata__": {"lstmtext": json.dumps(meta)}, **{k: v for k, v in tensors.items() if k}}
    path = _write(_checkpoint(header, body))
    try:
        _only_usage_errors(ckpt.load, path)
    finally:
        path.unlink()


toml_keys = st.sampled_from(
    ["encoder", "train", "data", "tokenizer", "tune", "sentiment", "ner", "lm", "translate", "task", "other"]
)
toml_fields = st.sampled_from(
    ["hidden_dim", "embed_dim", "cell", "lr", "epochs", "max_time", "vocab_size", "beam", "seed", "precision", "x"]
    + ["space", "trials", "trial_time"]
)
toml_values = st.sampled_from(
    ["1", "0", "-3", "1e400", "nan", "inf", '"lstm"', '"gru"', '"5m"', "true", "[1, 2]", "{a = 1}", '"x"', "2.5"]
)


@st.composite
def toml_text(draw):
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        lines.append(f"[{draw(toml_keys)}]")
        for _ in range(draw(st.integers(0, 3))):
            lines.append(f"{draw(toml_fields)} = {draw(toml_values)}")
    if draw(st.booleans()):
        lines.append(draw(st.text(max_size=20)))
    return "\n".join(lines)


@FUZZ
@given(st.sampled_from(list(TASKS)), toml_text())
def test_random_toml_recipes(task, text):
    path = _write(text.encode("utf-8", "surrogatepass"), ".toml")
    try:
        _only_usage_errors(resolve_recipe, task, path, [])
    finally:
        path.unlink()


@FUZZ
@given(st.sampled_from(list(TASKS)), st.dictionaries(toml_keys, json_values, max_size=4))
def test_random_stored_recipes(task, stored):
    """A checkpoint's recipe, as build_recipe reads it back."""
    _only_usage_errors(build_recipe, task, get_task(task).Options, get_task(task).DEFAULTS, stored=stored)


DATA_FILES = [("sentiment", ".tsv"), ("sentiment", ".jsonl"), ("ner", ".conll"), ("ner", ".jsonl")]
DATA_FILES += [("lm", ".txt"), ("lm", ".jsonl"), ("translate", ".tsv"), ("translate", ".jsonl")]
line = st.text(max_size=30) | st.sampled_from(["text\tlabel", "a\tb", "-DOCSTART- O", "x O", '{"text": 1}', "{}"])


@pytest.mark.parametrize("task, suffix", DATA_FILES, ids=[t + s for t, s in DATA_FILES])
def test_random_lines_to_each_reader(task, suffix):
    mod = get_task(task)
    opts = mod.Options()

    @settings(max_examples=100, deadline=None, derandomize=True, database=None)
    @given(st.lists(line, max_size=6) | st.binary(max_size=60))
    def check(content):
        data = content if isinstance(content, bytes) else "\n".join(content).encode("utf-8", "surrogatepass")
        path = _write(data, suffix)
        try:
            _only_usage_errors(mod.read, str(path), opts, "train")
        finally:
            path.unlink()

    check()
