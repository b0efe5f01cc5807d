"""The domain-shift benchmark: ``sparsenu benchmark SUITE.yaml --out DIR``.

Three small modules, in the order the work happens:

- :mod:`~sparsenu.eval.suite.config`: the suite file (:class:`SuiteConfig`), shifts resolved
  into concrete detectors (:func:`resolve_shifts`);
- :mod:`~sparsenu.eval.suite.data`: every data set, from the one simulated-data cache;
- :mod:`~sparsenu.eval.suite.runner`: training (through :func:`sparsenu.train.train`),
  evaluation (:func:`sparsenu.eval.evaluate.evaluate_checkpoint`) and the report
  (:mod:`sparsenu.eval.report`, :mod:`sparsenu.eval.plots`).
"""
from sparsenu.eval.suite.config import (
                                        MethodSpec,
                                        ResolvedShift,
                                        ShiftSpec,
                                        SuiteConfig,
                                        SuiteDataConfig,
                                        SuiteEvalConfig,
                                        TargetSpec,
                                        load_suite,
                                        resolve_shifts,
)
from sparsenu.eval.suite.runner import BenchmarkResult, run_benchmark

__all__ = ["SuiteConfig", "SuiteDataConfig", "MethodSpec", "ShiftSpec", "TargetSpec", "SuiteEvalConfig",
           "ResolvedShift", "BenchmarkResult", "load_suite", "resolve_shifts", "run_benchmark"]
