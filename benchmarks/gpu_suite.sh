#!/usr/bin/env bash
# The GPU suite and the CUDA tests, in under 8 minutes on one H100/H200:
#   bash benchmarks/gpu_suite.sh            # results in $OUT if set, else ./gpu-results
# Writes gpu_suite.json / gpu_suite.md (benchmarks/gpu_suite.py, sections capped at 370 s in all), suite.log,
# pytest-gpu.log and pytest-gpu.xml (pytest -m gpu). Extra arguments go to gpu_suite.py (e.g. --no-compile).
set -u
cd "$(dirname "$0")/.."
dest="${OUT:-./gpu-results}"
mkdir -p "$dest"
timeout 400 python benchmarks/gpu_suite.py --out "$dest" "$@" 2>&1 | tee "$dest/suite.log"
suite=${PIPESTATUS[0]}
timeout 75 python -m pytest -m gpu -q -p no:cacheprovider tests --junitxml "$dest/pytest-gpu.xml" 2>&1 \
    | tee "$dest/pytest-gpu.log"
tests=${PIPESTATUS[0]}
echo "gpu_suite.py exit $suite, pytest -m gpu exit $tests; results in $dest"
[ "$suite" -eq 0 ] && [ "$tests" -eq 0 ]
