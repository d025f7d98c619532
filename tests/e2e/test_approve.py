#!/usr/bin/env python3
"""End to end: the factory flow of docs/tresim-approve.md.

A swtpm plays the golden device. The test reads its PCRs with tpm2_pcrread,
makes an authority key and signs an approval with tresim-approve, checks the
approval independently (the policy digest with the formula of
docs/dbus-api.md, the ECDSA signature with Python's `cryptography`), runs a
table of malformed approvals through `tresim-approve verify`, and finally has
the Trusted Environment judge them: a real tresimd on a private bus and swtpm,
driven with tresimctl, refuses the tampered approvals and accepts the signed
one, after which a MID imports under that authority.

Environment: TRESIM_APPROVE, TRESIMD, TRESIMCTL (executables),
TRESIM_VECTORS_DIR. Exit 77 (skip) when swtpm, tpm2-tools or dbus-daemon are
missing.
"""

import copy
import hashlib
import json
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

APPROVE = os.environ.get("TRESIM_APPROVE", "")
TRESIMD = os.environ.get("TRESIMD", "")
TRESIMCTL = os.environ.get("TRESIMCTL", "")
VECTORS_DIR = os.environ.get("TRESIM_VECTORS_DIR", "")
SELECTION = [0, 2, 4, 7]


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


def approve(*args):
    return run([APPROVE] + list(args))


