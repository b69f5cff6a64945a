"""Content-keyed, atomic on-disk cache.

Every expensive result (features, graphs, tables) is stored under ``cache_dir()/namespace/<key>``
where ``key`` is a SHA-256 of *what produced it* (checkpoint hash, image ids, parameters).

Guarantees
----------
* **Atomic entries.** Writes go to a uniquely named temporary file in the same directory, are
  flushed to disk and moved into place with :func:`os.replace`, which is atomic on POSIX: a reader
  sees either no entry or a complete one, never a truncated file under the final name. A run killed
  mid-write leaves at most a ``.<name>.*.tmp`` file, which is never read as an entry and is deleted
  by the next write of the same entry once it is older than :data:`STALE_TEMP_SECONDS`.
* **Concurrent writers are safe.** Two processes computing the same entry each write their own
  temporary file; the last :func:`os.replace` wins, and since an entry is a deterministic function of
  its key both contents are equal. Nothing is locked, so both may spend the compute time.
* **Nothing is unpickled.** Arrays are ``.npz`` files read with ``allow_pickle=False``, tables are
  Parquet files; a planted pickle is treated as a corrupt entry and recomputed.
* **Bad entries are recomputed.** A corrupt, truncated or incomplete entry (an archive missing an
  array the caller needs) is deleted and computed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ENV = "SSLGEOM_CACHE"
#: a temporary file older than this (seconds) belongs to a killed writer and is deleted
STALE_TEMP_SECONDS = 3600.0


class CacheError(OSError):
    """The cache directory cannot be created, or an entry cannot be written there."""


def cache_root() -> Path:
    """The cache root, without creating it: ``$SSLGEOM_CACHE`` when set, else ``<repo>/.cache``.

    Use it for read-only lookups (searching for data files) so that they work on a read-only cache.
    """
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache")


def _where() -> str:
    """How the cache root was chosen, for error messages."""
    if os.environ.get(CACHE_ENV):
        return f"${CACHE_ENV}={os.environ[CACHE_ENV]!r}"
    return f"the default cache {REPO_ROOT / '.cache'} (${CACHE_ENV} is not set)"


def cache_dir() -> Path:
    """Return the cache root, creating it if needed.

    ``$SSLGEOM_CACHE`` when set, else ``<repo>/.cache`` (git-ignored).

    Raises
    ------
    CacheError
        If the directory cannot be created or written (a file of that name, a read-only mount, no
        permission); the message names the variable and the path.
    """
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise CacheError(f"The cache directory {root} cannot be created: a file is in the way ({error}). Set by "
                         f"{_where()}; point {CACHE_ENV} to a directory.") from error
    except OSError as error:
        raise CacheError(f"The cache directory {root} cannot be created ({error.strerror or error}). Set by "
                         f"{_where()}; point {CACHE_ENV} to a writable directory.") from error
    if not os.access(root, os.W_OK | os.X_OK):
        raise CacheError(f"The cache directory {root} is not writable. Set by {_where()}; point {CACHE_ENV} "
                         "to a writable directory.")
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
    removed (or left as ``.<name>.*.tmp``, which is never read and is deleted by a later write of
    ``path`` once older than :data:`STALE_TEMP_SECONDS`). The final file gets the permissions of a
    newly created file (``0o666`` minus the umask), without changing the process's umask.

    Examples
    --------
    >>> with atomic_write(target) as tmp:          # doctest: +SKIP
    ...     np.save(tmp, array)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp would create the file 0600; a plain O_EXCL create applies the umask like any new file
    while True:
        tmp_path = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
        try:
            os.close(os.open(tmp_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    mode = tmp_path.stat().st_mode & 0o777
    try:
        yield tmp_path
        os.chmod(tmp_path, mode)  # a writer that recreated the file (safetensors) may have changed it
        with open(tmp_path, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    _remove_stale_temps(path)


def _remove_stale_temps(path: Path) -> None:
    """Delete temporary files of ``path`` left by killed writers (older than STALE_TEMP_SECONDS)."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):  # another process may remove it first
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()


@contextlib.contextmanager
def _writing_entry(path: Path) -> Iterator[None]:
    """Turn an OSError while writing a cache entry (full disk, read-only mount) into a clear CacheError."""
    try:
        yield
    except CacheError:
        raise
    except OSError as error:
        raise CacheError(f"Could not write the cache entry {path} ({error.strerror or error}). The cache is "
                         f"{_where()}: free space there or point {CACHE_ENV} to a writable directory.") from error


def save_arrays(path: str | Path, **arrays: np.ndarray) -> Path:
    """Store named arrays in an ``.npz`` file atomically. Returns the path written."""
    path = Path(path)
    with _writing_entry(path), atomic_write(path) as tmp:
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
    with _writing_entry(path), atomic_write(path) as tmp:
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
    required: Sequence[str] = (),
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
    required
        Names the caller reads: a cached archive without one of them is incomplete and recomputed.

    Returns
    -------
    dict of str to numpy.ndarray
    """
    path = entry_path(namespace, content_key(key_parts), ".npz")
    cached = read_entry(path, load_arrays)
    if cached is not None and all(name in cached for name in required):
        return cached
    arrays = {name: np.asarray(value) for name, value in compute().items()}
    missing = [name for name in required if name not in arrays]
    if missing:
        raise ValueError(f"compute() for the {namespace!r} cache returned {sorted(arrays)}, without {missing}.")
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
