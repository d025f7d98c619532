#!/usr/bin/env bash
# The system bus policy policy/org.tresim1.conf, as written, loaded into a
# private dbus-daemon that otherwise behaves like Debian's system bus, with
# the real tresimd owning org.tresim1: it runs as the user tresim on a swtpm
# manufactured with EK certificates, with the shipped policy/tresimd.conf
# (authorization rules: authenticate = group:tresim, manage = root only;
# polkit = auto, and no polkit runs on this bus, so the rules decide).
#   - only the user tresim may own org.tresim1 (not root, not a member of
#     the group tresim, not an unrelated user), before and while tresimd
#     owns it;
#   - root and a member of the group tresim get real answers from tresimd
#     (Manager properties, introspection, the object manager, an AKA on a MID
#     root imported, checked against TS 35.208 set 1), or the daemon's own
#     errors: UnknownObject for a MID that does not exist, and NotAuthorized
#     for the member calling org.tresim1.manage methods without a rule;
#   - an unrelated user gets org.freedesktop.DBus.Error.AccessDenied from the
#     bus for every call (by the name or the unique name) and receives none
#     of its signals, which root and the member receive.
# bus_client (bus_client.cpp) tries to own the name, listens for signals and
# makes the signed import.
#
# The user and group tresim come from systemd/tresim-sysusers.conf applied
# with systemd-sysusers to a copy of /etc/passwd and /etc/group, which this
# test bind-mounts over the real ones in a private mount namespace, together
# with two test users: tresimtest (in the group tresim) and tresimother (in
# no group). Nothing on the host changes.
#
# Usage: test_bus_policy.sh BUS_CLIENT TRESIMD
# Environment: TRESIM_SOURCE_ROOT, TRESIM_VECTORS_DIR (default
# $TRESIM_SOURCE_ROOT/tests/vectors). Must run as root: exit 77 otherwise, or
# when a tool is missing; 99 when the harness itself breaks.
set -uo pipefail

client_built=${1:?usage: test_bus_policy.sh BUS_CLIENT TRESIMD}
tresimd_built=${2:?usage: test_bus_policy.sh BUS_CLIENT TRESIMD}
src=${TRESIM_SOURCE_ROOT:?}
vectors=${TRESIM_VECTORS_DIR:-$src/tests/vectors}
skip() {
    echo "SKIP: $*"
    exit 77
}

((EUID == 0)) || skip "needs root (setpriv, a private mount namespace)"
for tool in dbus-daemon dbus-send setpriv unshare mount systemd-sysusers getent timeout \
    swtpm swtpm_setup swtpm_localca jq; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done

# Re-run inside a private mount namespace.
if [[ -z "${TRESIM_BUS_POLICY_NS:-}" ]]; then
    unshare --mount --propagation private true 2>/dev/null || skip "cannot make a private mount namespace"
    TRESIM_BUS_POLICY_NS=1 exec unshare --mount --propagation private -- "$0" "$@"
fi

