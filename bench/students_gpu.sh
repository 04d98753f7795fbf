#!/usr/bin/env bash
# bench.students runs on a lent GPU (the session's `device` tool), a machine that reaches no registry.
#
#   here:  .venv/bin/python -m bench.zoo_carry pack .gpu/zoo models/all-minilm-l6-v2 corpora/corpus-en datasets/rotten-tomatoes
#          (.gpu is listed in .git/info/exclude; the call names it in `carry`; 53 MiB of the 64 that may travel)
#   there: bash bench/students_gpu.sh GROUP:VARIANT:TOKENS:TASK:SEED ... [-- GROUP:VARIANT:TOKENS:TASK:SEED ...]
#   back:  tar -xzf <files_at>/runs.tgz -C bench/results/students-h200 && python -m bench.students table --results bench/results/students-h200
#
# Each `--`-separated list of runs is one stream: one process (bench.students, the machine's own python3 and
# packages) that does its runs in the order given. The streams run side by side on the one GPU: a 3x384 step at
# batch 32 x 64 is bound by kernel launches, so a second process fills the GPU's idle time. Streams must not share
# a model folder they build (two t1 runs of one task and seed build the same fine-tuned teacher: one stream).
# The records already in bench/results/students-h200/runs are copied in first, so a run recorded there is skipped
# and a model redone there is recorded as a redo (`-remade-`), as on the CPUs. The records are tarred into
# $OUT/runs.tgz every 10 s and at the end, so a call stopped at its limit still brings back every finished run.
# The teacher there is the zoo's with its weights rounded to float16 (bench/zoo_carry.py).
# ZOO names another pack than .gpu/zoo: the base-size teacher's (210 MiB in float16) travels in parts over
# several calls and is joined there first (bench/zoo_carry.py's docstring; bench/results/students-h200/README.md):
#   python3 -m bench.zoo_carry join /tmp/parts /tmp/zoo-mpnet && ZOO=/tmp/zoo-mpnet bash bench/students_gpu.sh RUN...
set -uo pipefail
export PYTHONUNBUFFERED=1 MINILM_CACHE=/tmp/minilm-cache
OUT=${OUT:-/tmp/students-gpu-out}
RESULTS=/tmp/students-gpu
mkdir -p "$OUT" "$RESULTS/runs"
cp bench/results/students-h200/runs/*.json "$RESULTS/runs/" 2>/dev/null
python3 -m bench.zoo_carry unpack "${ZOO:-.gpu/zoo}" "$MINILM_CACHE" || exit 1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, transformers.__version__)"
  nproc; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
save() { tar -czf "$OUT/runs.tgz.part" -C "$RESULTS" runs && mv "$OUT/runs.tgz.part" "$OUT/runs.tgz"; }
( while sleep 10; do save; done ) &
saver=$!
streams=() only=() logs=()
start() {  # one stream: the runs gathered in $only
  local log="$OUT/log${#streams[@]}.txt"
  python3 -m bench.students run --results "$RESULTS" --work /tmp/students-gpu-work "${only[@]}" > "$log" 2>&1 &
  streams+=($!) logs+=("$log") only=()
}
for run in "$@"; do
  if [ "$run" = "--" ]; then start; else only+=(--only "$run"); fi
done
[ ${#only[@]} -gt 0 ] && start
# the reply carries the output's tail: one line per finished run, not the progress bars
tail -n +1 -q -F "${logs[@]}" 2>/dev/null | grep --line-buffered -E "^students:|Error|error|Traceback" &
follower=$!
rc=0
for job in "${streams[@]}"; do wait "$job" || rc=$?; done
kill $saver 2>/dev/null
pkill -P $$ tail 2>/dev/null; kill $follower 2>/dev/null
save
ls "$RESULTS/runs"
for log in "${logs[@]}"; do echo "== $log"; tail -n 15 "$log"; done
exit $rc
