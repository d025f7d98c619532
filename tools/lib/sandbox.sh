# shellcheck shell=bash disable=SC2034 # the SANDBOX_ variables are for the caller
# tools/lib/sandbox.sh: a private tresimd for demos and tests (bash, sourced).
#
# Brings up, in one temporary folder and without touching the host's TPM,
# bus or state, everything tresimd needs:
#   - a swtpm on a free loopback port, manufactured like a real TPM with an
#     EK and a platform certificate from a private local CA;
#   - a private dbus-daemon of type "system" (as root its configuration
#     includes the project's bus policy, policy/org.tresim1.conf, so the
#     calls go through the same rules as on a real system);
#   - tresimd on that bus, waited for until it owns org.tresim1.
# DBUS_SYSTEM_BUS_ADDRESS is exported, so tresimctl (whose default is the
# system bus), GDBus clients and tresimd itself all find the private bus.
#
# With --ps, also a Provisioning Server and a measured boot:
#   - the sandbox "boots" the TPM: it extends PCRs 0, 2, 4 and 7 (SHA-256)
#     with a few firmware-like events and writes the matching TCG event log
#     (crypto-agile, as /sys/kernel/security/tpm0/binary_bios_measurements),
#     with the PCR values a replay of that log gives in reference.json;
#   - sandbox_start_ps: tresim-ps with the PKI of tools/ps-dev-pki (TLS 1.3
#     on 127.0.0.1, a free port; swtpm's local CA as the EK manufacturer CA),
#     and two operator tokens (two operators of the same server);
#   - tresimd's [provisioning] section names that event log and the platform
#     class "tresim-sandbox", and its TE policy file pins this server's URL,
#     TLS root and signing key (no periodic poll: syncs are explicit).
# Without --ps, tresimd gets a TE policy file without servers (remote
# provisioning off), so nothing of the host's /etc/tresim is read.
#
#   source tools/lib/sandbox.sh
#   sandbox_start BUILD_DIR [--ps]  # honours TRESIMD=..., TRESIM_PS=...
#   ...                             # tresimctl status, ...
#   sandbox_stop                    # also runs on EXIT (trap), so it may be omitted
#
# Other helpers: sandbox_iccid N (an ICCID with a valid check digit),
# sandbox_authority (a new policy authority key) and sandbox_approval KEY
# (that authority's approval of the platform state tresimd reports).
# Set SANDBOX_VERBOSE=1 to see how far the start got, and
# SANDBOX_SWTPM_LOG_LEVEL=5 to have swtpm log every TPM command and response
# (swtpm.log; tools/bench-provision counts commands with it).
#
# sandbox_start registers `trap sandbox_stop EXIT` (and turns INT and TERM
# into an exit); a script that needs its own cleanup calls sandbox_stop
# from its own EXIT trap instead. Every process started here is stopped by
# its PID and the folder is removed, whatever way the script ends.

SANDBOX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SANDBOX_DIR=""
SANDBOX_PIDS=()
SANDBOX_SWTPM_PID=""
SANDBOX_PS_URL=""
SANDBOX_PLATFORM_CLASS=tresim-sandbox

_sandbox_log() {
    if [[ "${SANDBOX_VERBOSE:-0}" == 1 ]]; then
        echo "sandbox: $*" >&2
    fi
}

_sandbox_fail() {
    echo "sandbox: $*" >&2
    return 1
}

# Prints the last lines of a log file of the sandbox (for failures).
_sandbox_tail() {
    if [[ -s "$1" ]]; then
        echo "sandbox: --- last lines of ${1##*/} ---" >&2
        tail -n 15 "$1" >&2
    fi
}

# The tools the sandbox needs; exit status 1 naming the first one missing.
sandbox_check() {
    local tool
    for tool in swtpm swtpm_setup swtpm_localca dbus-daemon dbus-send busctl python3 openssl; do
        command -v "$tool" >/dev/null 2>&1 || {
            echo "sandbox: $tool is not installed (tools/install-deps installs it)" >&2
            return 1
        }
    done
}

