#!/usr/bin/env bash
# The CUDA path, checked on a real GPU in one prepared run (issue 15). Run from the repo root
# on a machine with a CUDA GPU; results go to ${OUT:-gpu_check} (logs + summary.txt).
#
#   OUT=/tmp/gpu bash tools/gpu_check.sh
#
# 1. the whole test suite with CUDA available (CUDA-marked tests run instead of skipping);
# 2. a short `sparsenu train` on CUDA, then `torchrun` with NCCL (world size 1 still runs the
#    NCCL collectives) for two epochs and a resume to a third;
# 3. tools/bench_sparse.py on CUDA: the bench batch and the paper-size preset, native and
#    spconv's CUDA wheel (installed with --no-deps, torch untouched), then bf16 autocast.
# Every step runs even if an earlier one failed; summary.txt says which passed.
set -uo pipefail
OUT="${OUT:-gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
summary="$OUT/summary.txt"
: > "$summary"
step() {  # step NAME TIMEOUT_S CMD...
    local name="$1" t="$2"; shift 2
    local t0=$SECONDS
    timeout "$t" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$summary"
}
"$PY" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))' \
    > "$OUT/env.log" 2>&1
step pytest 420 "$PY" -m pytest -q -x -rs
CFG=cfg/tiny_simclr.yaml
step train_cuda 240 sparsenu train "$CFG" --out "$OUT/run_cuda" -q device=cuda optim.epochs=2
# torchrun + NCCL: killed once its 2nd epoch is checkpointed, then resumed to the 3rd
cat > "$OUT/kill_resume.py" <<'PY'
import subprocess, sys, time, torch
out, cfg = sys.argv[1], sys.argv[2]
cmd = ["torchrun", "--nproc_per_node=1", "-m", "sparsenu", "train", cfg, "--out", out, "-q",
       "device=cuda", "optim.epochs=3"]
p = subprocess.Popen(cmd)
t0 = time.time()
while p.poll() is None and time.time() - t0 < 200:
    try:
        if torch.load(f"{out}/last.pt", weights_only=True, map_location="cpu")["epoch"] >= 2:
            p.kill(); break
    except Exception:
        pass
    time.sleep(0.2)
p.wait()
r = subprocess.run(cmd + ["--resume"])
state = torch.load(f"{out}/last.pt", weights_only=True, map_location="cpu")
print("resumed:", r.returncode, "epoch", state["epoch"], "finalized", state["finalized"])
sys.exit(r.returncode or int(state["epoch"] != 3))
PY
step torchrun_nccl_kill_resume 420 "$PY" "$OUT/kill_resume.py" "$OUT/run_nccl" "$CFG"
step bench_native 240 "$PY" tools/bench_sparse.py --device cuda --steps 10
step bench_native_paper 240 "$PY" tools/bench_sparse.py --device cuda --steps 5 --preset paper
step bench_native_bf16 240 "$PY" tools/bench_sparse.py --device cuda --steps 10 --amp bf16
step install_spconv 240 bash tools/install_spconv.sh --cuda
step bench_spconv 240 "$PY" tools/bench_sparse.py --device cuda --steps 10 --backend spconv
step bench_spconv_paper 240 "$PY" tools/bench_sparse.py --device cuda --steps 5 --backend spconv --preset paper
step pytest_backends 240 "$PY" -m pytest -q tests/test_sparse_backends.py -rs
grep -h "events/s\|peak GPU" "$OUT"/bench_*.log >> "$summary" 2>/dev/null
cat "$summary"
