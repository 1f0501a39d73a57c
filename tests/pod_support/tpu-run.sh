#!/usr/bin/env bash
# Stands in for tpu-run on a fake worker (tests/pod_cli.rs): `plugin list` reports libtpu,
# `pretrain` prints a progress line and then, by $FAKE_MODE: ok (exit 0), fail1 (process 1
# exits 3), wait (runs until SIGTERM, as pretrain does: "checkpoint", exit 143; at most 60 s).
if [ "$1" = plugin ]; then
  echo "tpu      libtpu               0.117   /fake/libtpu.so"
  exit 0
fi
id=""
prev=""
for a in "$@"; do
  [ "$prev" = --process-id ] && id="$a"
  prev="$a"
done
echo "argv: $*"
echo "step 1 loss 7.25 (process $id)"
case "${FAKE_MODE:-ok}" in
  ok) exit 0 ;;
  fail1)
    if [ "$id" = 1 ]; then
      echo "process 1: out of memory"
      exit 3
    fi
    exit 0
    ;;
  wait)
    trap 'echo "SIGTERM: checkpoint written at step 1, exiting"; exit 143' TERM
    for _ in $(seq 600); do sleep 0.1; done
    echo "no SIGTERM within 60 s"
    exit 9
    ;;
esac