_sandbox_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Manufactures the TPM state into $SANDBOX_DIR/tpm: EK (RSA and ECC) with
# certificates and a platform certificate, issued by a local CA whose files
# stay in $SANDBOX_DIR/ca (the same settings as tests/integration/swtpm.cpp).
_sandbox_manufacture() {
    local d=$SANDBOX_DIR
    mkdir -p "$d/tpm" "$d/ca"
    cat >"$d/swtpm-localca.conf" <<EOF
statedir = $d/ca
signingkey = $d/ca/signkey.pem
issuercert = $d/ca/issuercert.pem
certserial = $d/ca/certserial
EOF
    printf '%s\n' '--platform-manufacturer tresim' '--platform-version 1.0' \
        '--platform-model sandbox' >"$d/swtpm-localca.options"
    cat >"$d/swtpm_setup.conf" <<EOF
create_certs_tool = $(command -v swtpm_localca)
create_certs_tool_config = $d/swtpm-localca.conf
create_certs_tool_options = $d/swtpm-localca.options
active_pcr_banks = sha256
EOF
    # TMPDIR: swtpm_setup's own scratch folder stays inside the sandbox too.
    TMPDIR=$d swtpm_setup --tpm2 --tpmstate "$d/tpm" --config "$d/swtpm_setup.conf" \
        --create-ek-cert --create-platform-cert --lock-nvram --overwrite \
        --pcr-banks sha1,sha256 >"$d/swtpm_setup.log" 2>&1 || {
        _sandbox_tail "$d/swtpm_setup.log"
        _sandbox_fail "swtpm_setup failed"
    }
}

# Starts swtpm on a free pair of loopback ports (server, control), picked at
# random outside the kernel's ephemeral range; another port is tried when
# the pick is taken meanwhile. Sets SANDBOX_TCTI.
_sandbox_swtpm() {
    local attempt port pid i
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        port=$(((RANDOM % 10000) * 2 + 10000))
        if _sandbox_port_open "$port" || _sandbox_port_open $((port + 1)); then
            continue
        fi
        swtpm socket --tpm2 --tpmstate "dir=$SANDBOX_DIR/tpm" \
            --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
            --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
            --flags not-need-init,startup-clear \
            --log "file=$SANDBOX_DIR/swtpm.log${SANDBOX_SWTPM_LOG_LEVEL:+,level=$SANDBOX_SWTPM_LOG_LEVEL}" \
            </dev/null >>"$SANDBOX_DIR/swtpm.out" 2>&1 &
        pid=$!
        SANDBOX_PIDS+=("$pid")
        for ((i = 0; i < 500; i++)); do
            if ! kill -0 "$pid" 2>/dev/null; then
                break # exited: most likely the port was taken after all
            fi
            if _sandbox_port_open "$port"; then
                SANDBOX_SWTPM_PID=$pid
                SANDBOX_TCTI="swtpm:host=127.0.0.1,port=$port"
                _sandbox_log "swtpm $pid on port $port"
                return 0
            fi
            sleep 0.02
        done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        _sandbox_log "swtpm did not come up on port $port (attempt $attempt)"
    done
    _sandbox_tail "$SANDBOX_DIR/swtpm.out"
    _sandbox_fail "swtpm did not start; see the lines above"
}

# Starts the private bus and exports DBUS_SYSTEM_BUS_ADDRESS.
_sandbox_bus() {
    local socket=$SANDBOX_DIR/bus policy="" i
    if ((EUID == 0)); then
        # The real bus policy; only the owner rule of the daemon's user
        # (tresim) is widened to root, since tresimd runs as root here.
        policy="<include>$SANDBOX_ROOT/policy/org.tresim1.conf</include>
  <policy user=\"root\"><allow own=\"org.tresim1\"/></policy>"
    fi
    cat >"$SANDBOX_DIR/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
  $policy
</busconfig>
EOF
    dbus-daemon --config-file="$SANDBOX_DIR/bus.conf" --nofork --nopidfile --nosyslog \
        </dev/null >"$SANDBOX_DIR/dbus-daemon.log" 2>&1 &
    SANDBOX_BUS_PID=$!
    SANDBOX_PIDS+=("$SANDBOX_BUS_PID")
    for ((i = 0; i < 500; i++)); do
        [[ -S "$socket" ]] && break
        kill -0 "$SANDBOX_BUS_PID" 2>/dev/null || break
        sleep 0.02
    done
    if [[ ! -S "$socket" ]]; then
        _sandbox_tail "$SANDBOX_DIR/dbus-daemon.log"
        _sandbox_fail "dbus-daemon did not open $socket"
        return 1
    fi
    export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$socket"
    # Nothing in the sandbox may reach the user's session bus by mistake.
    export DBUS_SESSION_BUS_ADDRESS="unix:path=$SANDBOX_DIR/no-session-bus"
    _sandbox_log "dbus-daemon $SANDBOX_BUS_PID at $DBUS_SYSTEM_BUS_ADDRESS"
}

