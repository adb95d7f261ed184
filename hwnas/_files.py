"""Reading and writing hwnas's own files safely: JSON read with one line naming the file when it is
damaged, text written through a temporary name (a crash never leaves half a file)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError

__all__ = ["read_json", "atomic_write_text", "write_json"]


def read_json(path: str | Path, hint: str = "") -> Any:
    """The JSON in ``path``; an unreadable or damaged file is an :class:`HwnasError` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HwnasError(f"{path} cannot be read as JSON ({exc}){hint}") from None


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _finite(obj: Any) -> Any:
    """JSON has no NaN or infinity: they are written as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | Path, data: Any) -> None:
    """``data`` as indented JSON (non-finite numbers as null), written atomically."""
    atomic_write_text(path, json.dumps(_finite(data), indent=2, default=str) + "\n")
