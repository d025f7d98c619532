#!/usr/bin/env bash
# `meson install` into a DESTDIR puts the units, the bus policy and
# activation file, the polkit actions and rules, the example configuration
# and the operations guide in their standard places, with the right content;
# the sysusers.d and tmpfiles.d entries then create the user, the group and
# the folders with the right owners and modes inside that DESTDIR.
#
# Environment (set by meson): TRESIM_SOURCE_ROOT, TRESIM_BUILD_ROOT.
# Exit 0 pass, 1 fail, 77 skip (a tool is missing), 99 broken harness.
set -uo pipefail

src=${TRESIM_SOURCE_ROOT:?}
build=${TRESIM_BUILD_ROOT:?}
failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
pass() { echo "ok: $*"; }
skip() {
    echo "SKIP: $*"
    exit 77
}

command -v meson >/dev/null || skip "meson is not on PATH"
command -v jq >/dev/null || skip "jq is not installed"

destdir=$(mktemp -d)
trap 'rm -rf "$destdir"' EXIT

# The test runs inside `meson test`, which has built everything already: a
# rebuild here would race with the running test harness.
if ! meson install -C "$build" --no-rebuild --quiet --destdir "$destdir" >"$destdir.log" 2>&1; then
    cat "$destdir.log"
    rm -f "$destdir.log"
    echo "meson install failed"
    exit 99
fi
rm -f "$destdir.log"

# The installation directories, from the build's options.
opts=$(meson introspect --buildoptions "$build") || exit 99
opt() { jq -r --arg n "$1" '.[] | select(.name == $n) | .value' <<<"$opts"; }
prefix=$(opt prefix)
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }
bindir=$(absolute "$(opt bindir)")
datadir=$(absolute "$(opt datadir)")
sysconfdir=$(absolute "$(opt sysconfdir)")
echo "prefix=$prefix bindir=$bindir datadir=$datadir sysconfdir=$sysconfdir"

# The standard places (systemd's file-hierarchy(7), D-Bus and polkit), under
# the prefix: <prefix>/lib/systemd/system, <prefix>/lib/sysusers.d, ...
unit_dir=$prefix/lib/systemd/system
declare -A expected=(
    ["$unit_dir/tresimd.service"]="$build/systemd/tresimd.service"
    ["$prefix/lib/sysusers.d/tresim.conf"]="$src/systemd/tresim-sysusers.conf"
    ["$prefix/lib/tmpfiles.d/tresim.conf"]="$src/systemd/tresim-tmpfiles.conf"
    ["$datadir/dbus-1/system.d/org.tresim1.conf"]="$src/policy/org.tresim1.conf"
    ["$datadir/dbus-1/system-services/org.tresim1.service"]="$src/policy/org.tresim1.service"
    ["$datadir/polkit-1/actions/org.tresim1.policy"]="$src/policy/org.tresim1.policy"
    ["$datadir/polkit-1/rules.d/org.tresim1.rules"]="$src/policy/org.tresim1.rules"
    ["$sysconfdir/tresim/tresimd.conf"]="$src/policy/tresimd.conf"
    ["$datadir/doc/tresim/operations.md"]="$src/docs/operations.md"
)
for path in "${!expected[@]}"; do
    if [[ ! -f "$destdir$path" ]]; then
        fail "$path is not installed"
    elif ! cmp -s "$destdir$path" "${expected[$path]}"; then
        fail "$path differs from ${expected[$path]}"
    elif [[ "$(stat -c %a "$destdir$path")" != 644 ]]; then
        fail "$path has mode $(stat -c %a "$destdir$path"), not 644"
    else
        pass "$path"
    fi
done

# The unit as installed: @...@ substituted, ExecStart on the installed binary,
# Documentation= on the installed guide.
unit=$destdir$unit_dir/tresimd.service
if [[ -f "$unit" ]]; then
    before=$failures
    grep -qE '@[A-Za-z_]+@' "$unit" &&
        fail "tresimd.service still has a placeholder: $(grep -E '@[A-Za-z_]+@' "$unit")"
    grep -qx "ExecStart=$bindir/tresimd --system" "$unit" ||
        fail "tresimd.service has $(grep '^ExecStart=' "$unit"), not ExecStart=$bindir/tresimd --system"
    grep -qx "Documentation=file:$datadir/doc/tresim/operations.md" "$unit" ||
        fail "tresimd.service: Documentation= does not name the installed operations.md"
    ((failures == before)) && pass "tresimd.service substitutions"
fi
# A binary the unit names is installed once src/daemon builds it.
if [[ -e "$destdir$bindir/tresimd" ]]; then
    [[ -x "$destdir$bindir/tresimd" ]] || fail "$bindir/tresimd is not executable"
else
    echo "note: $bindir/tresimd is not built yet (src/daemon), not checked"
fi

# systemd finds units in <prefix>/lib/systemd/system for the prefixes it
# searches (/usr, /usr/local).
if command -v systemd-analyze >/dev/null && [[ "$prefix" == /usr || "$prefix" == /usr/local ]]; then
    if systemd-analyze unit-paths 2>/dev/null | grep -qx "$unit_dir"; then
        pass "$unit_dir is on systemd's unit path"
    else
        fail "$unit_dir is not on systemd's unit path"
    fi
