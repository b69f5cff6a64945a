"""Content-keyed, atomic on-disk cache.

Every expensive result (features, graphs, tables) is stored under ``cache_dir()/namespace/<key>``
where ``key`` is a SHA-256 of *what produced it* (checkpoint hash, image ids, parameters). Writes go
to a temporary file in the same directory and are moved into place with :func:`os.replace`, which is
atomic on POSIX: a run killed mid-write leaves at most a stray ``*.tmp`` file, never a truncated entry
under the final name, and the next run recomputes the missing entry and carries on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ENV = "SSLGEOM_CACHE"


def cache_dir() -> Path:
    """Return the cache root, creating it if needed.

    ``$SSLGEOM_CACHE`` when set, else ``<repo>/.cache`` (git-ignored).
    """
    root = Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _canonical(obj: Any) -> Any:
    """Turn ``obj`` into JSON-serialisable data whose serialisation identifies its content."""
    if isinstance(obj, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()
        return {"__ndarray__": digest, "shape": list(obj.shape), "dtype": str(obj.dtype)}
    if hasattr(obj, "detach") and hasattr(obj, "cpu") and hasattr(obj, "numpy"):  # torch tensor
        return _canonical(obj.detach().cpu().numpy())
    if isinstance(obj, Mapping):
        return {str(key): _canonical(value) for key, value in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(value) for value in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(
        f"cannot build a cache key from an object of type {type(obj).__name__}; "
        "pass plain values (str, int, float, bool, None, lists, dicts, numpy arrays)"
    )


def content_key(*parts: Any) -> str:
    """SHA-256 hex digest identifying ``parts`` by content.

    Parameters
    ----------
    *parts
        Plain values, lists, dicts and numpy arrays (arrays are hashed by bytes, shape and dtype).

    Returns
    -------
    str
        64 hexadecimal characters; equal parts give equal keys across runs and machines.
    """
    payload = json.dumps(_canonical(list(parts)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it to ``path`` atomically.

    If the block raises (or the process dies), ``path`` is untouched and the temporary file is
    removed (or left as ``*.tmp``, which is never read as a cache entry).

    Examples
    --------
    >>> with atomic_write(target) as tmp:          # doctest: +SKIP
    ...     np.save(tmp, array)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp_path = Path(tmp_name)
    # mkstemp creates the file as 0600; give the final file the usual permissions (umask applies).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def save_arrays(path: str | Path, **arrays: np.ndarray) -> Path:
    """Store named arrays in an ``.npz`` file atomically. Returns the path written."""
    path = Path(path)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{name: np.asarray(value) for name, value in arrays.items()})
    return path


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file written by :func:`save_arrays`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable ``.npz`` archive (truncated or corrupt); delete it to recompute.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cache entry {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except Exception as error:  # zipfile.BadZipFile, EOFError, ValueError, OSError
        raise ValueError(
            f"cache entry {path} is corrupt or truncated ({error}); delete it and rerun to recompute"
        ) from error


#: file ending of cached tables: Parquet holds typed columns only and cannot carry code
TABLE_SUFFIX = ".parquet"


def save_table(path: str | Path, table: pd.DataFrame) -> Path:
    """Store a DataFrame atomically as Parquet (through pyarrow). Returns the path written.

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame (tables are data, never arbitrary Python objects).
    """
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"save_table stores pandas DataFrames, got {type(table).__name__}.")
    path = Path(path)
    with atomic_write(path) as tmp:
        table.to_parquet(tmp, engine="pyarrow", index=True)
    return path


def load_table(path: str | Path) -> pd.DataFrame:
    """Load a DataFrame written by :func:`save_table`; reading Parquet never runs code.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable Parquet file (truncated or corrupt); delete it to recompute.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cache entry {path} does not exist")
    try:
        return pd.read_parquet(path, engine="pyarrow")
    except Exception as error:  # pyarrow.ArrowInvalid, OSError, ...
        raise ValueError(
            f"cache entry {path} is corrupt or truncated ({error}); delete it and rerun to recompute"
        ) from error


def read_entry(path: str | Path, loader: Callable[[Path], Any] | None = None) -> Any | None:
    """The cached value at ``path``, or ``None`` when it must be (re)computed.

    A missing entry gives ``None``; so does a corrupt or truncated one (for example a disk that
    filled up at write time), which is deleted so that the recomputed value replaces it.
    ``loader`` defaults to :func:`load_table` for ``.parquet`` entries and :func:`load_arrays` otherwise.
    """
    path = Path(path)
    if loader is None:
        loader = load_table if path.suffix == TABLE_SUFFIX else load_arrays
    if not path.exists():
        return None
    try:
        return loader(path)
    except ValueError:
        path.unlink(missing_ok=True)
        return None


def entry_path(namespace: str, key: str, suffix: str) -> Path:
    """Path of the cache entry ``key`` in ``namespace`` (a sub-directory of :func:`cache_dir`)."""
    if not namespace or namespace.startswith("/") or ".." in Path(namespace).parts:
        raise ValueError(
            f"invalid cache namespace {namespace!r}: use a relative name such as 'features'"
        )
    return cache_dir() / namespace / f"{key}{suffix}"


def cached_arrays(
    namespace: str,
    key_parts: Any,
    compute: Callable[[], Mapping[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Return the arrays for ``key_parts``, computing and storing them on a miss.

    Parameters
    ----------
    namespace
        Sub-directory of the cache (e.g. ``"features"``).
    key_parts
        Everything that determines the result (hashed with :func:`content_key`).
    compute
        Zero-argument function returning a mapping of names to arrays.

    Returns
    -------
    dict of str to numpy.ndarray
    """
    path = entry_path(namespace, content_key(key_parts), ".npz")
    cached = read_entry(path, load_arrays)
    if cached is not None:
        return cached
    arrays = {name: np.asarray(value) for name, value in compute().items()}
    save_arrays(path, **arrays)
    return arrays


def cached_table(namespace: str, key_parts: Any, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """Like :func:`cached_arrays` for a DataFrame (stored as Parquet)."""
    path = entry_path(namespace, content_key(key_parts), TABLE_SUFFIX)
    cached = read_entry(path, load_table)
    if cached is not None:
        return cached
    table = compute()
    save_table(path, table)
    return table
