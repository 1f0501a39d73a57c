#!/usr/bin/env bash
# A stand-in for gcloud, for tests/pod_cli.rs (nothing here reaches a network).
#
# Every call appends its arguments to $FAKE_GCLOUD_DIR/calls.log, one line a call, the
# arguments separated by the unit separator (0x1f). With FAKE_GCLOUD_RECORD_ONLY set it stops
# there. Otherwise:
# - describe/create/delete play back responses/<group>-<verb>.<n>.sh (the n-th such call) or
#   responses/<group>-<verb>.sh, sourced (they print JSON or an error and may `exit N`);
#   with neither, the call succeeds silently;
# - `tpu-vm ssh --worker=W --command=C` runs C with bash in worker W's stand-in home directory
#   $FAKE_GCLOUD_DIR/wW (W=all: every worker in turn, the count in $FAKE_GCLOUD_DIR/workers);
#   a file ssh-fail-once.W makes the next single-worker ssh to W fail as a lost connection does
#   (exit status 255) and is removed;
# - `tpu-vm scp` copies between this machine and those directories.
set -u
D="$FAKE_GCLOUD_DIR"
line=""
for a in "$@"; do line+="$a"$'\x1f'; done
echo "$line" >>"$D/calls.log"
[ -n "${FAKE_GCLOUD_RECORD_ONLY:-}" ] && exit 0

worker=0 command="" pos=()
for a in "$@"; do
  case "$a" in
    --worker=*) worker="${a#--worker=}" ;;
    --command=*) command="${a#--command=}" ;;
    --*) ;;
    *) pos+=("$a") ;;
  esac
done
group="${pos[2]}" verb="${pos[3]}"
if [ "$worker" = all ]; then
  workers=$(seq 0 $(($(cat "$D/workers") - 1)))
else
  workers="$worker"
fi

case "$verb" in
  ssh)
    if [ "$worker" != all ] && [ -e "$D/ssh-fail-once.$worker" ]; then
      rm "$D/ssh-fail-once.$worker"
      echo "ssh: connect to host 10.0.0.$worker port 22: Connection refused" >&2
      exit 255
    fi
    rc=0
    for w in $workers; do
      (cd "$D/w$w" && HOME="$D/w$w" bash -c "$command") || rc=$?
    done
    exit "$rc"
    ;;
  scp)
    files=("${pos[@]:4}")
    dest="${files[-1]}"
    unset 'files[-1]'
    if [[ "$dest" == *:* ]]; then
      for w in $workers; do cp "${files[@]}" "$D/w$w/${dest#*:}" || exit 1; done
    else
      cp "$D/w$workers/${files[0]#*:}" "$dest" || exit 1
    fi
    ;;
  *)
    key="$group-$verb"
    n=$(($(cat "$D/count.$key" 2>/dev/null || echo 0) + 1))
    echo "$n" >"$D/count.$key"
    for f in "$D/responses/$key.$n.sh" "$D/responses/$key.sh"; do
      if [ -e "$f" ]; then
        # shellcheck disable=SC1090
        source "$f"
        exit 0
      fi
    done
    ;;
esac
