#!/usr/bin/env bash
# The GLib example client (tools/glib-example) against the real tresimd in a
# sandbox (tools/lib/sandbox.sh: swtpm, private bus, daemon).
#   test_glib_client.sh BUILD_DIR
# with TRESIMD, TRESIMCTL, TRESIM_AUC, TRESIM_AKA_EXAMPLE and
# TRESIM_VECTORS_DIR from meson. Exit 77 when swtpm or dbus-daemon is
# missing.
#
# Expected values come from the TS 35.208 test data or from tresim-auc's
# network side, never from the client or the daemon under test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: test_glib_client.sh BUILD_DIR}
# shellcheck source=../../tools/lib/sandbox.sh
source "$here/../../tools/lib/sandbox.sh"

ctl=${TRESIMCTL:-$build/src/cli/tresimctl}
auc=${TRESIM_AUC:-$build/tools/tresim-auc}
client=${TRESIM_AKA_EXAMPLE:-$build/tools/glib-example/tresim-aka-example}
vectors=${TRESIM_VECTORS_DIR:-$here/../vectors}

if ! sandbox_check 2>/dev/null; then
    sandbox_check || true
    exit 77
fi
command -v jq >/dev/null || {
    echo "skip: jq is missing"
    exit 77
}

failures=0
check() { # check WHAT GOT WANT
    if [[ "$2" == "$3" ]]; then
        echo "ok   $1"
    else
        echo "FAIL $1: got '$2', expected '$3'"
        failures=$((failures + 1))
    fi
}
# Runs the client; its JSON output in $out and exit status in $status.
run_client() {
    status=0
    out=$("$client" --json "$@") || status=$?
    echo "  \$ tresim-aka-example --json $* -> $status $out"
}

sandbox_start "$build"

set1=$(jq -c '.milenage[0]' "$vectors/milenage.json")
field() { jq -r ".$1" <<<"$set1"; }
k=$(field k)
opc=$(field opc)
iccid=$(sandbox_iccid 4711)

# The MID of TS 35.208 set 1, whose last used SQN is just below the set's,
# so that the official vector is the next one it accepts.
jq -n --arg iccid "$iccid" --arg k "$k" --arg opc "$opc" \
    '{iccid: $iccid, imsi: "262019876543210", algorithm: "milenage", k: $k, opc: $opc,
      amf: "8000", sqn: "ff9bb4d0b5e7", label: "glib example"}' >"$SANDBOX_DIR/profile.json"
sandbox_authority "$SANDBOX_DIR/authority.pem"
sandbox_approval "$SANDBOX_DIR/authority.pem" >"$SANDBOX_DIR/approval.json"
path=$("$ctl" --json import "$SANDBOX_DIR/profile.json" --approval "$SANDBOX_DIR/approval.json" |
    jq -r .mid)
check "import gives a MID path" "${path%/*}" /org/tresim1/mid

# Before activation the daemon refuses: IllegalTransition, as a code of the
# registered domain.
rand=$(field rand)
sqn=$(field sqn)
# AUTN = (SQN xor AK) || AMF || MAC-A from the official f5 and f1.
autn=$(printf '%012x' $((0x$sqn ^ 0x$(field f5))))$(field amf)$(field f1)
run_client --mid "$iccid" --rand "$rand" --autn "$autn"
check "inactive MID: exit status" "$status" 1
check "inactive MID: error" "$(jq -r .error <<<"$out")" org.tresim1.Error.IllegalTransition
check "inactive MID: code" "$(jq -r .code <<<"$out")" TRESIM_ERROR_ILLEGAL_TRANSITION
check "inactive MID: from the daemon" "$(jq -r .remote <<<"$out")" true

"$ctl" activate "$path" --slot 0 >/dev/null

# 1. The official vector of TS 35.208 set 1, found by ICCID.
run_client --mid "$iccid" --rand "$rand" --autn "$autn"
check "set 1: exit status" "$status" 0
check "set 1: result" "$(jq -r .result <<<"$out")" success
check "set 1: RES = f2" "$(jq -r .res <<<"$out")" "$(field f2)"
check "set 1: CK = f3" "$(jq -r .ck <<<"$out")" "$(field f3)"
check "set 1: IK = f4" "$(jq -r .ik <<<"$out")" "$(field f4)"