fi

# The D-Bus activation file hands activation to the unit.
service=$destdir$datadir/dbus-1/system-services/org.tresim1.service
if [[ -f "$service" ]]; then
    for line in '[D-BUS Service]' 'Name=org.tresim1' 'User=tresim' 'SystemdService=tresimd.service'; do
        grep -qxF "$line" "$service" || fail "org.tresim1.service lacks '$line'"
    done
    grep -q '^BusName=org.tresim1$' "$unit" || fail "tresimd.service lacks BusName=org.tresim1"
    pass "activation file checked"
fi

# The XML files are well-formed, and the polkit file declares exactly the
# three actions, each "no" by default.
if command -v xmllint >/dev/null; then
    for f in "$datadir/dbus-1/system.d/org.tresim1.conf" "$datadir/polkit-1/actions/org.tresim1.policy"; do
        xmllint --noout --nonet "$destdir$f" 2>/dev/null || fail "$f is not well-formed XML"
    done
    policy=$destdir$datadir/polkit-1/actions/org.tresim1.policy
    actions=$(xmllint --nonet --xpath '//action/@id' "$policy" 2>/dev/null | tr ' ' '\n' | sed -n 's/^id="\(.*\)"$/\1/p' | sort | tr '\n' ' ')
    [[ "$actions" == "org.tresim1.authenticate org.tresim1.manage org.tresim1.provision " ]] ||
        fail "polkit actions are '$actions'"
    defaults=$(xmllint --nonet --xpath '//defaults/*/text()' "$policy" 2>/dev/null | sort -u | tr -d '\n')
    [[ "$defaults" == no ]] || fail "polkit defaults are not all 'no': '$defaults'"
    pass "XML files and polkit actions"
else
    echo "note: xmllint is not installed: XML well-formedness not checked"
fi
# The polkit rules file is valid JavaScript (where node is available).
if command -v node >/dev/null; then
    js=$(mktemp --suffix=.js)
    cp "$destdir$datadir/polkit-1/rules.d/org.tresim1.rules" "$js"
    node --check "$js" || fail "org.tresim1.rules is not valid JavaScript"
    rm -f "$js"
fi

# sysusers.d and tmpfiles.d, applied to the DESTDIR as a root: the user and
# group exist, tresim is in tss, the folders have the owners and modes of
# issue 4.
if command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null && ((EUID == 0)); then
    # Start from the host's accounts, as on a real system.
    mkdir -p "$destdir/etc" && cp /etc/passwd /etc/group "$destdir/etc/"
    if systemd-sysusers --root="$destdir" "$destdir$prefix/lib/sysusers.d/tresim.conf" >/dev/null 2>&1; then
        passwd=$(grep '^tresim:' "$destdir/etc/passwd")
        IFS=: read -r _ _ uid gid _ home shell <<<"$passwd"
        [[ -n "$uid" && "$uid" -lt 1000 && "$uid" -gt 0 ]] || fail "tresim's UID '$uid' is not a system UID"
        [[ "$home" == /var/lib/tresim ]] || fail "tresim's home is '$home'"
        [[ "$shell" == */nologin ]] || fail "tresim's shell is '$shell'"
        grep -q "^tresim:x:$gid:" "$destdir/etc/group" || fail "tresim's primary group is not tresim"
        grep -Eq '^tss:x:[0-9]+:(.*,)?tresim(,.*)?$' "$destdir/etc/group" || fail "tresim is not in tss"
        pass "sysusers: $passwd"
        # systemd-tmpfiles resolves names with the host's NSS: give it the
        # DESTDIR's passwd and group in a private mount namespace.
        # shellcheck disable=SC2016 # expanded by the inner shell
        if unshare --mount --propagation private -- bash -c '
            mount --bind "$1/etc/passwd" /etc/passwd && mount --bind "$1/etc/group" /etc/group &&
            systemd-tmpfiles --root="$1" --create "$1$2"' _ "$destdir" "$prefix/lib/tmpfiles.d/tresim.conf"; then
            check_dir() {
                local got
                got=$(stat -c '%a %u %g' "$destdir$1")
                [[ "$got" == "$2" ]] || fail "$1 is '$got', not '$2' (mode uid gid)"
            }
            check_dir /var/lib/tresim "700 $uid $gid"
            check_dir /etc/tresim "750 0 $gid"
            pass "tmpfiles: /var/lib/tresim and /etc/tresim"
        else
            echo "note: cannot run systemd-tmpfiles in a private mount namespace: tmpfiles entries not applied"
        fi
    else
        fail "systemd-sysusers --root failed on the installed sysusers.d entry"
    fi
else
    echo "note: sysusers.d/tmpfiles.d not applied (needs root, systemd-sysusers and systemd-tmpfiles)"
fi

if ((failures > 0)); then
    echo "$failures check(s) failed"
    exit 1
fi
echo "install: all checks passed"