_sandbox_name_owned() {
    dbus-send --system --print-reply=literal --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.NameHasOwner string:org.tresim1 2>/dev/null | grep -q true
}

# Starts tresimd on the private bus and waits until it owns org.tresim1
# (it requests the name after its objects exist and before READY=1).
_sandbox_tresimd() {
    local exe=$1 i
    # Root may do everything anyway; the rules let a non-root caller (the
    # same user) import and authenticate. There is no polkit on this bus.
    cat >"$SANDBOX_DIR/tresimd.conf" <<EOF
[mids]
slots = 2
[authorization]
polkit = no
authenticate = uid:$EUID
manage = uid:$EUID
provision = uid:$EUID
[provisioning]
te_policy = $SANDBOX_DIR/te-policy.json
event_log = $SANDBOX_DIR/event-log.bin
platform_class = $SANDBOX_PLATFORM_CLASS
EOF
    # The TE policy file: the server of sandbox_start_ps pinned (its TLS root
    # and instruction-signing key), or no server at all.
    if [[ -n "$SANDBOX_PS_URL" ]]; then
        cat >"$SANDBOX_DIR/te-policy.json" <<EOF
{
  "provisioning": {
    "servers": [{"url": "$SANDBOX_PS_URL",
                 "tls_root": "$SANDBOX_PS_DIR/ca.pem",
                 "signing_keys": ["$SANDBOX_PS_DIR/ps-signing.pub.pem"]}],
    "require_validation": ["install", "update", "policy-update", "switch-slot"],
    "confirm_within": 600,
    "poll_interval": 0
  }
}
EOF
    else
        echo '{}' >"$SANDBOX_DIR/te-policy.json"
    fi
    # No NOTIFY_SOCKET or WATCHDOG_USEC of a calling service must leak in.
    env -u NOTIFY_SOCKET -u WATCHDOG_USEC -u WATCHDOG_PID TSS2_LOG="${TSS2_LOG:-all+none}" \
        "$exe" --system --tcti "$SANDBOX_TCTI" --state-dir "$SANDBOX_DIR/state" \
        --config "$SANDBOX_DIR/tresimd.conf" </dev/null >"$SANDBOX_DIR/tresimd.log" 2>&1 &
    SANDBOX_TRESIMD_PID=$!
    SANDBOX_PIDS+=("$SANDBOX_TRESIMD_PID")
    for ((i = 0; i < 1500; i++)); do
        if _sandbox_name_owned; then
            _sandbox_log "tresimd $SANDBOX_TRESIMD_PID owns org.tresim1"
            return 0
        fi
        if ! kill -0 "$SANDBOX_TRESIMD_PID" 2>/dev/null; then
            wait "$SANDBOX_TRESIMD_PID" 2>/dev/null || true
            _sandbox_tail "$SANDBOX_DIR/tresimd.log"
            _sandbox_fail "tresimd exited before it took org.tresim1"
            return 1
        fi
        sleep 0.02
    done
    _sandbox_tail "$SANDBOX_DIR/tresimd.log"
    _sandbox_fail "tresimd did not take org.tresim1 in 30 s"
}

