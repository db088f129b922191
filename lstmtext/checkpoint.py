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


def read_meta(path: str | Path) -> dict[str, Any]:
    """The JSON metadata, checked: a missing, truncated or foreign file or a newer version is a UsageError."""
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
        try:
            header = json.loads(f.read(n))
            meta = json.loads(header["__metadata__"][FORMAT])
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"checkpoint {path}: not an lstmtext checkpoint (no lstmtext metadata)") from None
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UsageError(
            f"checkpoint {path}: format version {version} is newer than this lstmtext reads "
            f"({FORMAT_VERSION}); upgrade lstmtext"
        )
    # Every tensor's bytes must lie inside the file: a cut-off download fails here, not mid-load.
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise UsageError(f"checkpoint {path}: truncated ({size} bytes, expected {8 + n + end})")
    return meta


def load(path: str | Path, task: str | None = None, command: str | None = None) -> tuple[dict, dict]:
    """(meta, state_dict). With ``task``, a checkpoint of another task is refused with a clear message."""
    meta = read_meta(path)
    if task is not None and meta.get("task") != task:
        what = f"'lstmtext {command}'" if command else f"task '{task}'"
        raise UsageError(f"checkpoint {path} is a '{meta.get('task')}' model; {what} needs a '{task}' model")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise UsageError(f"checkpoint {path}: cannot be read ({e})") from None
    return meta, state


def tokenizer_proto(meta: dict) -> bytes:
    return base64.b64decode(meta["tokenizer"])
