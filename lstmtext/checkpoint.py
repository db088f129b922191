"""The one checkpoint format: a safetensors file whose metadata holds a JSON document.

- weights: safetensors, so loading an untrusted checkpoint can never run code (there is no pickle anywhere);
- metadata["lstmtext"]: JSON with format version, task, resolved recipe, labels, the SentencePiece model
  (base64), metrics and provenance;
- written atomically: a temp file in the same folder, fsync, then rename, so a crash mid-save never destroys
  the previous checkpoint.

Reading the metadata needs no torch (``lstmtext info`` stays fast): the safetensors header is an 8-byte
little-endian length followed by that much JSON.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import secrets
import struct
from pathlib import Path
from typing import Any

from lstmtext.errors import UsageError

FORMAT = "lstmtext"
FORMAT_VERSION = 1
_MAX_HEADER = 100 * 1024 * 1024


def atomic_write(path: str | Path, write) -> None:
    """Call write(tmp_path), then move tmp_path over path in one rename. The file gets the mode any new file
    gets (0666 less the umask), also where ``write`` replaces the temp file with one of its own."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
    mode = os.fstat(fd).st_mode & 0o777
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stale_temp_files(path: str | Path) -> list[Path]:
    """Temp files atomic_write left beside ``path`` when its process was killed mid-write."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def save(path: str | Path, state_dict: dict, meta: dict[str, Any], tokenizer_proto: bytes) -> None:
    from safetensors.torch import save_file

    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    meta["tokenizer"] = base64.b64encode(tokenizer_proto).decode("ascii")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={FORMAT: json.dumps(meta)}))


# Bytes per element of each dtype safetensors writes; a header naming any other dtype is refused before loading.
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


def read_header(path: str | Path) -> tuple[dict, dict[str, Any]]:
    """(tensor entries, JSON metadata) of a checkpoint, every field checked against the file before any tensor
    is read: each entry's dtype, shape and byte range must agree and lie inside the file, ranges must not
    overlap, and the metadata must name a known task, a readable format version and a base64 tokenizer.
    A missing, truncated, foreign or malformed file is a UsageError naming what was wrong."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"checkpoint {path}: file not found")
    if path.is_dir():
        raise UsageError(f"checkpoint {path}: is a folder, expected a .ckpt file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise UsageError(f"checkpoint {path}: truncated or not an lstmtext checkpoint ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise UsageError(f"checkpoint {path}: truncated or not an lstmtext checkpoint (bad header)")
        header = _json(f.read(n), path, "header")
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__"), dict):
        raise UsageError(f"checkpoint {path}: not an lstmtext checkpoint (no lstmtext metadata)")
    text = header["__metadata__"].get(FORMAT)
    meta = _json(text.encode("utf-8", "replace"), path, "metadata") if isinstance(text, str) else None
    if not isinstance(meta, dict):
        raise UsageError(f"checkpoint {path}: not an lstmtext checkpoint (no lstmtext metadata)")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    _check_tensors(path, tensors, size - 8 - n)
    check_meta(path, meta)
    return tensors, meta


def read_meta(path: str | Path) -> dict[str, Any]:
    """The JSON metadata, checked (``read_header``)."""
    return read_header(path)[1]


def _json(data: bytes, path: Path, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python's stack
        raise UsageError(f"checkpoint {path}: not an lstmtext checkpoint ({what} is not valid JSON)") from None


def _check_tensors(path: Path, tensors: dict, data_bytes: int) -> None:
    """Every entry well formed, its bytes inside the file and its own, so loading allocates no more than the
    file holds."""
    spans = []
    for name, t in tensors.items():
        bad = f"checkpoint {path}: tensor '{name}' has a malformed entry"
        if not isinstance(t, dict) or not {"dtype", "shape", "data_offsets"} <= t.keys():
            raise UsageError(f"{bad} (expected dtype, shape and data_offsets)")
        dtype, shape, offsets = t["dtype"], t["shape"], t["data_offsets"]
        if not isinstance(dtype, str) or dtype not in _DTYPE_BYTES:
            raise UsageError(f"{bad} (dtype {str(dtype)[:20]!r}; expected one of {', '.join(_DTYPE_BYTES)})")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise UsageError(f"{bad} (shape must be a list of non-negative integers)")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise UsageError(f"{bad} (data_offsets must be two integers)")
        begin, end = offsets
        if not 0 <= begin <= end:
            raise UsageError(f"{bad} (data_offsets {begin}, {end} are out of order)")
        if end > data_bytes:
            raise UsageError(f"checkpoint {path}: truncated (tensor '{name}' ends past the end of the file)")
        numel = 1
        for d in shape:
            numel *= d
        if numel * _DTYPE_BYTES[dtype] != end - begin:
            raise UsageError(f"{bad} (shape {shape} of {dtype} does not fit its {end - begin} bytes)")
        spans.append((begin, end, name))
    spans.sort()
    for (_, end, a), (begin, _, b) in zip(spans, spans[1:]):
        if begin < end:
            raise UsageError(f"checkpoint {path}: tensors '{a}' and '{b}' overlap in the file")


def check_meta(path: Path, meta: dict) -> None:
    from lstmtext.tasks import TASKS

    version = meta.get("format_version")
    if type(version) is not int or version > FORMAT_VERSION:
        raise UsageError(
            f"checkpoint {path}: format version {str(version)[:20]} is newer than this lstmtext reads "
            f"({FORMAT_VERSION}); upgrade lstmtext"
        )
    task = meta.get("task")
    if task is None:
        raise UsageError(f"checkpoint {path}: its metadata names no task (expected one of {', '.join(TASKS)})")
    if not isinstance(task, str) or task not in TASKS:
        raise UsageError(
            f"checkpoint {path}: its task {str(task)[:40]!r} is not one this lstmtext knows ({', '.join(TASKS)})"
        )
    recipe = meta.get("recipe")
    if not isinstance(recipe, dict) or not all(isinstance(v, dict) for k, v in recipe.items() if k != "task"):
        raise UsageError(f"checkpoint {path}: its recipe must be a JSON object of sections (objects)")
    tokenizer_proto(meta, path)  # a readable base64 string, or a UsageError


def load(path: str | Path, task: str | None = None, command: str | None = None) -> tuple[dict, dict]:
    """(meta, state_dict). With ``task``, a checkpoint of another task is refused with a clear message. A model
    whose weights hold NaN or infinite values is refused: every prediction of it would be NaN."""
    meta = read_meta(path)
    if task is not None and meta.get("task") != task:
        what = f"'lstmtext {command}'" if command else f"task '{task}'"
        raise UsageError(f"checkpoint {path} is a '{meta.get('task')}' model; {what} needs a '{task}' model")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise UsageError(f"checkpoint {path}: cannot be read ({str(e).splitlines()[0] if str(e) else e!r})") from None
    if meta.get("kind") == "resume":
        _check_resume(path, meta, state)
    else:
        check_finite(path, state)
    return meta, state


def check_finite(path: str | Path, state: dict) -> None:
    import torch

    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            what = "NaN" if bool(torch.isnan(t).any()) else "infinite"
            raise UsageError(f"checkpoint {path}: weight '{name}' has {what} values; the model cannot be used")


def _check_resume(path: str | Path, meta: dict, state: dict) -> None:
    """The parts of resume state that ``train --resume`` reads, present and of the right kind."""
    optimizer = meta.get("optimizer")
    if not isinstance(meta.get("loop"), dict):
        raise UsageError(f"checkpoint {path}: resume state without its loop state ('loop' must be a JSON object)")
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("param_groups"), list):
        raise UsageError(f"checkpoint {path}: resume state without its optimizer settings ('optimizer.param_groups')")
    if "rng.torch" not in state:
        raise UsageError(f"checkpoint {path}: resume state without its random state (tensor 'rng.torch')")


def tokenizer_proto(meta: dict, path: str | Path | None = None) -> bytes:
    """The SentencePiece model stored in ``meta`` (base64); anything else there is a UsageError."""
    where = f"checkpoint {path}" if path is not None else "checkpoint"
    text = meta.get("tokenizer")
    try:
        if not isinstance(text, str):
            raise ValueError
        return base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error is a ValueError
        raise UsageError(f"{where}: its tokenizer is missing or not valid base64") from None


def check_combined_output(what: str, paths: list, output: str | Path, force: bool, example: str) -> Path:
    """``lstmtext average`` and ``ensemble``: at least two inputs, and an output that is a file path, new or
    --force'd."""
    if len(paths) < 2:
        raise UsageError(f"{what} needs at least two checkpoints, got {len(paths)}")
    output = Path(output)
    if output.is_dir():
        raise UsageError(f"output {output} is a folder; pass a file path such as {output / example}")
    if output.exists() and not force:
        raise UsageError(f"output {output} exists; pass --force to overwrite it")
    return output
