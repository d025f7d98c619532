#!/usr/bin/env bash
# tresimd.service as built: it has the directives issue 4 asks for, sorted
# within each section; `systemd-analyze security --offline=true` rates its
# exposure at most 1.5; `systemd-analyze verify` accepts it.
#
# Usage: test_unit_security.sh BUILT_UNIT
# Exit 0 pass, 1 fail, 77 skip (systemd-analyze missing or too old).
set -uo pipefail

unit=${1:?usage: test_unit_security.sh BUILT_UNIT}
max_exposure=1.5
failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

[[ -f "$unit" ]] || {
    echo "no unit at $unit"
    exit 99
}

# 1. The directives of issue 4 and the ones whose absence is deliberate.
required=(
    'Type=notify' 'BusName=org.tresim1' 'User=tresim' 'Group=tresim'
    'SupplementaryGroups=tss' 'DeviceAllow=/dev/tpmrm0 rw' 'DevicePolicy=closed'
    'StateDirectory=tresim' 'StateDirectoryMode=0700' 'UMask=0077' 'LimitCORE=0'
    'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' 'NoNewPrivileges=yes'
    'CapabilityBoundingSet=' 'MemoryDenyWriteExecute=yes' 'LockPersonality=yes'
    'RestrictNamespaces=yes' 'RestrictRealtime=yes' 'ProtectClock=yes'
    'ProtectHostname=yes' 'ProtectKernelLogs=yes' 'ProtectKernelModules=yes'
    'ProtectKernelTunables=yes' 'ProtectControlGroups=yes' 'ProtectProc=invisible'
    'ProcSubset=pid' 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6'
    'SystemCallFilter=@system-service' 'SystemCallFilter=~@privileged @resources'
)
for line in "${required[@]}"; do
    grep -qxF "$line" "$unit" || fail "tresimd.service lacks '$line'"
done
for key in WatchdogSec Documentation ExecStart; do
    grep -q "^$key=." "$unit" || fail "tresimd.service lacks $key="
done
# The provisioning client (issue 5) connects out over HTTPS.
grep -q '^PrivateNetwork=yes' "$unit" && fail "PrivateNetwork=yes would cut the provisioning client off"

# Directives sorted within each section (STYLE.md).
awk '
    /^\[/ { section = $0; previous = ""; next }
    /^[A-Za-z]/ {
        key = $0; sub(/=.*/, "", key)
        if (previous != "" && key < previous) {
            printf "%s: %s comes after %s\n", section, key, previous; bad = 1
        }
        previous = key
    }
    END { exit bad }
' "$unit" || fail "directives are not sorted within their sections"

# 2. The exposure score.
if ! command -v systemd-analyze >/dev/null; then
    echo "SKIP: systemd-analyze is not installed"
    exit 77
fi
report=$(systemd-analyze security --offline=true "$unit" 2>&1)
if grep -qiE 'unrecognized option|unknown option' <<<"$report"; then
    echo "SKIP: this systemd-analyze has no --offline (systemd >= 250 has it)"
    exit 77
fi
exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$report")
if [[ -z "$exposure" ]]; then
    echo "$report"
    fail "no 'Overall exposure level' line in systemd-analyze's report"
else
    grep '✗' <<<"$report" || true
    echo "exposure: $exposure (at most $max_exposure)"
    awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e <= m) }' ||
        fail "exposure $exposure is above $max_exposure"
fi

# 3. systemd-analyze verify. It checks that ExecStart's binary exists; the
# unit names the installed path, so verify a copy that points at the built
# tresimd when there is one, else at /bin/true (the directives, their values
# and the dependencies are what is checked here).
build=${TRESIM_BUILD_ROOT:-}
binary=/bin/true
if [[ -n "$build" && -x "$build/src/daemon/tresimd" ]]; then
    binary=$build/src/daemon/tresimd
else
    echo "note: tresimd is not built yet; verifying with ExecStart=/bin/true"
fi
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
sed "s|^ExecStart=[^ ]*|ExecStart=$binary|" "$unit" >"$copy/tresimd.service"
if ! out=$(systemd-analyze verify --man=no "$copy/tresimd.service" 2>&1) || [[ -n "$out" ]]; then
    echo "$out"
    fail "systemd-analyze verify reports problems"
fi

if ((failures > 0)); then
    echo "$failures check(s) failed"
    exit 1
fi
echo "unit-security: all checks passed"