failures=0
fail() { # long replies are cut at 600 characters
    local text="$*"
    ((${#text} > 600)) && text="${text:0:600}..."
    echo "FAIL: $text"
    failures=$((failures + 1))
}
pass() { echo "ok: $*"; }

tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
swtpm_pid=0
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null
    done
    ((swtpm_pid > 0)) && kill "$swtpm_pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# --- accounts -----------------------------------------------------------
mkdir -p "$tmp/root/etc"
cp /etc/passwd /etc/group "$tmp/root/etc/"
systemd-sysusers --root="$tmp/root" "$src/systemd/tresim-sysusers.conf" >/dev/null 2>&1 || {
    echo "systemd-sysusers failed on tresim-sysusers.conf"
    exit 99
}
free_id() { # a UID and GID unused in the copy, from 60100 up
    local id=$1
    while cut -d: -f3 "$tmp/root/etc/passwd" "$tmp/root/etc/group" | grep -qx "$id"; do
        id=$((id + 1))
    done
    echo "$id"
}
member_id=$(free_id 60100)
echo "tresimtest:x:$member_id:$member_id:tresim test member:/nonexistent:/usr/sbin/nologin" >>"$tmp/root/etc/passwd"
echo "tresimtest:x:$member_id:" >>"$tmp/root/etc/group"
other_id=$(free_id $((member_id + 1)))
echo "tresimother:x:$other_id:$other_id:unrelated test user:/nonexistent:/usr/sbin/nologin" >>"$tmp/root/etc/passwd"
echo "tresimother:x:$other_id:" >>"$tmp/root/etc/group"
# tresimtest joins the group tresim.
awk -F: -v OFS=: '$1 == "tresim" { $4 = ($4 == "" ? "tresimtest" : $4 ",tresimtest") } 1' \
    "$tmp/root/etc/group" >"$tmp/group" && cat "$tmp/group" >"$tmp/root/etc/group"
if ! { mount --bind "$tmp/root/etc/passwd" /etc/passwd && mount --bind "$tmp/root/etc/group" /etc/group; }; then
    echo "cannot bind-mount the test accounts"
    exit 99
fi
if [[ "$(id -nG tresimtest 2>/dev/null)" != *tresim* ]] || ! getent passwd tresim >/dev/null; then
    skip "the bind-mounted accounts do not resolve (NSS cache or non-files user database?)"
fi
echo "accounts: $(id tresim); $(id tresimtest); $(id tresimother)"

as() { # as WHO COMMAND...
    local who=$1
    shift
    case "$who" in
    root) timeout 15 "$@" ;;
    other) timeout 15 setpriv --reuid=tresimother --regid=tresimother --clear-groups "$@" ;;
    *) timeout 15 setpriv --reuid="$who" --regid="$who" --init-groups "$@" ;;
    esac
}

# --- a private bus like the system bus, with the project's policy ----------
# The default policy is the one of Debian 12's /usr/share/dbus-1/system.conf.
# Copies every user can reach (the build tree may not be).
client=$tmp/bus_client
tresimd=$tmp/tresimd
cp "$client_built" "$client" && cp "$tresimd_built" "$tresimd" && chmod 755 "$client" "$tresimd"
cp "$src/policy/tresimd.conf" "$tmp/tresimd.conf" && chmod 644 "$tmp/tresimd.conf"
cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=$tmp/bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Containers1"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <include>$src/policy/org.tresim1.conf</include>
</busconfig>
EOF
dbus-daemon --config-file="$tmp/bus.conf" --nofork --nopidfile --print-address=3 \
    3>"$tmp/address" 2>"$tmp/dbus.log" &
pids+=($!)
for _ in $(seq 50); do
    [[ -s "$tmp/address" ]] && break
    sleep 0.1
done
address=$(head -n1 "$tmp/address")
if [[ -z "$address" ]]; then
    cat "$tmp/dbus.log"
    echo "dbus-daemon did not start with the project's policy"
    exit 99
fi
if grep -qi 'unknown' "$tmp/dbus.log"; then
    cat "$tmp/dbus.log"
    fail "dbus-daemon did not resolve a user or group of the policy"
fi
echo "bus: $address"

# --- nobody but tresim may own the name ----------------------------------------
for who in root tresimtest other; do
    out=$(as "$who" "$client" own "$address" 2>&1)
    rc=$?
    if [[ $rc == 3 ]]; then
        pass "$who cannot own org.tresim1 ($out)"
    else
        fail "$who: owning org.tresim1 gave exit $rc ($out), expected a refusal"
    fi
done

# --- a swtpm with EK certificates, as tests/integration/swtpm.cpp makes it ------
mkdir -p "$tmp/tpm" "$tmp/ca"
cat >"$tmp/swtpm-localca.conf" <<EOF2
statedir = $tmp/ca
signingkey = $tmp/ca/signkey.pem
issuercert = $tmp/ca/issuercert.pem
certserial = $tmp/ca/certserial
EOF2
printf '%s\n' "--platform-manufacturer tresim" "--platform-version 1.0" "--platform-model test" \
    >"$tmp/swtpm-localca.options"
