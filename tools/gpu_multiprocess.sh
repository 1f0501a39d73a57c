#!/usr/bin/env bash
# Pretraining across two processes on a 2-GPU machine (one process per GPU, process 0 serving the
# coordinator on loopback), against one process driving both GPUs with the same global batch.
#
#   tools/gpu_multiprocess.sh TPU_RUN [TEXT_FILE VOCAB_TXT]
#
# TPU_RUN is the tpu-run binary (the machine needs no cargo and no network). With TEXT_FILE and
# VOCAB_TXT, 4 TFRecord shards are made from the text with `tpu-run create-data`; without them
# the runs use synthetic batches. Runs, each with its own output directory under $WORK:
#
#   two        2 processes (CUDA_VISIBLE_DEVICES=0 / =1), STEPS steps uninterrupted
#   two-resume the same, stopped after CKPT_AT steps (the checkpoint of step CKPT_AT written by
#              process 0 with both processes' data positions), then both resumed from it
#   kill       2 processes on a long run; process 1 is SIGKILLed once process 0 logged a step:
#              process 0 must stop by itself with an error naming process 1
#   one        1 process with --num-devices 2 on both GPUs, the same global batch
#
# Then it prints the loss of every step of each run, side by side. Expected: `two` and
# `two-resume` agree (same data, same steps; equal or nearly so), `two` and `one` agree closely
# but not bit for bit (each process draws its own data). Logs go to $OUT when it is set (else
# $WORK); every process runs under `timeout`.
#
# Settings (environment): PHASES ("two two-resume kill one": which runs, in that order), PRESET (mini), PRECISION (bf16), BATCH (32, global), SEQ (128),
# PRED (20), STEPS (50), CKPT_AT (25), PORT (a free one from 29400), LIMIT (600 s per process),
# WORK (/tmp/gpu_multiprocess); BACKEND (cuda; `cpu` smoke-tests this script elsewhere: there
# the two-process runs are refused by the CPU plugin and only `one` trains).
set -uo pipefail