def bindable(port):
    """Whether `port` can be bound on loopback with SO_REUSEADDR, as swtpm binds."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair():
    """A port P with P and P + 1 free (the swtpm TCTI uses P + 1 for control),
    picked at random outside the kernel's ephemeral range: next to a fresh
    ephemeral port sit the TIME_WAIT sockets of the tests running beside this
    one (tests/integration/swtpm.cpp does the same)."""
    for _ in range(200):
        port = random.randrange(10000, 30000, 2)
        if bindable(port) and bindable(port + 1):
            return port
    raise RuntimeError("no free port pair")


def luhn_complete(body):
    for d in "0123456789":
        digits = [int(c) for c in body + d]
        total = 0
        for i, v in enumerate(reversed(digits)):
            if i % 2 == 1:
                v *= 2
                if v > 9:
                    v -= 9
            total += v
        if total % 10 == 0:
            return body + d
    raise ValueError(body)


def approved_policy(values, auth_value):
    """The formula of docs/dbus-api.md#approval-json, independent of tresim."""
    idx = sorted(int(i) for i in values)
    bitmap = bytearray(3)
    for i in idx:
        bitmap[i // 8] |= 1 << (i % 8)
    tpml = (1).to_bytes(4, "big") + (0x000B).to_bytes(2, "big") + b"\x03" + bytes(bitmap)
    pcr_digest = hashlib.sha256(b"".join(bytes.fromhex(values[str(i)]) for i in idx)).digest()
    d = hashlib.sha256(bytes(32) + (0x17F).to_bytes(4, "big") + tpml + pcr_digest).digest()
    if auth_value:
        d = hashlib.sha256(d + (0x16B).to_bytes(4, "big")).digest()
    return d


def parse_pcrread(text):
    """{"0": hex, ...} of the sha256 bank from tpm2_pcrread's output."""
    values, bank = {}, None
    for line in text.splitlines():
        s = line.strip()
        if s.endswith(":") and not s[:-1].strip().isdigit():
            bank = s[:-1].strip()
        elif bank == "sha256" and ":" in s:
            i, v = (x.strip() for x in s.split(":", 1))
            values[i] = v.lower().removeprefix("0x")
    return values


class FactoryFlow(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tresim-approve-")
        cls.procs = []
        try:
            cls._start_swtpm()
            cls._golden_state()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for p in reversed(cls.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def _start_swtpm(cls):
        port = free_port_pair()
        state = os.path.join(cls.dir, "tpm")
        os.mkdir(state)
        cls.procs.append(subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", "dir=" + state,
             "--server", "type=tcp,port=%d,bindaddr=127.0.0.1" % port,
             "--ctrl", "type=tcp,port=%d,bindaddr=127.0.0.1" % (port + 1),
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        cls.tcti = "swtpm:host=127.0.0.1,port=%d" % port
        for _ in range(250):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("swtpm did not start")

    @classmethod
    def _golden_state(cls):
        # A boot measures something into PCR 7 (Secure Boot state); read the
        # golden device's values as an operator would.
        r = run(["tpm2_pcrextend", "-T", cls.tcti, "7:sha256=" + "42" * 32])
        assert r.returncode == 0, r.stderr
        r = run(["tpm2_pcrread", "-T", cls.tcti, "sha256:0,2,4,7"])
        assert r.returncode == 0, r.stderr
        cls.pcrread = os.path.join(cls.dir, "golden-pcrs.yaml")
        with open(cls.pcrread, "w") as f:
            f.write(r.stdout)
        cls.values = parse_pcrread(r.stdout)
        assert sorted(cls.values, key=int) == [str(i) for i in SELECTION], r.stdout
        assert cls.values["7"] != "00" * 32 and cls.values["0"] == "00" * 32

        cls.key = os.path.join(cls.dir, "authority.pem")
        cls.pub = os.path.join(cls.dir, "authority.pub.pem")
        r = approve("keygen", "--out", cls.key, "--public-out", cls.pub)
        assert r.returncode == 0, r.stderr
        cls.keygen_out = r.stdout
        cls.approval_path = os.path.join(cls.dir, "approval.json")
        r = approve("sign", "--key", cls.key, "--pcrs", cls.pcrread, "--out", cls.approval_path)
        assert r.returncode == 0, r.stderr
        with open(cls.approval_path) as f:
            cls.approval = json.load(f)

    def path(self, name):
        return os.path.join(self.dir, name)

    @staticmethod
    def read(path):
        with open(path) as f:
            return f.read()

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    # ---- the tool ------------------------------------------------------------

    def test_keygen_writes_a_private_key_only_its_owner_reads_and_prints_the_public_key(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.key).st_mode), 0o600)
        with open(self.pub) as f:
            pub = f.read()
        self.assertIn("-----BEGIN PUBLIC KEY-----", self.keygen_out)
        self.assertIn(pub, self.keygen_out)
        self.assertRegex(self.keygen_out, r"name: 000b[0-9a-f]{64}\n")
        self.assertNotIn("PRIVATE", self.keygen_out)
        # An existing key is never replaced by accident.
        before = self.read(self.key)
        r = approve("keygen", "--out", self.key)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--force", r.stderr)
        self.assertEqual(self.read(self.key), before)

    def test_the_signed_approval_is_the_documented_format_and_verifies_independently(self):
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        a = self.approval
        self.assertEqual(a["format"], "tresim-approval-1")
        self.assertEqual(a["pcrs"], {"bank": "sha256", "values": self.values})
        self.assertIs(a["auth_value"], False)
        self.assertEqual(a["policy_ref"], "")
        expected = approved_policy(self.values, False)
        self.assertEqual(a["approved_policy"], expected.hex())
        with open(self.pub, "rb") as f:
            key = serialization.load_pem_public_key(f.read())
        self.assertEqual(a["authority"].encode(), key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        # Raises InvalidSignature when it does not verify.
        key.verify(bytes.fromhex(a["signature"]), expected, ec.ECDSA(hashes.SHA256()))

    def test_every_input_form_gives_the_same_approved_policy(self):
        listed = "sha256:" + ",".join("%s=%s" % (i, self.values[i]) for i in self.values)
        forms = {
            "pcr-values": ["--pcr-values", listed],
            "text file": ["--pcrs", self.write("pcrs.txt", listed + "\n")],
            "pcrs JSON": ["--pcrs", self.write("pcrs.json", json.dumps(self.approval["pcrs"]))],
            "approval": ["--pcrs", self.approval_path],
        }
        for name, args in forms.items():
            with self.subTest(name):
                r = approve("sign", "--key", self.key, "--out", "-", *args)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(json.loads(r.stdout)["approved_policy"],
                                 self.approval["approved_policy"])
        r = approve("sign", "--key", self.key, "--pin-bound", "--pcr-values", listed, "--out", "-")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["approved_policy"],
                         approved_policy(self.values, True).hex())

    def test_sign_refuses_incomplete_or_malformed_values(self):
        seven = "sha256:0=%s,2=%s,4=%s" % (self.values["0"], self.values["2"], self.values["4"])
        cases = {
            "a PCR missing": (["--pcr-values", seven], "PCR 7"),
            "a short value": (["--pcr-values", seven + ",7=00"], "PCR 7"),
            "not hex": (["--pcr-values", seven + ",7=" + "zz" * 32], "7"),
            "PCR 24": (["--pcr-values", seven + ",24=" + "00" * 32], "24"),
            "no values": ([], "--pcrs"),
            "a public key": (["--pcr-values", seven], "private"),
        }
        for name, (args, names) in cases.items():
            with self.subTest(name):
                key = self.pub if name == "a public key" else self.key
                r = approve("sign", "--key", key, "--out", self.path("x.json"), *args)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn(names, r.stderr)
                self.assertFalse(os.path.exists(self.path("x.json")))

    def test_verify_accepts_the_approval_and_refuses_every_mutation_naming_the_field(self):
        r = approve("verify", self.approval_path, "--authority", self.pub, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertTrue(out["valid"])
        self.assertEqual(out["values"], self.values)

        other_key = self.path("other.pem")
        self.assertEqual(approve("keygen", "--out", other_key).returncode, 0)
        other_pub = run(["openssl", "pkey", "-in", other_key, "-pubout"]).stdout

        def mutate(change):
            a = copy.deepcopy(self.approval)
            change(a)
            return json.dumps(a)

        def flip(hexstr, at=0):
            b = bytearray(bytes.fromhex(hexstr))
            b[at] ^= 0x01
            return b.hex()

        good = json.dumps(self.approval)
        table = []
        for field in ["format", "authority", "pcrs", "signature"]:
            table.append(("missing " + field, field, mutate(lambda a, f=field: a.pop(f))))
        for field in ["format", "authority", "pcrs", "signature", "auth_value", "policy_ref",
                      "approved_policy"]:
            table.append((field + " a number", field, mutate(lambda a, f=field: a.update({f: 7}))))
        table += [
            ("unknown field", "extra", mutate(lambda a: a.update(extra=1))),
            ("format 2", "format", mutate(lambda a: a.update(format="tresim-approval-2"))),
            ("bank sha1", "bank", mutate(lambda a: a["pcrs"].update(bank="sha1"))),
            ("bank missing", "bank", mutate(lambda a: a["pcrs"].pop("bank"))),
            ("values missing", "values", mutate(lambda a: a["pcrs"].pop("values"))),
            ("PCR 7 missing", "pcrs.values", mutate(lambda a: a["pcrs"]["values"].pop("7"))),
            ("PCR 1 added", "pcrs.values",
             mutate(lambda a: a["pcrs"]["values"].update({"1": "00" * 32}))),
            ("PCR 7 short", "pcrs.values.7",
             mutate(lambda a: a["pcrs"]["values"].update({"7": "00" * 31}))),
            ("PCR 7 not hex", "pcrs.values.7",
             mutate(lambda a: a["pcrs"]["values"].update({"7": "zz" * 32}))),
            ("PCR 7 of another state", "approved_policy",
             mutate(lambda a: a["pcrs"]["values"].update({"7": flip(a["pcrs"]["values"]["7"])}))),
            ("PCR 7 of another state, digest dropped", "signature",
             mutate(lambda a: (a["pcrs"]["values"].update({"7": flip(a["pcrs"]["values"]["7"])}),
                               a.pop("approved_policy")))),
            ("auth_value flipped", "approved_policy", mutate(lambda a: a.update(auth_value=True))),
            ("auth_value flipped, digest dropped", "signature",
             mutate(lambda a: (a.update(auth_value=True), a.pop("approved_policy")))),
            ("policy_ref added", "signature", mutate(lambda a: a.update(policy_ref="01"))),
            ("policy_ref of 33 bytes", "policy_ref",
             mutate(lambda a: a.update(policy_ref="00" * 33))),
            ("signature flipped", "signature",
             mutate(lambda a: a.update(signature=flip(a["signature"], 10)))),
            ("signature truncated", "signature",
             mutate(lambda a: a.update(signature=a["signature"][:-2]))),
            ("signature empty", "signature", mutate(lambda a: a.update(signature=""))),
            ("authority of another key", "signature",
             mutate(lambda a: a.update(authority=other_pub))),
            ("authority not PEM", "authority", mutate(lambda a: a.update(authority="key"))),
            ("authority a private key", "authority",
             mutate(lambda a: a.update(authority=self.read(self.key)))),
            ("truncated", "JSON", good[: len(good) // 2]),
            ("not JSON", "JSON", "format=tresim-approval-1"),
            ("empty", "JSON", ""),
            ("an array", "object", "[]"),
            ("huge", "extra", mutate(lambda a: a.update(extra="x" * (512 << 10)))),
        ]
        for name, names, text in table:
            with self.subTest(name):
                path = self.write("mutant.json", text)
                r = approve("verify", path, "--authority", self.pub)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn(names, r.stderr)
                self.assertLess(len(r.stderr), 600)
        # Valid, but by another authority than the one expected.
        r = approve("sign", "--key", other_key, "--pcrs", self.pcrread, "--out", "-")
        r = approve("verify", self.write("other.json", r.stdout), "--authority", self.pub)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not by", r.stderr)

    # ---- the Trusted Environment judges -------------------------------------

    def start_tresimd(self):
        bus = self.path("bus")
        with open(self.path("bus.conf"), "w") as f:
            f.write('<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration '
                    '1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
                    "<busconfig><type>session</type><listen>unix:path=%s</listen>"
                    "<auth>EXTERNAL</auth><policy context=\"default\"><allow user=\"*\"/>"
                    "<allow send_destination=\"*\"/><allow receive_sender=\"*\"/><allow own=\"*\"/>"
                    "</policy></busconfig>\n"
                    % bus)
        self.procs.append(subprocess.Popen(
            ["dbus-daemon", "--config-file=" + self.path("bus.conf"), "--nofork", "--nopidfile",
             "--nosyslog"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(250):
            if os.path.exists(bus):
                break
            time.sleep(0.02)
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS="unix:path=" + bus,
                   DBUS_SYSTEM_BUS_ADDRESS="unix:path=" + self.path("no-such-bus"),
                   TSS2_LOG="all+none")
        with open(self.path("tresimd.conf"), "w") as f:
            f.write("[mids]\nslots = 1\n[authorization]\npolkit = auto\n")
        with open(self.path("tresimd.log"), "w") as log:
            self.procs.append(subprocess.Popen(
                [TRESIMD, "--session", "--tcti", self.tcti, "--state-dir", self.path("state"),
                 "--config", self.path("tresimd.conf")], env=env, stdout=log, stderr=log))
        for _ in range(750):
            if run([TRESIMCTL, "--session", "status"], env=env).returncode == 0:
                return env
            if self.procs[-1].poll() is not None:
                break
            time.sleep(0.02)
        self.fail("tresimd did not come up: " + self.read(self.path("tresimd.log"))[-2000:])

    def test_the_te_refuses_tampered_approvals_and_accepts_the_signed_one(self):
        env = self.start_tresimd()

        def ctl(*args):
            return run([TRESIMCTL, "--session"] + list(args), env=env)

        with open(os.path.join(VECTORS_DIR, "milenage.json")) as f:
            s = json.load(f)["milenage"][0]
        profile = self.write("profile.json", json.dumps({
            "iccid": luhn_complete("894902000000777000"), "imsi": "262017770000001",
            "algorithm": "milenage", "k": s["k"], "opc": s["opc"], "amf": s["amf"]}))
        with open(self.pub) as f:
            reference = self.write("reference.json", json.dumps(
                {"format": "tresim-approval-1", "authority": f.read()}))

        def tampered(change):
            a = copy.deepcopy(self.approval)
            change(a)
            return self.write("tampered.json", json.dumps(a))

        def flip7(a):
            v = bytearray(bytes.fromhex(a["pcrs"]["values"]["7"]))
            v[31] ^= 0x80
            a["pcrs"]["values"]["7"] = v.hex()
            a.pop("approved_policy")

        cases = [
            ("PCR 7 changed", flip7, "PolicyDenied"),
            ("signature of another digest",
             lambda a: a.update(approved_policy=approved_policy(self.values, True).hex(),
                                auth_value=True), "PolicyDenied"),
            ("PCR values for another selection",
             lambda a: a["pcrs"]["values"].pop("4"), "InvalidArgument"),
        ]
        for name, change, error in cases:
            with self.subTest(name):
                r = ctl("approve", tampered(change))
                self.assertNotEqual(r.returncode, 0, r.stdout)
                self.assertIn(error, r.stderr)
        # Nothing of them was stored: no approval of this authority to import under.
        r = ctl("import", profile, "--approval", reference)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("PolicyDenied", r.stderr)

        r = ctl("approve", self.approval_path)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = ctl("--json", "import", profile, "--approval", reference)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = ctl("--json", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("262017770000001", r.stdout)


def main():
    missing = [p for p in ("swtpm", "tpm2_pcrread", "tpm2_pcrextend", "dbus-daemon", "openssl")
               if shutil.which(p) is None]
    if missing:
        print("skipped: missing " + ", ".join(missing))
        sys.exit(77)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        print("skipped: Python's cryptography package is missing")
        sys.exit(77)
    if not (APPROVE and TRESIMD and TRESIMCTL and VECTORS_DIR):
        print("TRESIM_APPROVE, TRESIMD, TRESIMCTL and TRESIM_VECTORS_DIR must be set")
        sys.exit(99)
    unittest.main(verbosity=2)


if __name__ == "__main__":
    main()
