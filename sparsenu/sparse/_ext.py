"""Optional C++ kernels of the native backend, compiled on first use.

``csrc/cpu_kernels.cpp`` looks up kernel-map neighbours and fuses the gather, the per-offset matmul and the
scatter-add of a sparse convolution on CPU (see its header for why). It is built with
:func:`torch.utils.cpp_extension.load` the first time a CPU convolution runs (about a
minute, once per machine, checkout and source version; cached under ``TORCH_EXTENSIONS_DIR``,
default ``~/.cache/torch_extensions``, in a folder keyed by everything that goes into the build:
see :func:`_build_inputs`). Concurrent builds wait for each other with one message; the lock
of a build that was killed is detected and removed (:func:`_build_lock`). When it cannot be built (no C++ compiler, no
``ninja``) sparsenu warns once and runs the plain-PyTorch path, which gives the same
results more slowly.

``SPARSENU_NATIVE_EXT=0`` disables the kernels, ``=1`` makes a failed build an error.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

__all__ = ["get", "enabled", "set_enabled"]

_SOURCE = Path(__file__).with_name("csrc") / "cpu_kernels.cpp"
_state: dict = {"module": None, "tried": False, "enabled": None}


def _env_mode() -> str:
    v = os.environ.get("SPARSENU_NATIVE_EXT", "auto").strip().lower()
    if v in ("0", "false", "no", "off"):
        return "off"
    if v in ("1", "true", "yes", "on"):
        return "on"
    return "auto"


def enabled() -> bool:
    """Whether CPU convolutions should use the C++ kernels (if they build)."""
    if _state["enabled"] is None:
        return _env_mode() != "off"
    return bool(_state["enabled"])


def set_enabled(flag: bool | None) -> None:
    """Force the C++ kernels on (``True``), off (``False``) or back to ``SPARSENU_NATIVE_EXT``
    (``None``); used by tests to run both paths."""
    _state["enabled"] = flag


_CFLAGS = ["-O3", "-fopenmp"]
_LDFLAGS = ["-fopenmp"]
#: torch's own build lock in the build folder (``torch.utils.file_baton.FileBaton``): a file that
#: exists while a build runs, left behind when the build is killed; torch then waits for ever
_TORCH_BATON = "lock"
#: sparsenu's lock around every build and load of the kernels: an ``flock`` that the kernel
#: releases when its owner dies, holding the owner's pid for the waiting message
_LOCK = "sparsenu-build.lock"


def _build_inputs() -> dict[str, str]:
    """Everything that goes into torch's ``build.ninja`` or decides whether it rebuilds.

    torch writes the absolute source path, the compiler and the include folders (torch's,
    Python's) into ``build.ninja``, and ``ninja`` versions disagree about their logs: two
    checkouts, two compilers or two ``ninja`` binaries (an activated virtual environment
    against ``venv/bin/sparsenu`` with the system's on PATH) sharing one folder rebuilt each
    other's kernels every time. Each combination gets its own folder instead.
    """
    import sysconfig

    import torch

    cxx = os.environ.get("CXX", "c++")
    ninja = shutil.which("ninja") or ""
    return {
        "source_sha256": hashlib.sha256(_SOURCE.read_bytes()).hexdigest(),
        "source_path": str(_SOURCE.resolve()),
        "cxx": os.path.realpath(shutil.which(cxx) or cxx),
        "ninja": os.path.realpath(ninja) if ninja else "",
        "torch": f"{torch.__version__} {Path(torch.__file__).resolve().parent}",
        "python_include": str(sysconfig.get_paths().get("include", "")),
        "flags": " ".join(_CFLAGS + _LDFLAGS),
    }


def _build_dir() -> tuple[str, Path]:
    """Module name and build folder, both keyed by :func:`_build_inputs`."""
    key = "\n".join(f"{k}={v}" for k, v in sorted(_build_inputs().items()))
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    name = f"sparsenu_cpu_kernels_{digest}"
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions"
    return name, Path(root) / name


def _ninja_on_path() -> None:
    """Use the ``ninja`` of the ``ninja`` package installed with sparsenu whenever there is one.

    torch's builder calls ``ninja`` from PATH. The wheel's binary sits in the environment's
    bin folder, which is not on PATH when a venv's python runs unactivated, where another
    ``ninja`` (the system's) may be found instead; preferring the package's makes both ways
    of running sparsenu build with the same ``ninja`` (and so share one build folder).
    """
    try:
        import ninja
    except ImportError:
        return
    bin_dir = str(getattr(ninja, "BIN_DIR", ""))
    exe = os.path.join(bin_dir, "ninja")
    if not bin_dir or not os.access(exe, os.X_OK):
        return
    found = shutil.which("ninja")
    if found is None or os.path.realpath(found) != os.path.realpath(exe):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """Hold sparsenu's lock of ``folder`` (waiting, with one message, for a live owner) and
    remove torch's build lock if a killed build left it.

    The lock is an ``flock``: the kernel releases it when its owner dies, even by ``kill -9``,
    so a lock nobody holds is never waited for. Every build and load of the kernels holds it;
    torch's own ``lock`` file found while holding it therefore belongs to a build that is gone.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (torch's own baton only)
        yield
        return
    fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        locked = True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            print(f"sparsenu: waiting for process {owner}, which is building the C++ sparse-convolution kernels "
                  f"in {folder} (lock {folder / _LOCK})...", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without flock (some NFS mounts): torch's own baton only
            locked = False
        if not locked:
            yield
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        baton = folder / _TORCH_BATON
        if baton.exists():
            print(f"sparsenu: removing the stale build lock {baton} (its build was killed; no process holds "
                  f"{folder / _LOCK})", file=sys.stderr, flush=True)
            with contextlib.suppress(FileNotFoundError):
                baton.unlink()
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _load():
    from torch.utils import cpp_extension

    _ninja_on_path()
    name, folder = _build_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with _build_lock(folder):
        if not any(folder.glob(f"{name}*.so")):
            print("sparsenu: building the C++ sparse-convolution kernels (once per machine, checkout and version, "
                  "about a minute)...", file=sys.stderr, flush=True)
        return cpp_extension.load(name=name, sources=[str(_SOURCE)], build_directory=str(folder),
                                  extra_cflags=_CFLAGS, extra_ldflags=_LDFLAGS, verbose=False)


def get():
    """The compiled module (``forward``, ``backward``) or ``None`` when disabled or unavailable."""
    if not enabled():
        return None
    if not _state["tried"]:
        _state["tried"] = True
        try:
            _state["module"] = _load()
        except Exception as exc:  # compiler or ninja missing, build error
            if _env_mode() == "on":
                raise RuntimeError(f"SPARSENU_NATIVE_EXT=1 but the C++ kernels failed to build: {exc}") from exc
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if len(first) > 160:
                first = first[:157] + "..."
            warnings.warn(f"sparsenu: C++ sparse-convolution kernels unavailable ({first}); "
                          "using the plain-PyTorch path (same results, slower). "
                          "Set SPARSENU_NATIVE_EXT=0 to silence this.", RuntimeWarning, stacklevel=3)
    return _state["module"]
