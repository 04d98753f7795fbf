#!/usr/bin/env bash
# bench.students runs on a lent GPU (the session's `device` tool), a machine that reaches no registry.
#
#   here:  .venv/bin/python -m bench.zoo_carry pack .gpu/zoo models/all-minilm-l6-v2 corpora/corpus-en datasets/rotten-tomatoes
#          (.gpu is listed in .git/info/exclude; the call names it in `carry`; 53 MiB of the 64 that may travel)
#   there: bash bench/students_gpu.sh GROUP:VARIANT:TOKENS:TASK:SEED ...
#   back:  tar -xzf <files_at>/runs.tgz -C bench/results/students-h200 && python -m bench.students table --results bench/results/students-h200
#
# The runs go in the order given, in one process (bench.students, the machine's own python3 and packages); their
# records are tarred into $OUT/runs.tgz every 10 s and at the end, so a call stopped at its limit still brings back
# every finished run. The teacher there is the zoo's with its weights rounded to float16 (bench/zoo_carry.py).
set -uo pipefail
export PYTHONUNBUFFERED=1 MINILM_CACHE=/tmp/minilm-cache
OUT=${OUT:-/tmp/students-gpu-out}
RESULTS=/tmp/students-gpu
mkdir -p "$OUT" "$RESULTS/runs"
python3 -m bench.zoo_carry unpack .gpu/zoo "$MINILM_CACHE" || exit 1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, transformers.__version__)"
  nproc; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
save() { tar -czf "$OUT/runs.tgz.part" -C "$RESULTS" runs && mv "$OUT/runs.tgz.part" "$OUT/runs.tgz"; }
( while sleep 10; do save; done ) &
saver=$!
only=()
for run in "$@"; do only+=(--only "$run"); done
python3 -m bench.students run --results "$RESULTS" --work /tmp/students-gpu-work "${only[@]}" > "$OUT/log.txt" 2>&1 &
job=$!
# the reply carries the output's tail: one line per finished run, not the progress bars
( tail -n +1 -f "$OUT/log.txt" --pid=$job | grep --line-buffered -E "^students:|Error|error|Traceback" ) &
wait $job
rc=$?
kill $saver 2>/dev/null
save
ls "$RESULTS/runs"
tail -n 30 "$OUT/log.txt"
exit $rc
