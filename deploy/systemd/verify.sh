#!/usr/bin/env bash
# Checks the systemd units in this directory, for `make deploy-check`:
#  - `systemd-analyze verify` must print nothing at all (any warning fails,
#    not only a non-zero exit);
#  - `systemd-analyze security --offline=true` must score each unit at or
#    below MAX_EXPOSURE (the score is printed).
#
# verify checks that ExecStart's binary exists and is executable, and the
# units name /usr/local/bin/fedguard, which CI does not install. So each unit
# is checked from a temporary copy whose ExecStart names the binary given as
# $1 (default bin/fedguard); nothing else in the copy changes, and nothing is
# installed on the host. (`--root=DIR` would need a whole systemd tree,
# sysinit.target included, under DIR.)
set -euo pipefail
bin=$(realpath "${1:-$(dirname "$0")/../../bin/fedguard}")
cd "$(dirname "$0")"
max=${MAX_EXPOSURE:-2.0}
[[ -x $bin ]] || { echo "verify.sh: $bin is not an executable (run make build)"; exit 1; }
command -v systemd-analyze >/dev/null || { echo "verify.sh: systemd-analyze is required (Debian package systemd)"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for unit in fedguard-coordinator.service fedguard-participant.service fedguard-participant@.service; do
  sed "s|^ExecStart=/usr/local/bin/fedguard |ExecStart=$bin |" "$unit" >"$tmp/$unit"
  grep -q "^ExecStart=$bin " "$tmp/$unit" || { echo "$unit: no ExecStart=/usr/local/bin/fedguard line"; exit 1; }
  name=$unit
  if [[ $unit == *@.service ]]; then
    # A template is checked through an instance of it.
    name=${unit/@/@breast-cancer}
    ln -s "$unit" "$tmp/$name"
  fi
  out=$(cd "$tmp" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$tmp/$name" 2>&1) && rc=0 || rc=$?
  if ((rc != 0)) || [[ -n $out ]]; then
    echo "FAIL $unit: systemd-analyze verify exited $rc and printed:"
    echo "$out"
    fail=1
    continue
  fi
  score=$(cd "$tmp" && systemd-analyze security --offline=true --no-pager "$tmp/$name" 2>&1 |
    sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
  [[ -n $score ]] || { echo "FAIL $unit: systemd-analyze security printed no exposure level"; fail=1; continue; }
  if awk -v s="$score" -v m="$max" 'BEGIN { exit !(s > m) }'; then
    echo "FAIL $unit: exposure $score, above $max (systemd-analyze security --offline=true $unit)"
    fail=1
    continue
  fi
  echo "ok   $unit: systemd-analyze verify clean, security exposure $score"
done
# The user the units run as.
mkdir -p "$tmp/root/etc" "$tmp/root/usr/lib/sysusers.d"
cp fedguard.sysusers.conf "$tmp/root/usr/lib/sysusers.d/fedguard.conf"
sysout=$(systemd-sysusers --root="$tmp/root" 2>&1) || { echo "FAIL fedguard.sysusers.conf: $sysout"; fail=1; }
grep -q '^fedguard:' "$tmp/root/etc/passwd" 2>/dev/null || { echo "FAIL fedguard.sysusers.conf: no fedguard user made"; fail=1; }
((fail == 0)) && echo "ok   fedguard.sysusers.conf"
exit $fail
