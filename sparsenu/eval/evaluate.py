"""Evaluation of one checkpoint on nominal and shifted test sets (cached per test set).

Works on a checkpoint and sparse-tensor files only: the frozen encoder embeds the nominal
training set (no augmentation), a linear probe and a cosine kNN are fitted there, and every
test set is scored with both, with the model's own classifier head where it has one, and
with the sensitivity (cosine distance between nominal and shifted embeddings of the same
events).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sparsenu.data.formats.base import read_json, write_json_atomic
from sparsenu.errors import SparsenuError
from sparsenu.eval.embeddings import compute_embeddings, load_embeddings, open_eval_dataset, write_embeddings
from sparsenu.eval.sensitivity import sensitivity
from sparsenu.keys import config_hash, file_key, file_sha256
from sparsenu.models.probe import KNNProbe, LinearProbe, accuracy, balanced_accuracy
from sparsenu.train import load_checkpoint

__all__ = ["evaluate_checkpoint", "EVAL_VERSION"]

#: Bumped when the evaluation changes meaning (cached rows are then recomputed).
EVAL_VERSION = 1


def _embed_cached(model: Any, ckpt_sha: str, dataset_path: Path, out: Path, batch_size: int,
                  device: str, progress: bool, desc: str, need_logits: bool = False):
    """Embeddings (and head logits) of a file, cached as an embeddings file."""
    key = config_hash({"ckpt": ckpt_sha, "data": file_key(dataset_path), "v": EVAL_VERSION})
    if out.is_file() and not need_logits:
        try:
            e = load_embeddings(out)
            if e["attrs"].get("cache_key") == key:
                return e["embeddings"], e["labels"], e["event_id"], None
        except SparsenuError:
            pass
    ds = open_eval_dataset(dataset_path, model.config)
    head = model.heads.get("classifier") if need_logits else None
    encoder = _EncoderWithLogits(model.encoder, head) if head is not None else model.encoder
    emb, labels, ids = compute_embeddings(encoder, ds, batch_size=batch_size, device=device,
                                          progress=progress, desc=desc)
    logits = encoder.pop_logits() if head is not None else None
    write_embeddings(out, emb, ids, labels, {"cache_key": key, "input": str(dataset_path),
                                             "checkpoint_sha256": ckpt_sha, "method": model.method},
                     overwrite=True)
    return emb, labels, ids, logits


class _EncoderWithLogits:
    """Wraps an encoder so one forward pass gives embeddings and keeps head logits."""

    def __init__(self, encoder: Any, head: Any) -> None:
        self.encoder, self.head, self._logits = encoder, head, []
        self.embed_dim = getattr(encoder, "embed_dim", 0)

    @property
    def training(self) -> bool:
        return self.encoder.training

    def eval(self):
        self.encoder.eval()
        self.head.eval()
        return self

    def train(self, mode: bool = True):
        self.encoder.train(mode)
        return self

    def to(self, device):
        self.encoder.to(device)
        self.head.to(device)
        return self

    def __call__(self, x):
        z = self.encoder(x)
        self._logits.append(self.head(z).float().cpu().numpy())
        return z

    def pop_logits(self) -> np.ndarray:
        out = np.concatenate(self._logits) if self._logits else np.zeros((0, 0), np.float32)
        self._logits = []
        return out


def evaluate_checkpoint(
    checkpoint: str | Path,
    train_path: Path,
    test_sets: dict[str, Path],
    eval_dir: Path,
    *,
    knn_k: int = 20,
    batch_size: int = 64,
    device: str = "cpu",
    probe_c: float = 1.0,
    probe_max_iter: int = 2000,
    nominal: str = "nominal",
    progress: bool = True,
) -> dict[str, dict]:
    """Evaluate one checkpoint on several test sets (cached per test set).

    Parameters
    ----------
    checkpoint : path
        Trained model; its encoder is frozen (projection head dropped).
    train_path : path
        Nominal labelled training set (sparse-tensor file): the probes are fitted
        on its embeddings, without augmentation.
    test_sets : dict name -> path
        Must contain ``nominal``; the sensitivity of every other set is measured
        against it, matching events by event id.
    eval_dir : path
        Cache directory (embeddings files and ``rows.json``).

    Returns
    -------
    dict test-set name -> metrics (accuracy, balanced_accuracy, knn_accuracy,
    head_accuracy, head_balanced_accuracy, sensitivity, n_events).
    """
    checkpoint = Path(checkpoint)
    eval_dir.mkdir(parents=True, exist_ok=True)
    ckpt_sha = file_sha256(checkpoint)
    eval_cfg = {"knn_k": knn_k, "probe_c": probe_c, "probe_max_iter": probe_max_iter,
                "train": file_key(train_path), "ckpt": ckpt_sha, "v": EVAL_VERSION}
    nominal_key = file_key(test_sets[nominal])
    keys = {name: config_hash({**eval_cfg, "test": file_key(p), "nominal": nominal_key})
            for name, p in test_sets.items()}
    rows_path = eval_dir / "rows.json"
    cached = read_json(rows_path, "evaluation cache") or {}
    results = {n: cached[n]["metrics"] for n in test_sets
               if isinstance(cached.get(n), dict) and cached[n].get("key") == keys[n]}
    todo = [n for n in test_sets if n not in results]
    if not todo:
        return results

    model = load_checkpoint(checkpoint, map_location="cpu")
    has_head = "classifier" in model.heads
    emb_tr, lab_tr, _, _ = _embed_cached(model, ckpt_sha, train_path, eval_dir / "train.h5",
                                         batch_size, device, progress, "embed train")
    known = lab_tr >= 0
    linear = LinearProbe(C=probe_c, max_iter=probe_max_iter).fit(emb_tr[known], lab_tr[known])
    knn = KNNProbe(k=knn_k).fit(emb_tr[known], lab_tr[known])

    nom_path = eval_dir / f"test_{nominal}.h5"
    order = [nominal] + [n for n in todo if n != nominal] if nominal in todo else todo
    nom_emb = nom_ids = None
    for name in order:
        emb, lab, ids, logits = _embed_cached(model, ckpt_sha, test_sets[name], eval_dir / f"test_{name}.h5",
                                              batch_size, device, progress, f"embed {name}",
                                              need_logits=has_head)
        if name == nominal:
            nom_emb, nom_ids = emb, ids
        elif nom_emb is None:  # nominal row cached: its embeddings are too
            nom_emb, _, nom_ids, _ = _embed_cached(model, ckpt_sha, test_sets[nominal], nom_path,
                                                   batch_size, device, progress, f"embed {nominal}")
        m = lab >= 0
        metrics: dict[str, Any] = {"n_events": int(m.sum())}
        if m.any():
            pred = linear.predict(emb[m])
            metrics["accuracy"] = accuracy(lab[m], pred)
            metrics["balanced_accuracy"] = balanced_accuracy(lab[m], pred)
            metrics["knn_accuracy"] = accuracy(lab[m], knn.predict(emb[m]))
            if logits is not None and len(logits) == len(lab):
                hp = logits[m].argmax(1)
                metrics["head_accuracy"] = accuracy(lab[m], hp)
                metrics["head_balanced_accuracy"] = balanced_accuracy(lab[m], hp)
        if name == nominal:
            metrics["sensitivity"] = 0.0
        else:
            metrics["sensitivity"] = sensitivity(nom_emb, nom_ids, emb, ids).mean
        results[name] = metrics
        cached[name] = {"key": keys[name], "metrics": metrics}
        write_json_atomic(rows_path, cached)
    return results
