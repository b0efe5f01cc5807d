"""The I/O base every file sparsenu writes or reads goes through.

- **One atomic writer.** :func:`atomic_output` yields ``<output>.tmp-<pid>`` next to the
  output and renames it into place only when the body succeeds, so no command ever leaves
  a partial (or any) output behind; temporary files of processes that died (``kill -9``)
  are removed by the next write to the same output. :func:`write_text_atomic` /
  :func:`write_json_atomic` are the one-call forms (JSON markers, YAML configs, CSV logs);
  :class:`AtomicH5Writer` is the base of the HDF5 writers; checkpoints use the same
  context manager around ``torch.save``.
- **One compression policy** for every HDF5 dataset sparsenu writes: shuffle + deflate
  level 1 (:data:`DEFLATE`), compressed chunk by chunk off h5py's pipeline when ISA-L is
  installed (:class:`ChunkedAppender`, :mod:`sparsenu.data.formats._chunks`).
- **One fork-safe lazy reader.** :class:`LazyH5` opens an HDF5 file in whichever process
  first reads it, reopens after a fork or spawn, is never pickled with its handle, and keeps
  the dataset objects open (HDF5 keeps a dataset's chunk cache only while it is open).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sparsenu.data.formats import _chunks
from sparsenu.data.formats.schema import open_h5
from sparsenu.errors import SparsenuError
from sparsenu.sim.detectors import DEFAULT_DETECTOR_TYPE

__all__ = ["detector_type", "DEFLATE", "check_output", "atomic_output", "write_text_atomic", "write_json_atomic",
           "read_json", "AtomicH5Writer", "ChunkedAppender", "LazyH5", "same_file", "remove_stale_temporaries",
           "remove_stale_temporaries_in", "file_stamp"]

#: h5py keywords of every dataset sparsenu writes: shuffle + deflate level 1, readable by
#: any HDF5 build (no filter plugin needed).
DEFLATE = _chunks.DEFLATE


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same existing file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(output: str | Path, overwrite: bool, inputs: Sequence[str | Path] = ()) -> Path:
    """Validate an output path before any work is done.

    The parent directory must exist and be writable, an existing output needs
    ``overwrite``, a directory is never replaced, and the output must not be one of the
    command's ``inputs`` (``--overwrite`` would otherwise destroy what is being read).

    Raises
    ------
    SparsenuError
    """
    output = Path(output)
    for item in inputs:
        if same_file(output, item):
            raise SparsenuError(f"{output}: the output is also an input; choose another output path")
    if output.is_dir():
        raise SparsenuError(f"{output}: output is a directory")
    if output.exists() and not overwrite:
        raise SparsenuError(f"{output}: output exists (use --overwrite / overwrite=True to replace it)")
    parent = output.parent
    if not parent.is_dir():
        raise SparsenuError(f"{output}: output directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SparsenuError(f"{output}: output directory {parent} is not writable")
    return output


def file_stamp(path: str | Path) -> tuple | None:
    """``(resolved path, inode, mtime_ns, size)`` of a file, or None if it cannot be stat'ed.

    Identifies one version of a file: a check of its contents can be cached under it (a
    rewritten file, even at the same path, has another inode or mtime).
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return None
    return (str(p.resolve()), st.st_ino, st.st_mtime_ns, st.st_size)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(output: Path) -> list[Path]:
    """Delete ``<output>.tmp-<pid>`` files left by processes that no longer run."""
    removed = []
    for tmp in output.parent.glob(f"{output.name}.tmp-*"):
        pid_text = tmp.name.rsplit(".tmp-", 1)[-1]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


#: errors of the file system (not of sparsenu or of the data) that a write can meet: reported as
#: a SparsenuError naming the output, not as a traceback
_FS_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _tmp_path(output: Path) -> Path:
    return output.with_name(f"{output.name}.tmp-{os.getpid()}")


