"""Probes on frozen embeddings: a linear probe and a cosine kNN classifier.

Both follow the scikit-learn estimator contract (hyperparameters only in
``__init__``, ``fit`` returns ``self``, fitted state ends with ``_``), so they
work with ``sklearn.base.clone``, pipelines and grid searches. They are fitted on
embeddings of labelled *nominal* training events without augmentation, as in the
evaluation protocol of arXiv:2502.07724, and scored on nominal and shifted test
sets.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

__all__ = ["LinearProbe", "KNNProbe", "accuracy", "balanced_accuracy"]


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of correct predictions (``nan`` for an empty set)."""
    y_true = np.asarray(y_true)
    if y_true.size == 0:
        return float("nan")
    return float(accuracy_score(y_true, y_pred))


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true``.

    Insensitive to class imbalance (the suite's test sets are balanced, but a
    shifted detector may lose events of one class). ``nan`` for an empty set.
    """
    y_true = np.asarray(y_true)
    if y_true.size == 0:
        return float("nan")
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true" is expected and harmless here.
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y_true, y_pred))


class _ProbeMixin(ClassifierMixin):
    """``score`` (accuracy, from ClassifierMixin) plus ``balanced_score``."""

    def balanced_score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Balanced accuracy of ``predict(X)`` against ``y``.

        Parameters
        ----------
        X : array [E, D]
            Embeddings.
        y : array [E]
            Integer class labels.
        """
        return balanced_accuracy(y, self.predict(X))


class LinearProbe(_ProbeMixin, BaseEstimator):
    """Standardise embeddings, then multinomial logistic regression.

    Parameters
    ----------
    C : float
        Inverse L2 regularisation strength of the logistic regression.
    max_iter : int
        Iterations of the L-BFGS solver (embeddings of a few thousand events
        with a few hundred dimensions converge well within the default).

    Attributes
    ----------
    pipeline_ : sklearn.pipeline.Pipeline
        The fitted ``StandardScaler`` + ``LogisticRegression``.
    converged_ : bool
        Whether the solver converged within ``max_iter`` (a ``ConvergenceWarning`` is
        recorded here instead of being printed; other warnings pass through).
    classes_ : ndarray [n_classes]
        Class labels seen in ``fit``.
    n_features_in_ : int
        Embedding dimension D.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 2000):
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:
        """Fit on embeddings ``X`` [E, D] (float) and labels ``y`` [E] (int)."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"expected X [E, D] and y [E], got {X.shape} and {y.shape}")
        self.pipeline_ = Pipeline(
            [
                ("scale", StandardScaler()),
                ("logreg", LogisticRegression(C=self.C, max_iter=self.max_iter)),
            ]
        )
        with warnings.catch_warnings(record=True) as caught:
            # a probe that has not fully converged is still a valid (slightly pessimistic)
            # probe: recorded in ``converged_`` (and reported) instead of printed per fit
            warnings.simplefilter("always", ConvergenceWarning)
            self.pipeline_.fit(X, y)
        for w in caught:  # anything else is re-emitted as it came
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        self.classes_ = self.pipeline_.classes_
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities [E, n_classes]."""
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.predict_proba(np.asarray(X, dtype=np.float64))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels [E]."""
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.predict(np.asarray(X, dtype=np.float64))


class KNNProbe(_ProbeMixin, BaseEstimator):
    """k-nearest-neighbour vote with cosine distance (brute force, exact).

    Parameters
    ----------
    k : int
        Number of neighbours (clipped to the training set size).
    metric : str
        Any metric of ``sklearn.neighbors.KNeighborsClassifier``; default
        ``"cosine"`` (1 - cosine similarity), which ignores embedding norms.
    weights : {"uniform", "distance"}
        Vote weighting.

    Attributes
    ----------
    knn_ : sklearn.neighbors.KNeighborsClassifier
    classes_ : ndarray [n_classes]
    n_features_in_ : int
    """

    def __init__(self, k: int = 20, metric: str = "cosine", weights: str = "uniform"):
        self.k = k
        self.metric = metric
        self.weights = weights

    def fit(self, X: np.ndarray, y: np.ndarray) -> KNNProbe:
        """Store embeddings ``X`` [E, D] and labels ``y`` [E]."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"expected X [E, D] and y [E], got {X.shape} and {y.shape}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        self.knn_ = KNeighborsClassifier(
            n_neighbors=min(int(self.k), len(X)),
            metric=self.metric,
            weights=self.weights,
            algorithm="brute",
        ).fit(X, y)
        self.classes_ = self.knn_.classes_
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Neighbour vote fractions [E, n_classes]."""
        check_is_fitted(self, "knn_")
        return self.knn_.predict_proba(np.asarray(X, dtype=np.float64))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Majority label among the k nearest training embeddings [E]."""
        check_is_fitted(self, "knn_")
        return self.knn_.predict(np.asarray(X, dtype=np.float64))
