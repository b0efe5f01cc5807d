"""``python -m sparsenu.eval.suite report DIR``: re-make a finished benchmark's report from its caches.

Reads ``DIR/manifest.json`` and the cached evaluations; trains, embeds and simulates nothing.
"""
from __future__ import annotations

import sys

from sparsenu.errors import SparsenuError


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "report":
        print("usage: python -m sparsenu.eval.suite report DIR", file=sys.stderr)
        return 2
    from sparsenu.eval.suite.report_step import make_report

    try:
        rep = make_report(args[1])
    except SparsenuError as exc:
        print(f"sparsenu: error: {exc}", file=sys.stderr)
        return 2
    print(rep.table)
    print(f"\nwrote {len(rep.files)} files in {args[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