# 2. The next SQN in the same IND slot (SEQ + 1), vector by tresim-auc gen,
# MID found as the active one of slot 0.
next=$(printf '%012x' $((0x$sqn + 32)))
rand2=$(openssl rand -hex 16)
vec=$("$auc" gen --alg milenage --k "$k" --opc "$opc" --rand "$rand2" --sqn "$next" \
    --amf 8000 --json)
autn2=$(jq -r .autn <<<"$vec")
run_client --slot 0 --rand "$rand2" --autn "$autn2"
check "tresim-auc vector: exit status" "$status" 0
check "tresim-auc vector: result" "$(jq -r .result <<<"$out")" success
check "tresim-auc vector: RES = XRES" "$(jq -r .res <<<"$out")" "$(jq -r .xres <<<"$vec")"
check "tresim-auc vector: CK" "$(jq -r .ck <<<"$out")" "$(jq -r .ck <<<"$vec")"
check "tresim-auc vector: IK" "$(jq -r .ik <<<"$out")" "$(jq -r .ik <<<"$vec")"

# 3. The same AUTN again, by object path: a sync failure with AUTS, from
# which the AuC recovers the SQN the MID accepted last.
run_client --mid "$path" --rand "$rand2" --autn "$autn2"
check "replay: exit status" "$status" 0
check "replay: result" "$(jq -r .result <<<"$out")" sync-failure
auts=$(jq -r .auts <<<"$out")
check "replay: AUTS length" "${#auts}" 28
net=$("$auc" resync --alg milenage --k "$k" --opc "$opc" --rand "$rand2" --auts "$auts" --json)
check "replay: AuC checks MAC-S" "$(jq -r .result <<<"$net")" success
check "replay: SQN_MS from AUTS" "$(jq -r .sqn_ms <<<"$net")" "$next"

# 4. A wrong MAC: mac-failure, still an answer (exit 0).
bad_autn=${autn2:0:31}$(printf '%x' $(((0x${autn2:31:1} + 1) % 16)))
run_client --mid "$path" --rand "$rand2" --autn "$bad_autn"
check "wrong MAC: exit status" "$status" 0
check "wrong MAC: result" "$(jq -r .result <<<"$out")" mac-failure

# 5. Errors, by name and code.
run_client --mid "$path" --rand 0011 --autn "$autn2"
check "short RAND: exit status" "$status" 1
check "short RAND: error" "$(jq -r .error <<<"$out")" org.tresim1.Error.InvalidArgument
check "short RAND: code" "$(jq -r .code <<<"$out")" TRESIM_ERROR_INVALID_ARGUMENT
check "short RAND: the message names rand" \
    "$(jq -r '.message | test("rand")' <<<"$out")" true

run_client --mid "$(sandbox_iccid 999)" --rand "$rand2" --autn "$autn2"
check "unknown ICCID: exit status" "$status" 1
check "unknown ICCID: error" "$(jq -r .error <<<"$out")" org.tresim1.Error.UnknownMid
check "unknown ICCID: code" "$(jq -r .code <<<"$out")" TRESIM_ERROR_UNKNOWN_MID
check "unknown ICCID: found out by the client" "$(jq -r .remote <<<"$out")" false

run_client --mid /org/tresim1/mid/999 --rand "$rand2" --autn "$autn2"
check "unknown path: exit status" "$status" 1
check "unknown path: error" "$(jq -r .error <<<"$out")" org.freedesktop.DBus.Error.UnknownObject
check "unknown path: code" "$(jq -r .code <<<"$out")" G_DBUS_ERROR_UNKNOWN_OBJECT

# 6. The human form and a bad command line.
human=$("$client" --mid "$iccid" --rand "$rand2" --autn "$autn2")
check "text form" "$(head -n1 <<<"$human")" "result: sync-failure"
status=0
"$client" --mid "$iccid" --rand xyz --autn "$autn2" 2>/dev/null || status=$?
check "bad hex: exit status" "$status" 2

if ((failures > 0)); then
    echo "$failures check(s) failed"
    exit 1
fi
echo "all checks passed"