# Measured boot of the sandbox's TPM, before tresimd starts: a few events
# extended into PCRs 0, 2, 4 and 7 of the SHA-256 bank with tpm2_pcrextend,
# logged in $SANDBOX_DIR/event-log.bin (TCG crypto-agile format, SHA-256),
# and the PCR values the log replays to (from zero; the TPM started at
# locality 0) in $SANDBOX_DIR/reference.json as
# {"bank": "sha256", "values": {"0": HEX, ...}}: the operator's reference
# values for a device of this build, computed from the log, not read from
# the device.
_sandbox_measure() {
    local d=$SANDBOX_DIR spec
    python3 - "$d/event-log.bin" "$d/reference.json" "$d/extends" <<'EOF' || return 1
import hashlib, json, struct, sys

log_path, ref_path, extends_path = sys.argv[1:4]
EV_SEPARATOR, EV_S_CRTM_VERSION = 0x4, 0x8
EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000001, 0x80000003
sha = lambda b: hashlib.sha256(b).digest()
separator = bytes(4)
# (PCR, type, data, the measured bytes): what a firmware and boot loader of
# "tresim-sandbox 1.0" would measure.
events = [
    (0, EV_S_CRTM_VERSION, "tresim-sandbox firmware 1.0".encode("utf-16-le"), None),
    (0, EV_SEPARATOR, separator, separator),
    (2, EV_SEPARATOR, separator, separator),
    (4, EV_EFI_BOOT_SERVICES_APPLICATION, b"\\EFI\\BOOT\\BOOTX64.EFI", b"boot loader image 1.0"),
    (4, EV_SEPARATOR, separator, separator),
    (7, EV_EFI_VARIABLE_DRIVER_CONFIG, b"SecureBoot=1", b"SecureBoot\x01"),
    (7, EV_SEPARATOR, separator, separator),
]
spec = (b"Spec ID Event03\0" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, 1) +
        struct.pack("<HH", 0x000B, 32) + b"\0")
log = struct.pack("<II", 0, 0x3) + bytes(20) + struct.pack("<I", len(spec)) + spec
pcrs = {i: bytes(32) for i in (0, 2, 4, 7)}
with open(extends_path, "w") as extends:
    for pcr, etype, data, measured in events:
        digest = sha(data if measured is None else measured)
        log += struct.pack("<IIIH", pcr, etype, 1, 0x000B) + digest
        log += struct.pack("<I", len(data)) + data
        pcrs[pcr] = sha(pcrs[pcr] + digest)
        print(f"{pcr}:sha256={digest.hex()}", file=extends)
with open(log_path, "wb") as f:
    f.write(log)
with open(ref_path, "w") as f:
    json.dump({"bank": "sha256", "values": {str(i): v.hex() for i, v in pcrs.items()}}, f)
EOF
    while read -r spec; do
        tpm2_pcrextend -T "$SANDBOX_TCTI" "$spec" >>"$d/measure.log" 2>&1 || {
            _sandbox_tail "$d/measure.log"
            _sandbox_fail "tpm2_pcrextend $spec failed"
            return 1
        }
    done <"$d/extends"
    _sandbox_log "measured boot: $(wc -l <"$d/extends") events in $d/event-log.bin"
}

