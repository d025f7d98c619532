#!/usr/bin/env bash
# The system bus policy policy/org.tresim1.conf, as written, loaded into a
# private dbus-daemon that otherwise behaves like Debian's system bus:
#   - only the user tresim may own org.tresim1 (not root, not a member of
#     the group tresim, not an unrelated user);
#   - root and a member of the group tresim may call it and receive its
#     signals;
#   - an unrelated user may neither call it (by its name or its unique name)
#     nor receive its signals.
# bus_standin (bus_standin.cpp) stands in for tresimd as the name's owner.
#
# The user and group tresim come from systemd/tresim-sysusers.conf applied
# with systemd-sysusers to a copy of /etc/passwd and /etc/group, which this
# test bind-mounts over the real ones in a private mount namespace, together
# with two test users: tresimtest (in the group tresim) and tresimother (in
# no group). Nothing on the host changes.
#
# Usage: test_bus_policy.sh BUS_STANDIN
# Environment: TRESIM_SOURCE_ROOT. Must run as root: exit 77 otherwise, or
# when a tool is missing; 99 when the harness itself breaks.
set -uo pipefail

standin_built=${1:?usage: test_bus_policy.sh BUS_STANDIN}
src=${TRESIM_SOURCE_ROOT:?}
skip() {
    echo "SKIP: $*"
    exit 77
}

((EUID == 0)) || skip "needs root (setpriv, a private mount namespace)"
for tool in dbus-daemon dbus-send setpriv unshare mount systemd-sysusers getent timeout; do
    command -v "$tool" >/dev/null || skip "$tool is not installed"
done

# Re-run inside a private mount namespace.
if [[ -z "${TRESIM_BUS_POLICY_NS:-}" ]]; then
    unshare --mount --propagation private true 2>/dev/null || skip "cannot make a private mount namespace"
    TRESIM_BUS_POLICY_NS=1 exec unshare --mount --propagation private -- "$0" "$@"
fi

failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
pass() { echo "ok: $*"; }

tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null
    done
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
standin=$tmp/bus_standin
cp "$standin_built" "$standin" && chmod 755 "$standin"
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

# --- owning the name -------------------------------------------------------
for who in root tresimtest other; do
    out=$(as "$who" "$standin" own "$address" 2>&1)
    rc=$?
    if [[ $rc == 3 ]]; then
        pass "$who cannot own org.tresim1 ($out)"
    else
        fail "$who: owning org.tresim1 gave exit $rc ($out), expected a refusal"
    fi
done
: >"$tmp/owner.out"
as tresim "$standin" own "$address" >"$tmp/owner.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    grep -q . "$tmp/owner.out" && break
    sleep 0.1
done
if grep -qx owned "$tmp/owner.out"; then
    pass "tresim owns org.tresim1"
else
    cat "$tmp/owner.out"
    fail "tresim could not own org.tresim1"
    echo "$failures check(s) failed"
    exit 1
fi
unique=$(dbus-send --bus="$address" --print-reply=literal --dest=org.freedesktop.DBus \
    /org/freedesktop/DBus org.freedesktop.DBus.GetNameOwner string:org.tresim1 | tr -d ' ')

# --- calling it --------------------------------------------------------------
call() { # call WHO DESTINATION METHOD
    as "$1" dbus-send --bus="$address" --print-reply=literal --dest="$2" /org/tresim1 "$3" 2>&1
}
for who in root tresimtest; do
    out=$(call "$who" org.tresim1 org.tresim1.Test.Ping)
    if [[ "$(tr -d ' ' <<<"$out")" == pong ]]; then
        pass "$who can call org.tresim1"
    else
        fail "$who cannot call org.tresim1: $out"
    fi
done
for dest in org.tresim1 "$unique"; do
    for method in org.tresim1.Test.Ping org.freedesktop.DBus.Introspectable.Introspect; do
        out=$(call other "$dest" "$method")
        if [[ "$out" == *org.freedesktop.DBus.Error.AccessDenied* ]]; then
            pass "an unrelated user cannot call $method on $dest"
        else
            fail "an unrelated user calling $method on $dest got: $out"
        fi
    done
done

# --- its signals ---------------------------------------------------------------
listeners=(root tresimtest other)
declare -A listener_pid
for who in "${listeners[@]}"; do
    : >"$tmp/listen.$who"
    as "$who" "$standin" listen "$address" 3000 >"$tmp/listen.$who" 2>&1 &
    listener_pid[$who]=$!
    pids+=($!)
done
for who in "${listeners[@]}"; do
    for _ in $(seq 50); do
        grep -q . "$tmp/listen.$who" && break
        sleep 0.1
    done
done
call root org.tresim1 org.tresim1.Test.Emit >/dev/null || fail "root could not make the stand-in emit"
for who in "${listeners[@]}"; do
    wait "${listener_pid[$who]}"
    rc=$?
    expected=0
    [[ $who == other ]] && expected=1
    if [[ $rc == "$expected" ]]; then
        pass "$who: signal $( ((expected == 0)) && echo received || echo not received)"
    else
        fail "$who: listener exit $rc, expected $expected: $(tr '\n' ' ' <"$tmp/listen.$who")"
    fi
done

call root org.tresim1 org.tresim1.Test.Quit >/dev/null

if ((failures > 0)); then
    echo "$failures check(s) failed"
    exit 1
fi
echo "bus-policy: all checks passed"