cat >"$tmp/swtpm_setup.conf" <<EOF2
create_certs_tool = $(command -v swtpm_localca)
create_certs_tool_config = $tmp/swtpm-localca.conf
create_certs_tool_options = $tmp/swtpm-localca.options
active_pcr_banks = sha256
EOF2
if ! swtpm_setup --tpm2 --tpmstate "$tmp/tpm" --config "$tmp/swtpm_setup.conf" --create-ek-cert \
    --lock-nvram --overwrite --pcr-banks sha1,sha256 >"$tmp/swtpm_setup.log" 2>&1; then
    cat "$tmp/swtpm_setup.log"
    echo "swtpm_setup failed"
    exit 99
fi
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 20); do # a free pair of ports outside the ephemeral range
    port=$(((RANDOM % 10000) * 2 + 10000))
    port_open "$port" || port_open $((port + 1)) || break
done
swtpm socket --tpm2 --tpmstate dir="$tmp/tpm" --flags not-need-init,startup-clear \
    --server type=tcp,port="$port",bindaddr=127.0.0.1 \
    --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 --log file="$tmp/swtpm.log" &
swtpm_pid=$!
for _ in $(seq 100); do
    port_open "$port" && break
    kill -0 "$swtpm_pid" 2>/dev/null || break
    sleep 0.05
done
if ! port_open "$port"; then
    cat "$tmp/swtpm.log"
    echo "swtpm did not open port $port"
    exit 99
fi
tcti="swtpm:host=127.0.0.1,port=$port"

# --- tresimd as the user tresim owns the name --------------------------------------
mkdir -m 0700 "$tmp/state"
chown tresim:tresim "$tmp/state"
bus_call() { # bus_call METHOD ARGS... (root, to the bus daemon)
    timeout 5 dbus-send --bus="$address" --print-reply=literal --dest=org.freedesktop.DBus \
        /org/freedesktop/DBus "org.freedesktop.DBus.$1" "${@:2}" 2>&1 | tr -d ' '
}
DBUS_SYSTEM_BUS_ADDRESS=$address setpriv --reuid=tresim --regid=tresim --init-groups \
    "$tresimd" --system --tcti "$tcti" --state-dir "$tmp/state" --config "$tmp/tresimd.conf" \
    >"$tmp/tresimd.log" 2>&1 &
tresimd_pid=$!
pids+=("$tresimd_pid")
owner=""
for _ in $(seq 300); do
    owner=$(bus_call GetNameOwner string:org.tresim1)
    [[ $owner == :* ]] && break
    kill -0 "$tresimd_pid" 2>/dev/null || break
    sleep 0.05
done
if [[ $owner != :* ]]; then
    cat "$tmp/tresimd.log"
    fail "tresimd running as tresim did not take org.tresim1"
    echo "$failures check(s) failed"
    exit 1
fi
owner_uid=$(bus_call GetConnectionUnixUser string:org.tresim1 | sed 's/^uint32//')
if [[ $owner_uid == "$(id -u tresim)" ]]; then
    pass "tresimd, running as tresim (UID $owner_uid), owns org.tresim1 as $owner"
else
    fail "org.tresim1 is owned by UID $owner_uid, not by tresim"
fi
out=$(as root "$client" own "$address" 2>&1)
[[ $? == 3 ]] && pass "root still cannot take org.tresim1 from tresimd ($out)" ||
    fail "root trying to take org.tresim1 from tresimd: $out"

# --- calling it ------------------------------------------------------------------------
call() { # call WHO DESTINATION PATH METHOD ARGS...
    as "$1" dbus-send --bus="$address" --print-reply=literal --dest="$2" "$3" "$4" \
        "${@:5}" 2>&1
}
expect_denied() { # expect_denied WHAT OUTPUT
    if [[ "$2" == *org.freedesktop.DBus.Error.AccessDenied* ]]; then
        pass "an unrelated user: $1 refused by the bus"
    else
        fail "an unrelated user: $1 gave: $2"
    fi
}
expect_error() { # expect_error WHO WHAT ERROR OUTPUT
    if [[ "$4" == *"Error $3"* ]]; then
        pass "$1: $2 answered $3 by tresimd"
    else
        fail "$1: $2 gave: $4, expected $3"
    fi
}
expect_answer() { # expect_answer WHO WHAT PATTERN OUTPUT
    if [[ "$4" != Error* && "$4" == *$3* ]]; then
        pass "$1: $2 answered"
    else
        fail "$1: $2 gave: $4, expected an answer with $3"
    fi
}
manager=(org.tresim1 /org/tresim1)
zeros16="array:byte:$(printf '0,%.0s' {1..15})0" # a RAND and an AUTN of the right length

