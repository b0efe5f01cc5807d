"""Command-line interface: argument parsing and error reporting only.

Every command is a thin call into a package function. User mistakes raise
:class:`sparsenu.SparsenuError`, printed here as one line with exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from sparsenu import __version__
from sparsenu.errors import SparsenuError

FORMATS = ("sparsenu", "larcv3", "pilarnet", "ndlar-flow")


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
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


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

    result = run_benchmark(args.suite, args.out, overrides=args.overrides, progress=not args.quiet)
    print(result)
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
    )
    print(summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``sparsenu`` argument parser (one sub-command per task)."""
    p = argparse.ArgumentParser(
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
                   help="DetectorConfig overrides, e.g. lifetime_us=500")
    s.add_argument("--workers", type=_positive_int, default=1)
    s.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
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
    s.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    common(s)
    s.set_defaults(func=_cmd_benchmark)

    s = sub.add_parser("embed", help="write per-event embeddings of a trained encoder")
    s.add_argument("checkpoint", type=Path)
    s.add_argument("input", type=Path, help="sparse-tensor HDF5")
    s.add_argument("-o", "--output", type=Path, required=True)
    s.add_argument("--batch-size", type=_positive_int, default=64)
    s.add_argument("--overwrite", action="store_true")
    common(s)
    s.set_defaults(func=_cmd_embed)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sparsenu`` console script; returns the exit status."""
    parser = build_parser()
    # argparse gives a '*' positional nothing once an option sits between it and the
    # command's first positional (`train CFG --out DIR key=value`): collect stray
    # KEY=VALUE items for the commands that take overrides, reject anything else.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except SparsenuError as exc:
        print(f"sparsenu: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsenu: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