# sandbox_start_ps BUILD_DIR: a Provisioning Server for the sandbox (called by
# sandbox_start --ps, after the TPM is manufactured and before tresimd
# starts). tools/ps-dev-pki makes its PKI and configuration in
# $SANDBOX_DIR/ps (port 0: a free port, which tresim-ps writes to a file once
# it accepts connections), with swtpm's local CA (root and issuer) as the
# manufacturer CA; a second operator token is added to ps.conf. Honours
# TRESIM_PS=path/to/tresim-ps. Sets SANDBOX_PS_URL (https://127.0.0.1:PORT),
# SANDBOX_PS_DIR (ca.pem: the TLS root to give curl --cacert),
# SANDBOX_PS_TOKEN and SANDBOX_PS_TOKEN_B (bearer tokens of two operators)
# and SANDBOX_PS_PID.
sandbox_start_ps() {
    local build=${1:?sandbox_start_ps: BUILD_DIR is required}
    local exe=${TRESIM_PS:-$build/src/ps/tresim-ps} d=$SANDBOX_DIR/ps i port
    [[ -n "$SANDBOX_DIR" ]] || _sandbox_fail "sandbox_start_ps: no sandbox (sandbox_start first)" ||
        return 1
    [[ -x "$exe" ]] || _sandbox_fail "no tresim-ps at $exe (build it first)" || return 1
    SANDBOX_PS_TOKEN=$("$SANDBOX_ROOT/tools/ps-dev-pki" "$d" --port 0 \
        --ek-ca "$SANDBOX_DIR/ca/swtpm-localca-rootca-cert.pem" \
        --ek-ca "$SANDBOX_DIR/ca/issuercert.pem" 2>"$SANDBOX_DIR/ps-dev-pki.log") || {
        _sandbox_tail "$SANDBOX_DIR/ps-dev-pki.log"
        _sandbox_fail "tools/ps-dev-pki failed"
        return 1
    }
    SANDBOX_PS_TOKEN_B=$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')
    python3 - "$d/ps.conf" "$SANDBOX_PS_TOKEN_B" <<'EOF' || return 1
import hashlib, json, sys
with open(sys.argv[1]) as f:
    conf = json.load(f)
conf["operator_tokens_sha256"].append(hashlib.sha256(sys.argv[2].encode()).hexdigest())
with open(sys.argv[1], "w") as f:
    json.dump(conf, f, indent=2)
EOF
    "$exe" --config "$d/ps.conf" --port-file "$d/port" </dev/null >"$SANDBOX_DIR/tresim-ps.log" 2>&1 &
    SANDBOX_PS_PID=$!
    SANDBOX_PIDS+=("$SANDBOX_PS_PID")
    for ((i = 0; i < 1500; i++)); do
        [[ -s "$d/port" ]] && break
        if ! kill -0 "$SANDBOX_PS_PID" 2>/dev/null; then
            _sandbox_tail "$SANDBOX_DIR/tresim-ps.log"
            _sandbox_fail "tresim-ps exited before it listened"
            return 1
        fi
        sleep 0.02
    done
    if [[ ! -s "$d/port" ]]; then
        _sandbox_tail "$SANDBOX_DIR/tresim-ps.log"
        _sandbox_fail "tresim-ps did not listen in 30 s"
        return 1
    fi
    port=$(<"$d/port")
    SANDBOX_PS_DIR=$d
    SANDBOX_PS_URL="https://127.0.0.1:$port"
    _sandbox_log "tresim-ps $SANDBOX_PS_PID at $SANDBOX_PS_URL"
}

# sandbox_start BUILD_DIR [--ps]: the whole sandbox. Sets SANDBOX_DIR,
# SANDBOX_TCTI, SANDBOX_TRESIMD_PID and exports DBUS_SYSTEM_BUS_ADDRESS;
# with --ps also the SANDBOX_PS_ variables of sandbox_start_ps.
sandbox_start() {
    local build=${1:?sandbox_start: BUILD_DIR is required} ps=0
    if [[ "${2:-}" == --ps ]]; then
        ps=1
    elif [[ -n "${2:-}" ]]; then
        _sandbox_fail "sandbox_start: unknown argument $2"
        return 1
    fi
    local exe=${TRESIMD:-$build/src/daemon/tresimd}
    [[ -x "$exe" ]] || _sandbox_fail "no tresimd at $exe (build it first)" || return 1
    sandbox_check || return 1
    if ((ps)); then
        command -v tpm2_pcrextend >/dev/null 2>&1 ||
            _sandbox_fail "tpm2_pcrextend is not installed (tools/install-deps installs it)" ||
            return 1
    fi
    [[ -z "$SANDBOX_DIR" ]] || _sandbox_fail "sandbox_start: already started" || return 1
    trap sandbox_stop EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    SANDBOX_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tresim-sandbox-XXXXXX")
    chmod 0755 "$SANDBOX_DIR" # other users reach the bus socket (as on a real system)
    _sandbox_log "folder $SANDBOX_DIR"
    _sandbox_manufacture || return 1
    _sandbox_swtpm || return 1
    if ((ps)); then
        _sandbox_measure || return 1
        sandbox_start_ps "$build" || return 1
    else
        SANDBOX_PS_URL=""
    fi
    _sandbox_bus || return 1
    _sandbox_tresimd "$exe" || return 1
}