for who in root tresimtest; do
    out=$(call "$who" "${manager[@]}" org.freedesktop.DBus.Properties.GetAll string:org.tresim1.Manager)
    expect_answer "$who" "Manager GetAll" "TpmManufacturer variant IBM" "$(tr -s ' \n' ' ' <<<"$out")"
    out=$(call "$who" "${manager[@]}" org.freedesktop.DBus.Introspectable.Introspect)
    expect_answer "$who" "Introspect" '<interface name="org.tresim1.Manager">' "$out"
    out=$(call "$who" org.tresim1 /org/tresim1/mid/999 org.tresim1.Usim.Authenticate \
        "$zeros16" "$zeros16")
    expect_error "$who" "Authenticate on a MID that does not exist" \
        org.freedesktop.DBus.Error.UnknownObject "$out"
done
out=$(call root "${manager[@]}" org.tresim1.Manager.GetPlatformState)
pcrs=$(grep -o 'uint32 [0-9]*' <<<"$out" | tr '\n' ' ')
if [[ $pcrs == "uint32 0 uint32 2 uint32 4 uint32 7 " ]]; then
    pass "root: GetPlatformState (org.tresim1.manage) answered PCRs 0, 2, 4, 7"
else
    fail "root: GetPlatformState gave: $out"
fi
out=$(call tresimtest "${manager[@]}" org.tresim1.Manager.GetPlatformState)
expect_error tresimtest "GetPlatformState (org.tresim1.manage, no rule)" \
    org.tresim1.Error.NotAuthorized "$out"
for dest in org.tresim1 "$owner"; do
    for method in org.freedesktop.DBus.Introspectable.Introspect \
        org.freedesktop.DBus.ObjectManager.GetManagedObjects org.tresim1.Manager.GetPlatformState; do
        expect_denied "$method on $dest" "$(call other "$dest" /org/tresim1 "$method")"
    done
    expect_denied "Manager GetAll on $dest" "$(call other "$dest" /org/tresim1 \
        org.freedesktop.DBus.Properties.GetAll string:org.tresim1.Manager)"
done

