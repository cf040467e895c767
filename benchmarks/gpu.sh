#!/usr/bin/env bash
# The GPU checks in one command (`make bench-gpu`): the `cuda` tests, cnnbook.ops against cuDNN and
# training throughput against torchvision, written into benchmarks/RESULTS.md (its GPU section) and
# benchmarks/RESULTS-gpu.json. Under 6 minutes on one recent GPU.
#
#   bash benchmarks/gpu.sh             # on a CUDA machine; stops at once, non-zero, without one
#   bash benchmarks/gpu.sh --dry-run   # every stage on the CPU, tiny sizes, the tests only collected
#                                      # (pytest -m cuda --collect-only -q), output in a temporary folder
#   bash benchmarks/gpu.sh --help      # every option
#
# Uses .venv/bin/python when there is one (the project's environment), else $PYTHON, else python.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -x .venv/bin/python ]; then
    python=.venv/bin/python
else
    python=${PYTHON:-python}
fi
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" benchmarks/bench_gpu.py "$@"
