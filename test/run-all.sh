#!/usr/bin/env bash
# Run every test and print one closing line "N passed, M failed".
# C tests print TAP-style "ok"/"not ok" lines; ava prints TAP with --tap.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p test-artifacts
# PAM service and sudoers files a killed earlier run may have left (tests name them like this).
rm -f /etc/pam.d/qrauth-pt-* /etc/pam.d/qrauth-sudo-* /etc/pam.d/sshd-qra* /etc/sudoers.d/qrauth-test 2>/dev/null || true
c_log=test-artifacts/c-tests.log
js_log=test-artifacts/ava.tap

make -C pam_qrauth check fuzz-smoke 2>&1 | tee "$c_log"
c_status=${PIPESTATUS[0]}
c_pass=$(grep -cE '^ok ' "$c_log" || true)
c_fail=$(grep -cE '^not ok ' "$c_log" || true)
if [ "$c_status" -ne 0 ] && [ "$c_fail" -eq 0 ]; then c_fail=1; fi

npx ava --tap 2>&1 | tee "$js_log"
js_status=${PIPESTATUS[0]}
js_pass=$(grep -E '^# pass ' "$js_log" | awk '{print $3}' | tail -1)
js_fail=$(grep -E '^# fail ' "$js_log" | awk '{print $3}' | tail -1)
js_pass=${js_pass:-0}
js_fail=${js_fail:-0}
if [ "$js_status" -ne 0 ] && [ "$js_fail" -eq 0 ]; then js_fail=1; fi

passed=$((c_pass + js_pass))
failed=$((c_fail + js_fail))
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ] && [ "$c_status" -eq 0 ] && [ "$js_status" -eq 0 ]