# --- a MID: root imports and activates it, the member authenticates ------------------
# TS 35.208 test set 1. The profile's SQN is one SEQ below the set's in the same
# IND slot (5 IND bits), so that the set's SQN is fresh.
v=$(jq -c '.milenage[0]' "$vectors/milenage.json")
field() { jq -r ".$1" <<<"$v"; }
sqn=$((16#$(field sqn)))
printf '{"iccid":"89490200000030000017","imsi":"262011000000017","label":"bus policy",
 "algorithm":"milenage","k":"%s","opc":"%s","amf":"%s","sqn":"%012x"}\n' \
    "$(field k)" "$(field opc)" "$(field amf)" $((sqn - 32)) >"$tmp/profile.json"
mid=$(as root "$client" import "$address" "$tmp/profile.json" 2>&1)
rm -f "$tmp/profile.json"
if [[ $mid != /org/tresim1/mid/* ]]; then
    fail "root could not import a MID: $mid"
    mid=/org/tresim1/mid/1
fi
out=$(call root org.tresim1 "$mid" org.tresim1.Mid.Activate uint32:0)
[[ -z $out ]] && pass "root: Activate (org.tresim1.manage) done" || fail "root: Activate gave: $out"
bytes() { sed 's/../0x&,/g; s/,$//' <<<"$1"; } # hex -> dbus-send byte list
autn=$(printf '%012x' $((sqn ^ 16#$(field f5))))$(field amf)$(field f1)
aka=(org.tresim1.Usim.Authenticate "array:byte:$(bytes "$(field rand)")" "array:byte:$(bytes "$autn")")
expect_denied "Authenticate on $mid" "$(call other org.tresim1 "$mid" "${aka[@]}")"
out=$(call tresimtest org.tresim1 "$mid" "${aka[@]}")
flat() { sed 's/array of bytes//; s/array//' <<<"$1" | tr -d ' \n[]'; } # result and hex
got=$(flat "$out")
want="success$(field f2)$(field f3)$(field f4)"
if [[ $got == "$want" ]]; then
    pass "tresimtest: Authenticate (org.tresim1.authenticate by group:tresim): RES, CK, IK of TS 35.208 set 1"
else
    fail "tresimtest: Authenticate gave: $out (expected $want)"
fi
# The same AUTN again: a synchronisation failure whose AUTS starts with
# SQN_MS (the set's SQN, just accepted) XOR AK* (f5*).
out=$(call root org.tresim1 "$mid" "${aka[@]}")
want="sync-failure$(printf '%012x' $((sqn ^ 16#$(field f5star))))"
if [[ $(flat "$out") == "$want"???????????????? ]]; then
    pass "root: Authenticate, the same AUTN again: sync-failure with the AUTS of SQN_MS"
else
    fail "root: Authenticate, the same AUTN again, gave: $out (expected $want + MAC-S)"
fi
out=$(call tresimtest org.tresim1 "$mid" org.tresim1.Mid.Deactivate)
expect_error tresimtest "Deactivate (org.tresim1.manage, no rule)" org.tresim1.Error.NotAuthorized "$out"
out=$(call tresimtest org.tresim1 "$mid" org.freedesktop.DBus.Properties.Get \
    string:org.tresim1.Mid string:State)
[[ $(tr -s ' \n' ' ' <<<"$out") == *"variant active"* ]] &&
    pass "tresimtest: the MID is still active after the refused Deactivate" ||
    fail "tresimtest: the MID's State after the refused Deactivate: $out"
expect_denied "Properties.Get on $mid" "$(call other org.tresim1 "$mid" \
    org.freedesktop.DBus.Properties.Get string:org.tresim1.Mid string:State)"

# --- its signals ------------------------------------------------------------------------
listeners=(root tresimtest other)
declare -A listener_pid
for who in "${listeners[@]}"; do
    : >"$tmp/listen.$who"
    as "$who" "$client" listen "$address" 3000 >"$tmp/listen.$who" 2>&1 &
    listener_pid[$who]=$!
    pids+=($!)
done
for who in "${listeners[@]}"; do
    for _ in $(seq 50); do
        grep -q . "$tmp/listen.$who" && break
        sleep 0.1
    done
done
out=$(call root org.tresim1 "$mid" org.tresim1.Mid.Deactivate) # PropertiesChanged
[[ -z $out ]] || fail "root: Deactivate gave: $out"
for who in "${listeners[@]}"; do
    wait "${listener_pid[$who]}"
    rc=$?
    expected=0
    [[ $who == other ]] && expected=1
    if [[ $rc == "$expected" ]]; then
        pass "$who: tresimd's signal $( ((expected == 0)) && echo received || echo not received)"
    else
        fail "$who: listener exit $rc, expected $expected: $(tr '\n' ' ' <"$tmp/listen.$who")"
    fi
done

# --- a clean stop -------------------------------------------------------------------------
kill -TERM "$tresimd_pid"
wait "$tresimd_pid"
rc=$?
[[ $rc == 0 ]] && pass "tresimd stopped cleanly on SIGTERM" || {
    cat "$tmp/tresimd.log"
    fail "tresimd exited with $rc on SIGTERM"
}
if grep -Eqi "$(field k)|$(field opc)|$(field f2)|$(field f3)" "$tmp/tresimd.log"; then
    fail "tresimd's log holds a secret"
fi

if ((failures > 0)); then
    echo "$failures check(s) failed"
    exit 1
fi
echo "bus-policy: all checks passed"
