"""Command-line interface: argument parsing and error reporting only.

Every command is a thin call into a package function. User mistakes raise
:class:`sparsenu.SparsenuError`, printed here as one line with exit status 2.
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from sparsenu import __version__
from sparsenu.data.formats import FORMAT_MODULES
from sparsenu.errors import SparsenuError

FORMATS = tuple(FORMAT_MODULES)  # the reader registry of sparsenu.data.formats


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


#: seeds are stored as int64 attributes and hashed as unsigned 63-bit values
_SEED_MAX = 2**63 - 1


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value <= _SEED_MAX:
        raise argparse.ArgumentTypeError(f"a seed must lie in [0, 2**63 - 1], got {text!r}")
    return value


class _UsageError(Exception):
    """A command-line syntax error (printed by :func:`main` as one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise instead of printing the usage and exiting.

    :func:`main` prints them as the one line ``sparsenu: error: ...`` every user mistake gets
    (``-h`` still prints the help and exits 0). Sub-command parsers are of this class too
    (``add_subparsers`` creates them with the parent's class).
    """

    def error(self, message: str):  # type: ignore[override]
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        text = " ".join(str(message).split())
        hint = f"see 'sparsenu {command} -h'" if command else "see 'sparsenu -h'"
        raise _UsageError(f"{command}: {text} ({hint})" if command else f"{text} ({hint})")


def _cmd_simulate(args: argparse.Namespace) -> int:
    from sparsenu.data.simulate import simulate_file

    summary = simulate_file(
        args.config,
        args.n,
        args.output,
        detector_overrides=args.detector,
        workers=args.workers,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(summary)
    return 0


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from sparsenu.data.preprocess import preprocess
    from sparsenu.data.shards import parse_shard

    shard = parse_shard(args.shard) if args.shard is not None else None
    summary = preprocess(
        args.inputs,
        args.output,
        fmt=args.format,
        voxel_size_mm=args.voxel_size,
        workers=args.workers,
        overwrite=args.overwrite,
        strict=args.strict,
        producer=args.producer,
        progress=not args.quiet,
        shard=shard,
    )
    print(summary)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from sparsenu.train import train

    result = train(args.config, out_dir=args.out, overrides=args.overrides, resume=args.resume,
                   progress=not args.quiet)
    print(result)
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from sparsenu.eval.suite import run_benchmark

    result = run_benchmark(args.suite, args.out, overrides=args.overrides, progress=not args.quiet,
                           report_only=args.report_only)
    print(result)
    return 0


def _schema_class(name: str) -> type:
    if name == "experiment":
        from sparsenu.train.config import ExperimentConfig

        return ExperimentConfig
    if name == "suite":
        from sparsenu.eval.suite import SuiteConfig

        return SuiteConfig
    from sparsenu.sim import SimulationConfig

    return SimulationConfig


def _cmd_config_schema(args: argparse.Namespace) -> int:
    import json

    from sparsenu.config import json_schema
    from sparsenu.data.formats.base import write_text_atomic

    text = json.dumps(json_schema(_schema_class(args.kind)), indent=1, sort_keys=True) + "\n"
    if args.output is None:
        print(text, end="")
    else:
        write_text_atomic(args.output, text)
        print(f"wrote the JSON schema of a {args.kind} config to {args.output}")
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    from sparsenu.eval.embeddings import embed_file

    summary = embed_file(
        args.checkpoint,
        args.input,
        args.output,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        progress=not args.quiet,
        fmt=args.format,
    )
    print(summary)
    return 0


# ----------------------------------------------------------------------------- analysis commands


def _cmd_predict(args: argparse.Namespace) -> int:
    from sparsenu.eval.predict import predict_file

    print(predict_file(args.checkpoint, args.input, args.output, probe=args.probe, fmt=args.format,
                       batch_size=args.batch_size, overwrite=args.overwrite, progress=not args.quiet))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from sparsenu.eval.display import show_event

    print(show_event(args.input, args.output, row=args.event, event_id=args.event_id, fmt=args.format,
                     augment=args.augment, shift=args.shift, seed=args.seed, producer=args.producer,
                     voxel_size_mm=args.voxel_size, overwrite=args.overwrite, dpi=args.dpi))
    return 0


def _add_analysis_parsers(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """``sparsenu predict`` and ``sparsenu show``."""
    from sparsenu.eval.display import SHOW_FORMATS

    s = sub.add_parser("predict", help="per-event class probabilities of a classifier or a fitted probe")
    s.add_argument("checkpoint", type=Path)
    s.add_argument("input", type=Path, help="sparse-tensor HDF5 (labels not needed)")
    s.add_argument("-o", "--output", type=Path, required=True, help="predictions file, .h5 or .root")
    s.add_argument("--probe", type=Path, default=None, metavar="PROBE.h5",
                   help="linear probe fitted on this checkpoint's embeddings (default: its classifier head)")
    s.add_argument("--format", choices=("hdf5", "root"), default=None, help="output format (default: from the suffix)")
    s.add_argument("--batch-size", type=_positive_int, default=64)
    s.add_argument("--overwrite", action="store_true")
    common(s)
    s.set_defaults(func=_cmd_predict)

    s = sub.add_parser("show", help="draw one event in 3D (and augmented / under another detector)")
    s.add_argument("input", type=Path, help="raw detector, sparse-tensor or community-format file")
    s.add_argument("-o", "--output", type=Path, required=True, help="figure: .png, .pdf or .svg")
    pick = s.add_mutually_exclusive_group()
    pick.add_argument("--event", type=int, default=None, metavar="ROW", help="position of the event in the file "
                      "(0-based; default 0)")
    pick.add_argument("--event-id", type=int, default=None, metavar="ID", help="the event with this id")
    s.add_argument("--format", choices=SHOW_FORMATS, default="auto",
                   help="input format (default: recognised from the file; sparsenu = raw detector file)")
    s.add_argument("--augment", default=None, metavar="SPEC", help="augmentation for a second panel, e.g. paper")
    s.add_argument("--shift", nargs="+", default=[], metavar="KEY=VALUE",
                   help="detector overrides for a re-simulated panel (fields of the file's detector type, "
                        "e.g. lifetime_us=500 or crosstalk_scale=0; raw files)")
    s.add_argument("--seed", type=_seed, default=0, help="seed of the augmentation")
    s.add_argument("--producer", default=None, help="larcv3 producer name")
    s.add_argument("--voxel-size", type=_positive_float, default=None, metavar="MM",
                   help="community formats: voxel size in mm (default: the input's own)")
    s.add_argument("--dpi", type=_positive_int, default=110, help="figure resolution (a panel is 5 inches wide)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_cmd_show)


def build_parser() -> argparse.ArgumentParser:
    """The ``sparsenu`` argument parser (one sub-command per task)."""
    p = _Parser(
        prog="sparsenu",
        description="Detector-robust sparse representations of LArTPC events.",
    )
    p.add_argument("--version", action="version", version=f"sparsenu {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    s = sub.add_parser("simulate", help="simulate single-particle events into a raw detector file")
    s.add_argument("config", type=Path, help="simulation YAML (sim: and detector: sections)")
    s.add_argument("-n", type=_positive_int, required=True, help="number of events")
    s.add_argument("-o", "--output", type=Path, required=True, help="output raw detector HDF5")
    s.add_argument("--detector", nargs="*", default=[], metavar="KEY=VALUE",
                   help="detector overrides (fields of the config's detector type), e.g. lifetime_us=500")
    s.add_argument("--workers", type=_positive_int, default=1)
    s.add_argument("--seed", type=_seed, default=None, help="overrides the config's seed")
    s.add_argument("--overwrite", action="store_true")
    common(s)
    s.set_defaults(func=_cmd_simulate)

    s = sub.add_parser("preprocess", help="convert detector files into a sparse-tensor file")
    s.add_argument("inputs", type=Path, nargs="+", metavar="INPUT")
    s.add_argument("-o", "--output", type=Path, required=True)
    s.add_argument("--format", choices=FORMATS, default="sparsenu")
    s.add_argument("--voxel-size", type=_positive_float, default=None, metavar="MM",
                   help="voxel size in mm (default: the input's own)")
    s.add_argument("--producer", default=None, help="larcv3 producer name")
    s.add_argument("--workers", type=_positive_int, default=1)
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--strict", action="store_true", help="fail on any bad event instead of skipping")
    s.add_argument("--shard", default=None, metavar="I/N",
                   help="convert only part I of N (0-based) of the inputs: sorted by path, every N-th from I")
    common(s)
    s.set_defaults(func=_cmd_preprocess)

    s = sub.add_parser("train", help="train one method from a YAML config")
    s.add_argument("config", type=Path)
    s.add_argument("--out", type=Path, default=None, help="run directory")
    s.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    s.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    common(s)
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("benchmark", help="run a domain-shift suite: simulate, train, evaluate, report")
    s.add_argument("suite", type=Path)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--report-only", action="store_true",
                   help="re-make the report of a finished --out directory from its caches (no training)")
    s.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    common(s)
    s.set_defaults(func=_cmd_benchmark)

    s = sub.add_parser("embed", help="write per-event embeddings of a trained encoder")
    s.add_argument("checkpoint", type=Path)
    s.add_argument("input", type=Path, help="sparse-tensor HDF5")
    s.add_argument("-o", "--output", type=Path, required=True, help="embeddings file, .h5 or .root")
    s.add_argument("--format", choices=("hdf5", "root"), default=None, help="output format (default: from the suffix)")
    s.add_argument("--batch-size", type=_positive_int, default=64)
    s.add_argument("--overwrite", action="store_true")
    common(s)
    s.set_defaults(func=_cmd_embed)
    _add_analysis_parsers(sub, common)

    s = sub.add_parser("config-schema", help="print the JSON schema of a config file kind (for editors)")
    s.add_argument("kind", choices=("experiment", "suite", "simulation"),
                   help="experiment: `sparsenu train` configs; suite: `sparsenu benchmark`; simulation: "
                        "`sparsenu simulate`")
    s.add_argument("-o", "--output", type=Path, default=None, help="write to this file instead of stdout")
    s.set_defaults(func=_cmd_config_schema)
    return p


class _Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so that ``finally`` blocks (the removal of
    ``<output>.tmp-<pid>`` files by the I/O base) run as they do for Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


def _one_line(exc: BaseException) -> str:
    return " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sparsenu`` console script; returns the exit status.

    User mistakes (command-line syntax included) print one line ``sparsenu: error: ...`` and
    return 2; ``-h`` prints the help and exits 0; Ctrl-C returns 130 and SIGTERM 143, both
    after removing the command's temporary files.
    """
    parser = build_parser()
    try:
        # argparse gives a '*' positional nothing once an option sits between it and the
        # command's first positional (`train CFG --out DIR key=value`): collect stray
        # KEY=VALUE items for the commands that take overrides, reject anything else.
        args, extra = parser.parse_known_args(argv)
        if extra:
            if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
                args.overrides = list(args.overrides) + extra
            else:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except _UsageError as exc:
        print(f"sparsenu: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return int(args.func(args) or 0)
    except SparsenuError as exc:
        print(f"sparsenu: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsenu: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("sparsenu: terminated", file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