def remove_stale_temporaries_in(directory: str | Path) -> list[Path]:
    """Delete every ``*.tmp-<pid>`` file of a dead process under ``directory`` (recursively).

    For directories that sparsenu owns (a run directory, a data cache): a run killed there
    may have left temporaries of outputs that the next run never writes again.
    """
    removed: list[Path] = []
    root = Path(directory)
    if not root.is_dir():
        return removed
    for tmp in root.rglob("*.tmp-*"):
        pid_text = tmp.name.rsplit(".tmp-", 1)[-1]
        if tmp.is_file() and pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_output(output: str | Path, overwrite: bool = False, *, mkdir: bool = False,
                  inputs: Sequence[str | Path] = ()) -> Iterator[Path]:
    """Yield a temporary path next to ``output``; rename it into place when the body succeeds.

    Parameters
    ----------
    output : path
        Final path.
    overwrite : bool
        Replace an existing output.
    mkdir : bool
        Create the parent directory (internal files of a run directory); user-facing
        outputs leave it ``False`` so a mistyped directory is an error.
    inputs : paths
        Files the command reads; the output may not be one of them.

    Raises
    ------
    SparsenuError
        The output is refused by :func:`check_output`, or the file system refuses the
        write (permission denied, read-only file system, disk full): the temporary file is
        removed and nothing is left at ``output``.

    Notes
    -----
    The temporary file is created (empty) before the body runs, so an unwritable
    directory fails before any work is done. It is deleted if the body raises (any
    exception, KeyboardInterrupt included; ``sparsenu`` turns SIGTERM into an exception
    too). Temporaries of dead processes (``kill -9``) are removed first.
    """
    output = Path(output)
    if mkdir:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SparsenuError(f"{output}: cannot create directory {output.parent}: {exc.strerror or exc}") from None
    output = check_output(output, overwrite, inputs)
    remove_stale_temporaries(output)
    tmp = _tmp_path(output)
    try:
        with open(tmp, "xb"):
            pass
    except FileExistsError:  # our own, left by a body that did not clean up: reuse it
        pass
    except OSError as exc:
        raise SparsenuError(f"{output}: cannot write to {output.parent}: {exc.strerror or exc}") from None
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"atomic_output: nothing was written to {tmp}")
        os.replace(tmp, output)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno in _FS_ERRNOS:
            raise SparsenuError(f"{output}: cannot write: {exc.strerror or exc}") from None
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write (or replace) a small text file atomically, creating its directory."""
    with atomic_output(path, overwrite=True, mkdir=True) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write (or replace) a JSON file atomically (indented, sorted keys)."""
    return write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path, what: str = "file") -> Any:
    """Read a JSON file written by :func:`write_json_atomic`; ``None`` if it does not exist.

    A file that exists but cannot be parsed is a :class:`SparsenuError` (it was written
    atomically, so it was damaged outside sparsenu): never silently treated as missing.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SparsenuError(f"{path}: unreadable {what} ({exc}); delete it to recompute") from None


class AtomicH5Writer:
    """Base of the HDF5 writers: an h5py file at ``<output>.tmp-<pid>`` renamed into place.

    Use a subclass as a context manager. ``__enter__`` opens the temporary file and
    calls :meth:`_create`; a clean exit calls :meth:`_finish` (flush buffers, write
    attributes) and renames the file to ``output``; any exception (in the body, in
    ``_create`` or in ``_finish``) closes and deletes the temporary file, so no
    partial output is ever left behind.
    """

    def __init__(self, output: str | Path, overwrite: bool = False, inputs: Sequence[str | Path] = ()) -> None:
        self.output = check_output(output, overwrite, inputs)
        self.overwrite = overwrite
        self.inputs = tuple(inputs)
        self._ctx: Any = None
        self._f: h5py.File | None = None

    def _create(self, f: h5py.File) -> None:
        """Create the datasets of a new file (subclass hook)."""

    def _finish(self) -> None:
        """Write what is buffered and the attributes, then close the file (subclass hook)."""
        raise NotImplementedError

    def __enter__(self):
        self._ctx = atomic_output(self.output, self.overwrite, inputs=self.inputs)
        tmp = self._ctx.__enter__()
        try:
            try:
                self._f = h5py.File(tmp, "w")
            except OSError as exc:
                raise SparsenuError(f"{self.output}: cannot create the file ({exc})") from None
            self._create(self._f)
        except BaseException as exc:
            self._abort(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self._abort(exc_type, exc, tb)
            return
        try:
            self._finish()
        except BaseException as err:
            self._abort(type(err), err, err.__traceback__)
            raise
        self._ctx.__exit__(None, None, None)

    def _abort(self, *exc_info: Any) -> None:
        if self._f is not None:
            with contextlib.suppress(Exception):
                self._f.close()
            self._f = None
        if self._ctx is not None:
            info = exc_info if exc_info else (RuntimeError, RuntimeError("aborted"), None)
            with contextlib.suppress(BaseException):
                self._ctx.__exit__(*info)
            self._ctx = None


class ChunkedAppender:
    """A resizable, compressed dataset filled by appending rows along axis 0.

    Rows are buffered until whole chunks can be written; with ISA-L the chunks are
    compressed on worker threads (:func:`sparsenu.data.formats._chunks.write_chunks`) while
    the caller goes on, otherwise through h5py's own filters. :meth:`close` writes the
    last partial chunk. The file is a plain :data:`DEFLATE` dataset either way.

    Parameters
    ----------
    group : h5py.Group
        Where the dataset is created.
    name : str
        Dataset name (may contain ``/``).
    dtype : numpy dtype
    row_shape : tuple of int
        Shape of one row (``()`` for a 1-D dataset, ``(3,)`` for coordinates).
    chunk_rows : int
        Rows per chunk.
    """

    def __init__(self, group: h5py.Group, name: str, dtype: Any, row_shape: tuple[int, ...] = (),
                 chunk_rows: int = 16384) -> None:
        self.ds = group.create_dataset(name, shape=(0,) + tuple(row_shape), maxshape=(None,) + tuple(row_shape),
                                       dtype=dtype, chunks=(chunk_rows,) + tuple(row_shape), **DEFLATE)
        self.chunk_rows = int(chunk_rows)
        self.row_shape = tuple(row_shape)
        self._direct = _chunks.available()
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self._pending: list = []
        self.n_rows = 0  # rows stored in the file (excludes the buffer)

    def __len__(self) -> int:
        return self.n_rows + self._buffered

    def append(self, rows: np.ndarray) -> None:
        """Append ``rows`` ``[n, *row_shape]`` (kept by reference until written: do not modify)."""
        rows = np.asarray(rows, dtype=self.ds.dtype).reshape((-1,) + self.row_shape)
        if len(rows):
            self._buf.append(rows)
            self._buffered += len(rows)

    def flush(self, final: bool = False) -> None:
        """Write the buffered whole chunks (and, when ``final``, the partial last one)."""
        _chunks.finish_writes(self._pending)  # the previous flush's chunks, compressed meanwhile
        if not self._buf:
            return
        rows = self._buf[0] if len(self._buf) == 1 else np.concatenate(self._buf)
        n = len(rows)
        if not final:
            n -= n % self.chunk_rows
        if n:
            n0, n1 = self.n_rows, self.n_rows + n
            self.ds.resize(n1, axis=0)
            if self._direct:
                self._pending += _chunks.write_chunks(self.ds, n0, rows[:n])
            else:
                self.ds[n0:n1] = rows[:n]
            self.n_rows = n1
        self._buf = [rows[n:]] if n < len(rows) else []
        self._buffered = len(rows) - n
        if final:
            _chunks.finish_writes(self._pending)

    def map_buffered(self, fn: Any) -> None:
        """Replace every buffered (not yet written) block ``b`` by ``fn(b)``."""
        self._buf = [fn(b) for b in self._buf]

    def close(self) -> None:
        """Write everything still buffered."""
        self.flush(final=True)


class LazyH5:
    """A fork-safe, lazily opened, read-only HDF5 handle that keeps its datasets open.

    The file is opened on first use in each process (a handle inherited through ``fork``
    is never used: HDF5 is not fork-safe) and never pickled, so objects holding a
    ``LazyH5`` work with ``DataLoader(num_workers > 0)`` under fork and spawn.

    Parameters
    ----------
    path : path
    handle : h5py.File, optional
        An already open (e.g. just validated) handle of ``path`` to use in this process.
    rdcc_nbytes : int
        Chunk-cache size per dataset.
    """

    def __init__(self, path: str | Path, handle: h5py.File | None = None, rdcc_nbytes: int = 16 << 20) -> None:
        self.path = Path(path)
        self._rdcc = int(rdcc_nbytes)
        self._f: h5py.File | None = handle
        self._pid: int | None = os.getpid() if handle is not None else None
        self._ds: dict[str, h5py.Dataset] = {}

    def file(self) -> h5py.File:
        """This process' open file."""
        if self._f is None or self._pid != os.getpid():
            self._ds = {}
            self._f = h5py.File(self.path, "r", rdcc_nbytes=self._rdcc)
            self._pid = os.getpid()
        return self._f

    def __getitem__(self, name: str) -> h5py.Dataset:
        """The open dataset ``name`` (looked up once per process)."""
        f = self.file()
        ds = self._ds.get(name)
        if ds is None:
            ds = self._ds[name] = f[name]
        return ds

    def close(self) -> None:
        """Close this process' handle (the next read reopens it)."""
        if self._f is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                self._f.close()
        self._f, self._pid, self._ds = None, None, {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_f=None, _pid=None, _ds={})
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def detector_type(source: str | Path | Mapping[str, Any]) -> str:
    """The detector type that made a sparsenu HDF5 file (raw detector or sparse-tensor).

    Reads the root attribute ``detector`` (JSON): its ``type``; a detector without one is
    ``lartpc`` (files written before detector types existed, and the converted community
    formats, which are all LArTPC data).

    Parameters
    ----------
    source : path, or the file's decoded root attributes (a mapping with ``detector``)
    """
    if isinstance(source, Mapping):
        det: Any = source.get("detector")
    else:
        with open_h5(source) as f:
            det = f.attrs.get("detector")
    if isinstance(det, bytes):
        det = det.decode()
    if isinstance(det, str):
        det = json.loads(det) if det.strip() else {}
    if not isinstance(det, Mapping):
        det = {}
    return str(det.get("type", DEFAULT_DETECTOR_TYPE))
