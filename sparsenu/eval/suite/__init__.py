"""The domain-shift benchmark: ``sparsenu benchmark SUITE.yaml --out DIR``.

Three small modules, in the order the work happens:

- :mod:`~sparsenu.eval.suite.config`: the suite file (:class:`SuiteConfig`), shifts resolved
  into concrete detectors (:func:`resolve_shifts`);
- :mod:`~sparsenu.eval.suite.data`: every data set, from the one simulated-data cache;
- :mod:`~sparsenu.eval.suite.jobs`: training runs (through :func:`sparsenu.train.train`), one
  per (method, hyper-parameter trial, seed);
- :mod:`~sparsenu.eval.suite.runner`: the run (training, evaluation with
  :func:`sparsenu.eval.evaluate.evaluate_checkpoint`, test-time adaptation with
  :mod:`~sparsenu.eval.suite.tta_eval`);
- :mod:`~sparsenu.eval.suite.report_step` and :mod:`~sparsenu.eval.suite.analysis`: the report,
  from the caches alone (``python -m sparsenu.eval.suite report DIR``).
"""
from sparsenu.eval.suite.config import (
                                        MethodSpec,
                                        ReportSpec,
                                        ResolvedShift,
                                        SearchSpec,
                                        SeveritySpec,
                                        ShiftSpec,
                                        SuiteConfig,
                                        SuiteDataConfig,
                                        SuiteEvalConfig,
                                        TargetSpec,
                                        TTASpec,
                                        load_suite,
                                        resolve_shifts,
)
from sparsenu.eval.suite.report_step import make_report
from sparsenu.eval.suite.runner import BenchmarkResult, run_benchmark

__all__ = ["SuiteConfig", "SuiteDataConfig", "MethodSpec", "ShiftSpec", "TargetSpec", "SuiteEvalConfig",
           "SeveritySpec", "SearchSpec", "TTASpec", "ReportSpec", "ResolvedShift", "BenchmarkResult",
           "load_suite", "resolve_shifts", "run_benchmark", "make_report"]
