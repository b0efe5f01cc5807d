"""Optional C++ kernels of the native backend, compiled on first use.

``csrc/cpu_kernels.cpp`` looks up kernel-map neighbours and fuses the gather, the per-offset matmul and the
scatter-add of a sparse convolution on CPU (see its header for why). It is built with
:func:`torch.utils.cpp_extension.load` the first time a CPU convolution runs (about a
minute, once per machine and source version; cached under ``TORCH_EXTENSIONS_DIR``,
default ``~/.cache/torch_extensions``). When it cannot be built (no C++ compiler, no
``ninja``) sparsenu warns once and runs the plain-PyTorch path, which gives the same
results more slowly.

``SPARSENU_NATIVE_EXT=0`` disables the kernels, ``=1`` makes a failed build an error.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import warnings
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


def _build_dir() -> tuple[str, Path]:
    """Module name and build folder, both keyed by the source and torch version."""
    import torch

    digest = hashlib.sha256(_SOURCE.read_bytes() + torch.__version__.encode()).hexdigest()[:12]
    name = f"sparsenu_cpu_kernels_{digest}"
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions"
    return name, Path(root) / name


def _ninja_on_path() -> None:
    """torch's builder calls ``ninja`` from PATH; the ``ninja`` wheel's binary sits in the
    environment's bin folder, which is not on PATH when a venv's python runs unactivated."""
    if shutil.which("ninja") is None:
        try:
            import ninja
        except ImportError:
            return
        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def _load():
    from torch.utils import cpp_extension

    _ninja_on_path()
    name, folder = _build_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.glob(f"{name}*.so")):
        print("sparsenu: building the C++ sparse-convolution kernels (once per machine and version, "
              "about a minute)...", file=sys.stderr, flush=True)
    return cpp_extension.load(name=name, sources=[str(_SOURCE)], build_directory=str(folder),
                              extra_cflags=["-O3", "-fopenmp"], extra_ldflags=["-fopenmp"], verbose=False)


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