# sandbox_stop: stops every process of the sandbox (tresimd first, so that
# it shuts down cleanly while its bus and TPM still run) and removes the
# folder. Sets SANDBOX_TRESIMD_STATUS to tresimd's exit status (0 for a
# clean stop). Safe to call twice.
sandbox_stop() {
    local i pid n status
    for ((i = ${#SANDBOX_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${SANDBOX_PIDS[i]}
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        n=0
        while ((n++ < 500)) && kill -0 "$pid" 2>/dev/null; do
            sleep 0.02
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "sandbox: process $pid did not stop on SIGTERM in 10 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        status=0
        wait "$pid" 2>/dev/null || status=$?
        if [[ "$pid" == "${SANDBOX_TRESIMD_PID:-}" ]]; then
            SANDBOX_TRESIMD_STATUS=$status
            if ((status != 0)); then
                echo "sandbox: tresimd exited with status $status on SIGTERM" >&2
                _sandbox_tail "$SANDBOX_DIR/tresimd.log"
            fi
        fi
    done
    SANDBOX_PIDS=()
    SANDBOX_PS_URL=""
    if [[ -n "$SANDBOX_DIR" && -d "$SANDBOX_DIR" ]]; then
        if [[ "${SANDBOX_KEEP:-0}" == 1 ]]; then
            echo "sandbox: kept $SANDBOX_DIR (SANDBOX_KEEP=1)" >&2
        else
            rm -rf "$SANDBOX_DIR"
        fi
    fi
    SANDBOX_DIR=""
}

# sandbox_iccid N: a 19-digit ICCID (issuer 89 49 02) whose last digit is the
# Luhn check digit (ITU-T E.118).
sandbox_iccid() {
    local body
    body=$(printf '894902000000%06d' "$1")
    local sum=0 i d len=${#body}
    # Doubling starts at the rightmost digit of the body (the check digit's
    # neighbour).
    for ((i = 0; i < len; i++)); do
        d=${body:len-1-i:1}
        if ((i % 2 == 0)); then
            d=$((d * 2))
            ((d > 9)) && d=$((d - 9))
        fi
        sum=$((sum + d))
    done
    echo "$body$(((10 - sum % 10) % 10))"
}

# sandbox_authority FILE: a new policy authority (ECC P-256 private key, PEM).
sandbox_authority() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# sandbox_approval KEY: prints the approval JSON (docs/dbus-api.md, "Approval
# JSON") of the platform state that tresimd reports (GetPlatformState),
# signed with the authority KEY. An operator's authority would compute the
# expected PCR values itself instead of trusting what the device reports.
sandbox_approval() {
    local key=$1 state
    # busctl prints a{uay} as numbers only: "a{uay} COUNT (INDEX LEN BYTE...)...".
    state=$(busctl --system call org.tresim1 /org/tresim1 org.tresim1.Manager \
        GetPlatformState) || return 1
    python3 - "$key" "$state" <<'EOF'
import hashlib, json, subprocess, sys

tokens = sys.argv[2].split()
if not tokens or tokens[0] != "a{uay}":
    sys.exit("sandbox: GetPlatformState: unexpected answer " + repr(sys.argv[2][:40]))
values, pos = {}, 2
for _ in range(int(tokens[1])):
    index, length = int(tokens[pos]), int(tokens[pos + 1])
    values[index] = bytes(int(t) for t in tokens[pos + 2:pos + 2 + length])
    pos += 2 + length
if not values:
    sys.exit("sandbox: GetPlatformState returned no PCR")
idx = sorted(values)
bitmap = bytearray(3)
for i in idx:
    bitmap[i // 8] |= 1 << (i % 8)
tpml = (1).to_bytes(4, "big") + (0x000B).to_bytes(2, "big") + b"\x03" + bytes(bitmap)
pcr_digest = hashlib.sha256(b"".join(values[i] for i in idx)).digest()
policy = hashlib.sha256(bytes(32) + (0x17F).to_bytes(4, "big") + tpml + pcr_digest).digest()
key = sys.argv[1]
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=policy,
                     capture_output=True, check=True).stdout
pub = subprocess.run(["openssl", "pkey", "-in", key, "-pubout"], capture_output=True,
                     check=True, text=True).stdout
print(json.dumps({"format": "tresim-approval-1", "authority": pub,
                  "pcrs": {"bank": "sha256",
                           "values": {str(i): values[i].hex() for i in idx}},
                  "auth_value": False, "policy_ref": "", "signature": sig.hex()}))
EOF
}