BIN=${1:?usage: tools/gpu_multiprocess.sh TPU_RUN [TEXT_FILE VOCAB_TXT]}
TEXT=${2:-}
VOCAB=${3:-}
PRESET=${PRESET:-mini}
PRECISION=${PRECISION:-bf16}
BATCH=${BATCH:-32}
SEQ=${SEQ:-128}
PRED=${PRED:-20}
STEPS=${STEPS:-50}
CKPT_AT=${CKPT_AT:-25}
LIMIT=${LIMIT:-600}
WORK=${WORK:-/tmp/gpu_multiprocess}
LOGS=${OUT:-$WORK}
# Errors without backtraces in the logs (RUST_LIB_BACKTRACE=1 brings them back).
export RUST_LIB_BACKTRACE=${RUST_LIB_BACKTRACE:-0}
# The coordinator's run token, the same for both processes (docs/tpu.md: the coordinator's
# security); a fresh random one unless given.
export TPU_RUN_COORDINATOR_TOKEN=${TPU_RUN_COORDINATOR_TOKEN:-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')}

BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
[ -x "$BIN" ] || { echo "not an executable: $BIN" >&2; exit 2; }
rm -rf "$WORK"
mkdir -p "$WORK" "$LOGS"

free_port() {
    local p=${PORT:-29400}
    while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
    echo "$p"
}

DATA=(--synthetic-data)
if [ -n "$TEXT" ]; then
    [ -n "$VOCAB" ] || { echo "TEXT_FILE needs VOCAB_TXT too (no network here)" >&2; exit 2; }
    echo "== create-data: 4 shards from $TEXT"
    timeout -k 10 "$LIMIT" "$BIN" create-data --input "$TEXT" --vocab "$VOCAB" --output "$WORK/shards" \
        --max-seq-length "$SEQ" --max-predictions-per-seq "$PRED" --num-shards 4 \
        --dupe-factor 2 --quiet >"$LOGS/create-data.log" 2>&1 ||
        { echo "create-data failed; see $LOGS/create-data.log" >&2; tail -5 "$LOGS/create-data.log"; exit 1; }
    DATA=(--data "$WORK/shards/*.tfrecord")
fi

COMMON=(pretrain --backend "${BACKEND:-cuda}" --preset "$PRESET" --precision "$PRECISION"
    --batch-size "$BATCH" --seq-len "$SEQ" --max-predictions "$PRED" --warmup-steps 5
    --log-every 1 "${DATA[@]}")
SCHEDULE=(--steps "$STEPS" --checkpoint-interval "$CKPT_AT")

# pair NAME LOGTAG [flags...]: processes 0 and 1 of a 2-process run into $WORK/NAME; waits.
pair() {
    local name=$1 tag=$2
    shift 2
    local port t0=$SECONDS
    port=$(free_port)
    local pids=()
    for id in 0 1; do
        CUDA_VISIBLE_DEVICES=$id timeout -k 10 "$LIMIT" "$BIN" "${COMMON[@]}" \
            --coordinator "127.0.0.1:$port" --num-processes 2 --process-id "$id" \
            --output-dir "$WORK/$name/out-$id" --checkpoint-dir "$WORK/$name/ckpt" "$@" \
            >"$LOGS/$name-$tag-p$id.log" 2>&1 &
        pids+=($!)
    done
    local rc=0
    for id in 0 1; do
        wait "${pids[$id]}" || {
            rc=$?
            echo "process $id of $name ($tag) exited with $rc; see $LOGS/$name-$tag-p$id.log" >&2
            grep -v "^\s*$" "$LOGS/$name-$tag-p$id.log" | tail -6 | sed 's/^/   | /' >&2
        }
    done
    echo "   $name ($tag): $((SECONDS - t0)) s"
    return $rc
}

PHASES=${PHASES:-two two-resume kill one}
phase() { [[ " $PHASES " == *" $1 "* ]]; }
status=0
if phase two; then
echo "== two: 2 processes x 1 GPU, $STEPS steps"
pair two run "${SCHEDULE[@]}" || status=1
fi

if phase two-resume; then
echo "== two-resume: stopped after $CKPT_AT steps, then both resumed from the checkpoint"
pair two-resume first "${SCHEDULE[@]}" --stop-after "$CKPT_AT" || status=1
ls "$WORK/two-resume/ckpt" 2>/dev/null | sed 's/^/   checkpoint: /'
pair two-resume resumed "${SCHEDULE[@]}" || status=1
grep -h "resumes from\|resumed from" "$LOGS"/two-resume-resumed-p*.log | sed 's/^/   /'
fi

if phase kill; then
echo "== kill: process 1 SIGKILLed mid-run; process 0 must stop naming it"
port=$(free_port)
for id in 0 1; do
    CUDA_VISIBLE_DEVICES=$id timeout -k 10 "$LIMIT" "$BIN" "${COMMON[@]}" --steps 1000000 \
        --checkpoint-interval 1000000 --coordinator "127.0.0.1:$port" --num-processes 2 \
        --process-id "$id" --output-dir "$WORK/kill/out-$id" --checkpoint-dir "$WORK/kill/ckpt" \
        >"$LOGS/kill-p$id.log" 2>&1 &
    eval "kill_pid$id=$!"
done
# Process 0 logs every step (--log-every 1); metrics.jsonl is buffered, so watch the log.
for _ in $(seq 1 "$LIMIT"); do
    grep -q "step [0-9]*: loss" "$LOGS/kill-p0.log" 2>/dev/null && break
    kill -0 "$kill_pid0" 2>/dev/null || break
    sleep 1
done
# $kill_pid1 is the `timeout` wrapper: SIGKILL the tpu-run under it, then the wrapper.
pkill -9 -P "$kill_pid1" 2>/dev/null
kill -9 "$kill_pid1" 2>/dev/null
t0=$(date +%s)
wait "$kill_pid0"
rc0=$?
wait "$kill_pid1" 2>/dev/null
echo "   process 0 exited with $rc0, $(($(date +%s) - t0)) s after the kill (124 = timeout: it hung)"
tail -4 "$LOGS/kill-p0.log" | sed 's/^/   /'
[ "$rc0" -ne 0 ] && [ "$rc0" -ne 124 ] || status=1
fi

if phase one; then
echo "== one: 1 process x 2 GPUs (--num-devices 2), $STEPS steps"
CUDA_VISIBLE_DEVICES=0,1 timeout -k 10 "$LIMIT" "$BIN" "${COMMON[@]}" "${SCHEDULE[@]}" --num-devices 2 \
    --output-dir "$WORK/one/out" --checkpoint-dir "$WORK/one/ckpt" \
    >"$LOGS/one.log" 2>&1 || { echo "one: exited with $?; see $LOGS/one.log" >&2; status=1; }
fi

# losses FILE: "step loss" per train record of a metrics.jsonl.
losses() {
    [ -f "$1" ] || return 0
    grep '"kind":"train"' "$1" | while read -r line; do
        step=$(echo "$line" | grep -o '"step":[0-9]*' | cut -d: -f2)
        loss=$(echo "$line" | grep -o '"loss":[^,}]*' | cut -d: -f2)
        echo "$step $loss"
    done
}
losses "$WORK/two/out-0/metrics.jsonl" >"$WORK/two.loss"
losses "$WORK/two-resume/out-0/metrics.jsonl" >"$WORK/two-resume.loss"
losses "$WORK/one/out/metrics.jsonl" >"$WORK/one.loss"

echo "== losses (two-process runs: process 0's metrics.jsonl)"
awk '
    FILENAME ~ /two.loss$/        { a[$1] = $2; steps[$1] = 1 }
    FILENAME ~ /two-resume.loss$/ { b[$1] = $2; steps[$1] = 1 }
    FILENAME ~ /one.loss$/        { c[$1] = $2; steps[$1] = 1 }
    END {
        printf "%6s %12s %12s %12s\n", "step", "two", "two-resume", "one(2 GPUs)"
        n = 0; for (s in steps) order[++n] = s + 0
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (order[j] < order[i]) { t = order[i]; order[i] = order[j]; order[j] = t }
        for (i = 1; i <= n; i++) {
            s = order[i]
            printf "%6d %12s %12s %12s\n", s, (s in a ? a[s] : "-"), (s in b ? b[s] : "-"), (s in c ? c[s] : "-")
            if ((s in a) && (s in b)) { d = a[s] - b[s]; if (d < 0) d = -d; if (d > dres) dres = d }
            if ((s in a) && (s in c)) { d = a[s] - c[s]; if (d < 0) d = -d; sum += d / (c[s] > 0 ? c[s] : 1); m++ }
        }
        printf "max |two - two-resume|: %g\n", dres
        if (m) printf "mean |two - one| / one: %.4f over %d steps\n", sum / m, m
    }' "$WORK/two.loss" "$WORK/two-resume.loss" "$WORK/one.loss" | tee "$LOGS/losses.txt"

echo "== status: $([ $status -eq 0 ] && echo ok || echo FAILED)"
exit $status
