#!/usr/bin/env python3
"""End-to-end tests of tresim-auc, run as a separate process the way a user runs it.

Expected values come from the 3GPP test data in tests/vectors/*.json (directory in
TRESIM_VECTORS_DIR), never from tresim-auc itself. Derived values (AUTN, SRES, Kc,
AUTS) are recomputed here from the listed function outputs with the formulas of
TS 33.102 §6.3 and §6.8.1.2. The executable is TRESIM_AUC.
"""

import json
import os
import re
import subprocess
import sys
import unittest

AUC = os.environ.get("TRESIM_AUC", "")
VECTORS_DIR = os.environ.get("TRESIM_VECTORS_DIR", "")
SHARED_SAMPLE = os.environ.get("TRESIM_SHARED_VECTORS", "")


def load_sets(name):
    """The list under key `name` in tests/vectors/<name>.json, else in the shared
    sample (while the official file is being written), else None."""
    path = os.path.join(VECTORS_DIR, name + ".json")
    if VECTORS_DIR and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)[name]
    if SHARED_SAMPLE and os.path.exists(SHARED_SAMPLE):
        with open(SHARED_SAMPLE, encoding="utf-8") as f:
            return json.load(f).get(name)
    return None


def run(args, stdin=None):
    return subprocess.run([AUC] + list(args), input=stdin, capture_output=True, timeout=60)


def xor_hex(a, b):
    return bytes(x ^ y for x, y in zip(bytes.fromhex(a), bytes.fromhex(b))).hex()


def c2(res_hex):
    """SRES = XOR of the 32-bit words of RES padded to 128 bits (TS 33.102 §6.8.1.2)."""
    res = bytes.fromhex(res_hex).ljust(16, b"\0")
    out = bytes(4)
    for i in range(0, 16, 4):
        out = bytes(x ^ y for x, y in zip(out, res[i : i + 4]))
    return out.hex()


def c3(ck_hex, ik_hex):
    """Kc = CK1 xor CK2 xor IK1 xor IK2 (64-bit halves)."""
    parts = [ck_hex[:16], ck_hex[16:], ik_hex[:16], ik_hex[16:]]
    out = parts[0]
    for p in parts[1:]:
        out = xor_hex(out, p)
    return out


def key_args(alg, s, use_op=False):
    """Command-line key options for one Milenage or TUAK set."""
    args = ["--alg", alg, "--k", s["k"]]
    if alg == "milenage":
        args += ["--op", s["op"]] if use_op else ["--opc", s["opc"]]
    else:
        args += ["--op", s["top"]] if use_op else ["--opc", s["topc"]]
        args += [
            "--res-bits", str(s["res_len_bits"]),
            "--mac-bits", str(s["mac_len_bits"]),
            "--ck-bits", str(s["ck_len_bits"]),
            "--ik-bits", str(s["ik_len_bits"]),
            "--keccak-iterations", str(s["keccak_iterations"]),
        ]
    return args


def sqn_hex(value):
    return "%012x" % value


# A fixed Milenage subscription for the procedure tests (TS 35.208 set 1 values).
MIL = {
    "k": "465b5ce8b199b49faa5f0a2ee238a6bc",
    "op": "cdc202d5123e20f62b6d676ac72cb318",
    "opc": "cd63cb71954a9f4e48a5994e37a02baf",
}
MIL_KEYS = ["--alg", "milenage", "--k", MIL["k"], "--opc", MIL["opc"]]
RAND = "23553cbe9637a89d218ae64dae47bf35"
SECRETS = [MIL["k"], MIL["op"], MIL["opc"]]


class AucTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not AUC or not os.access(AUC, os.X_OK):
            raise unittest.SkipTest("TRESIM_AUC does not name an executable")

    def ok_json(self, args, stdin=None):
        p = run(list(args) + ["--json"], stdin)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        lines = p.stdout.decode().splitlines()
        self.assertEqual(len(lines), 1, p.stdout)
        return json.loads(lines[0])

    def assert_bad_input(self, args, argument, secrets=SECRETS):
        """Exit 2, one line on stderr naming --argument, no secret echoed."""
        p = run(args)
        err = p.stderr.decode(errors="replace")
        self.assertEqual(p.returncode, 2, "args %r: stderr %r" % (args, err))
        self.assertEqual(p.stdout, b"")
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertTrue(err.startswith("tresim-auc: "), err)
        self.assertIn("--" + argument, err)
        for s in secrets:
            self.assertNotIn(s.lower(), err.lower())
        return err

    def gen(self, sqn, amf="8000", rand=RAND, keys=MIL_KEYS):
        return self.ok_json(["gen"] + keys + ["--rand", rand, "--sqn", sqn, "--amf", amf])


class Gen(AucTestCase):
    def check_milenage_set(self, s, out):
        self.assertEqual(out["mac_a"], s["f1"])
        self.assertEqual(out["mac_s"], s["f1star"])
        self.assertEqual(out["xres"], s["f2"])
        self.assertEqual(out["ck"], s["f3"])
        self.assertEqual(out["ik"], s["f4"])
        self.assertEqual(out["ak"], s["f5"])
        self.assertEqual(out["ak_star"], s["f5star"])
        self.assertEqual(out["opc"], s["opc"])
        self.assertEqual(out["autn"], xor_hex(s["sqn"], s["f5"]) + s["amf"] + s["f1"])
        self.assertEqual(out["sres"], c2(s["f2"]))
        self.assertEqual(out["kc"], c3(s["f3"], s["f4"]))

    def test_matches_every_official_milenage_set_from_opc_and_from_op(self):
        sets = load_sets("milenage")
        if not sets:
            self.skipTest("no Milenage test data")
        for s in sets:
            for use_op in (False, True):
                with self.subTest(set=s["name"], op=use_op):
                    out = self.ok_json(
                        ["gen"] + key_args("milenage", s, use_op)
                        + ["--rand", s["rand"], "--sqn", s["sqn"], "--amf", s["amf"]]
                    )
                    self.assertEqual(
                        set(out),
                        {"autn", "xres", "ck", "ik", "ak", "mac_a", "mac_s", "ak_star", "opc",
                         "sres", "kc"},
                    )
                    self.check_milenage_set(s, out)

    def test_gives_the_official_gsm_milenage_sres_and_kc(self):
        sets = load_sets("gsm_milenage")
        if not sets:
            self.skipTest("no GSM-Milenage test data")
        for s in sets:
            with self.subTest(set=s["name"]):
                out = self.ok_json(
                    ["gen", "--alg", "milenage", "--k", s["k"], "--opc", s["opc"], "--rand",
                     s["rand"], "--sqn", "000000000000", "--amf", "0000"]
                )
                self.assertEqual(out["sres"], s["sres1_c2"])
                self.assertEqual(out["kc"], s["kc"])

    def test_matches_every_official_tuak_set_from_topc_and_from_top(self):
        sets = load_sets("tuak")
        if not sets:
            self.skipTest("no TUAK test data")
        for s in sets:
            for use_op in (False, True):
                with self.subTest(set=s["name"], top=use_op):
                    out = self.ok_json(
                        ["gen"] + key_args("tuak", s, use_op)
                        + ["--rand", s["rand"], "--sqn", s["sqn"], "--amf", s["amf"]]
                    )
                    self.assertEqual(
                        set(out),
                        {"autn", "xres", "ck", "ik", "ak", "mac_a", "mac_s", "ak_star", "opc"},
                    )
                    self.assertEqual(out["mac_a"], s["f1"])
                    self.assertEqual(out["mac_s"], s["f1star"])
                    self.assertEqual(out["xres"], s["f2"])
                    self.assertEqual(out["ck"], s["f3"])
                    self.assertEqual(out["ik"], s["f4"])
                    self.assertEqual(out["ak"], s["f5"])
                    self.assertEqual(out["ak_star"], s["f5star"])
                    self.assertEqual(out["opc"], s["topc"])
                    self.assertEqual(out["autn"], xor_hex(s["sqn"], s["f5"]) + s["amf"] + s["f1"])

    def test_prints_aligned_name_value_lines_without_json(self):
        sets = load_sets("milenage")
        if not sets:
            self.skipTest("no Milenage test data")
        s = sets[0]
        p = run(["gen"] + key_args("milenage", s)
                + ["--rand", s["rand"], "--sqn", s["sqn"], "--amf", s["amf"]])
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.decode().splitlines()
        fields = {}
        columns = set()
        for line in lines:
            m = re.fullmatch(r"([a-z_]+):( +)([0-9a-f]+)", line)
            self.assertIsNotNone(m, line)
            fields[m.group(1)] = m.group(3)
            columns.add(len(m.group(1)) + 1 + len(m.group(2)))
        self.assertEqual(len(columns), 1, "values are not aligned: %r" % lines)
        self.check_milenage_set(s, fields)

    def test_draws_and_prints_a_random_rand_when_none_is_given(self):
        a = self.ok_json(["gen"] + MIL_KEYS + ["--sqn", "000000000020", "--amf", "8000"])
        b = self.ok_json(["gen"] + MIL_KEYS + ["--sqn", "000000000020", "--amf", "8000"])
        self.assertRegex(a["rand"], r"^[0-9a-f]{32}$")
        self.assertNotEqual(a["rand"], b["rand"])
        # The printed RAND is the one used.
        again = self.gen("000000000020", rand=a["rand"])
        self.assertEqual(again["autn"], a["autn"])
        self.assertEqual(again["xres"], a["xres"])

    def test_does_not_print_rand_when_it_is_given(self):
        self.assertNotIn("rand", self.gen("000000000020"))


class Procedures(AucTestCase):
    def test_a_generated_vector_is_accepted_by_check_with_res_equal_to_xres(self):
        v = self.gen("0000000003e1")
        out = self.ok_json(["check"] + MIL_KEYS
                           + ["--rand", RAND, "--autn", v["autn"], "--sqn-ms", "0000000003a0"])
        self.assertEqual(out, {"result": "success", "res": v["xres"], "ck": v["ck"],
                               "ik": v["ik"], "sqn": "0000000003e1"})

    def test_a_generated_tuak_vector_is_accepted_by_check(self):
        sets = load_sets("tuak")
        if not sets:
            self.skipTest("no TUAK test data")
        for s in sets:
            with self.subTest(set=s["name"]):
                keys = key_args("tuak", s)
                v = self.ok_json(["gen"] + keys
                                 + ["--rand", s["rand"], "--sqn", "000000001001", "--amf", "8000"])
                out = self.ok_json(["check"] + keys + ["--rand", s["rand"], "--autn", v["autn"],
                                                       "--sqn-ms", "000000000001"])
                self.assertEqual(out["result"], "success")
                self.assertEqual(out["res"], v["xres"])
                self.assertEqual(out["ck"], v["ck"])
                self.assertEqual(out["ik"], v["ik"])
                self.assertEqual(out["sqn"], "000000001001")

    def test_an_sqn_behind_the_usim_gives_auts_and_resync_recovers_sqn_ms(self):
        sqn = 0x0000000003E1
        sqn_ms = sqn + 3 * 32  # same IND, a later SEQ: a replay for the USIM
        v = self.gen(sqn_hex(sqn))
        out = self.ok_json(["check"] + MIL_KEYS
                           + ["--rand", RAND, "--autn", v["autn"], "--sqn-ms", sqn_hex(sqn_ms)])
        self.assertEqual(set(out), {"result", "auts"})
        self.assertEqual(out["result"], "sync-failure")
        # AUTS = (SQN_MS xor AK*) || MAC-S with AMF* = 0000 (TS 33.102 §6.3.3),
        # recomputed from gen's f1* and f5* for SQN_MS.
        ref = self.gen(sqn_hex(sqn_ms), amf="0000")
        self.assertEqual(out["auts"], xor_hex(sqn_hex(sqn_ms), ref["ak_star"]) + ref["mac_s"])

        back = self.ok_json(["resync"] + MIL_KEYS + ["--rand", RAND, "--auts", out["auts"]])
        self.assertEqual(back, {"result": "success", "sqn_ms": sqn_hex(sqn_ms)})

    def test_the_same_sqn_twice_is_a_sync_failure(self):
        v = self.gen("000000000041")
        out = self.ok_json(["check"] + MIL_KEYS
                           + ["--rand", RAND, "--autn", v["autn"], "--sqn-ms", "000000000041"])
        self.assertEqual(out["result"], "sync-failure")

    def test_ind_bits_changes_how_far_ahead_an_sqn_may_be(self):
        # SQN_MS 0 and SQN 2^30: with 5 IND bits SEQ advances by 2^25, within the
        # default delta of 2^28 (fresh); with no IND bits by 2^30, beyond it.
        v = self.gen(sqn_hex(1 << 30))
        base = ["check"] + MIL_KEYS + ["--rand", RAND, "--autn", v["autn"],
                                        "--sqn-ms", "000000000000"]
        self.assertEqual(self.ok_json(base + ["--ind-bits", "5"])["result"], "success")
        self.assertEqual(self.ok_json(base)["result"], "success")
        self.assertEqual(self.ok_json(base + ["--ind-bits", "0"])["result"], "sync-failure")

    def test_a_corrupted_autn_is_a_mac_failure_and_exits_zero(self):
        v = self.gen("0000000003e1")
        autn = bytearray.fromhex(v["autn"])
        for index in (0, 6, 15):  # in SQN xor AK, in AMF, in MAC-A
            with self.subTest(byte=index):
                bad = bytearray(autn)
                bad[index] ^= 0x01
                args = ["check"] + MIL_KEYS + ["--rand", RAND, "--autn", bad.hex(),
                                               "--sqn-ms", "000000000000"]
                self.assertEqual(self.ok_json(args), {"result": "mac-failure"})
                p = run(args)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stdout.decode().split(), ["result:", "mac-failure"])

    def test_a_corrupted_auts_is_a_mac_failure(self):
        v = self.gen("0000000003e1")
        out = self.ok_json(["check"] + MIL_KEYS
                           + ["--rand", RAND, "--autn", v["autn"], "--sqn-ms", "000000000fff"])
        auts = bytearray.fromhex(out["auts"])
        auts[13] ^= 0x80
        back = self.ok_json(["resync"] + MIL_KEYS + ["--rand", RAND, "--auts", auts.hex()])
        self.assertEqual(back, {"result": "mac-failure"})

    def test_check_with_another_key_is_a_mac_failure(self):
        v = self.gen("0000000003e1")
        keys = ["--alg", "milenage", "--k", "00" * 16, "--opc", MIL["opc"]]
        out = self.ok_json(["check"] + keys + ["--rand", RAND, "--autn", v["autn"],
                                               "--sqn-ms", "000000000000"])
        self.assertEqual(out, {"result": "mac-failure"})


class Suci(AucTestCase):
    def sets(self):
        sets = load_sets("suci")
        if not sets:
            self.skipTest("no SUCI test data")
        return [s for s in sets if s.get("supi_type", "IMSI") == "IMSI"]

    def test_profiles_a_and_b_with_the_given_ephemeral_key_give_the_official_output(self):
        for s in self.sets():
            if s["profile"] == "null":
                continue
            keys = [s["hn_public_key"]] if s["profile"] == "A" else [
                s["hn_public_key_compressed"], s["hn_public_key_uncompressed"]]
            for key in keys:
                with self.subTest(set=s["name"], key=key[:2]):
                    out = self.ok_json(
                        ["suci", "--profile", s["profile"], "--mcc-mnc", s["mcc_mnc"], "--msin",
                         s["msin"], "--hn-key-id", "7", "--hn-public-key", key,
                         "--eph-private-key", s["eph_private_key"]]
                    )
                    self.assertEqual(out["scheme_output"], s["scheme_output_hex"])
                    scheme = "1" if s["profile"] == "A" else "2"
                    mcc, mnc = s["mcc_mnc"][:3], s["mcc_mnc"][3:]
                    self.assertEqual(out["suci"], "suci-0-%s-%s-0-%s-7-%s"
                                     % (mcc, mnc, scheme, s["scheme_output_hex"]))

    def test_the_null_scheme_carries_the_msin(self):
        for s in self.sets():
            if s["profile"] != "null":
                continue
            out = self.ok_json(["suci", "--profile", "null", "--mcc-mnc", s["mcc_mnc"],
                                "--msin", s["msin"], "--routing-indicator", "12"])
            self.assertEqual(out["scheme_output"], s["scheme_output_hex"])
            mcc, mnc = s["mcc_mnc"][:3], s["mcc_mnc"][3:]
            self.assertEqual(out["suci"], "suci-0-%s-%s-12-0-0-%s" % (mcc, mnc, s["msin"]))

    def test_a_random_ephemeral_key_gives_a_different_output_each_time(self):
        s = next((s for s in self.sets() if s["profile"] == "A"), None)
        if s is None:
            self.skipTest("no profile A set")
        args = ["suci", "--profile", "A", "--mcc-mnc", s["mcc_mnc"], "--msin", s["msin"],
                "--hn-key-id", "1", "--hn-public-key", s["hn_public_key"]]
        a = self.ok_json(args)
        b = self.ok_json(args)
        self.assertNotEqual(a["scheme_output"], b["scheme_output"])
        self.assertEqual(len(a["scheme_output"]), len(s["scheme_output_hex"]))


class Batch(AucTestCase):
    def test_mixed_good_and_bad_lines_give_one_result_each_in_order_and_exit_2(self):
        good = {"alg": "milenage", "k": MIL["k"], "opc": MIL["opc"], "rand": RAND,
                "sqn": "ff9bb4d0b607", "amf": "b9b9"}
        lines = [
            json.dumps(good),
            json.dumps(dict(good, rand=RAND[:-2])),
            "",
            "this is not json " + MIL["k"],
            json.dumps(dict(good, sqn="00")),
            "   ",
            json.dumps(dict(good, colour="blue")),
            json.dumps({k: v for k, v in good.items() if k != "amf"}),
            json.dumps(dict(good, op=MIL["op"])),
            json.dumps(dict(good, k=MIL["k"][:-1])),
            json.dumps([1, 2]),
            json.dumps(dict(good, alg="tuak", opc="00" * 32, k="00" * 16, mac_bits=32)),
            json.dumps(dict(good, sqn="000000000001")),
        ]
        p = run(["gen", "--batch"], ("\n".join(lines) + "\n").encode())
        self.assertEqual(p.returncode, 2, p.stderr)
        out = [json.loads(line) for line in p.stdout.decode().splitlines()]
        self.assertEqual(len(out), 11)
        self.assertEqual(out[0]["autn"], "55f328b43577b9b94a9ffac354dfafb3")
        self.assertEqual(out[0]["xres"], "a54211d5e3ba50bf")
        errors = [(o["result"], o.get("argument")) for o in out[1:10]]
        self.assertEqual(errors, [("error", "rand"), ("error", "line"), ("error", "sqn"),
                                  ("error", "colour"), ("error", "amf"), ("error", "opc"),
                                  ("error", "k"), ("error", "line"), ("error", "mac_bits")])
        for o in out[1:10]:
            self.assertIsInstance(o["message"], str)
            self.assertNotIn(MIL["k"], json.dumps(o))
            self.assertNotIn(MIL["k"][:-1], json.dumps(o))
        self.assertEqual(out[10]["autn"][12:16], "b9b9")
        self.assertNotIn(MIL["k"], p.stderr.decode())

    def test_check_and_resync_batches_exit_zero_when_every_line_is_good(self):
        v = self.gen("000000000101")
        keys = {"alg": "milenage", "k": MIL["k"], "op": MIL["op"]}
        reqs = [
            dict(keys, rand=RAND, autn=v["autn"], sqn_ms="000000000001"),
            dict(keys, rand=RAND, autn=v["autn"], sqn_ms="000000000101", ind_bits="5"),
            dict(keys, rand=RAND, autn=v["autn"], sqn_ms="000000000001", ind_bits=0),
        ]
        p = run(["check", "--batch"], "".join(json.dumps(r) + "\n" for r in reqs).encode())
        self.assertEqual(p.returncode, 0, p.stderr)
        out = [json.loads(line) for line in p.stdout.decode().splitlines()]
        self.assertEqual([o["result"] for o in out], ["success", "sync-failure", "success"])
        self.assertEqual(out[0]["res"], v["xres"])

        p = run(["resync", "--batch"],
                (json.dumps(dict(keys, rand=RAND, auts=out[1]["auts"])) + "\n").encode())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout), {"result": "success", "sqn_ms": "000000000101"})

    def test_each_result_is_flushed_before_the_next_line_is_read(self):
        proc = subprocess.Popen([AUC, "gen", "--batch"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for sqn in ("000000000001", "000000000002"):
                req = {"alg": "milenage", "k": MIL["k"], "opc": MIL["opc"], "rand": RAND,
                       "sqn": sqn, "amf": "8000"}
                proc.stdin.write((json.dumps(req) + "\n").encode())
                proc.stdin.flush()
                line = proc.stdout.readline()
                self.assertIn(b'"autn"', line)
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()
        self.assertEqual(proc.returncode, 0)


class BadInput(AucTestCase):
    GEN = ["gen"] + MIL_KEYS + ["--rand", RAND, "--sqn", "000000000001", "--amf", "8000"]

    def with_option(self, base, name, value):
        """base with --name set to value (replaced, added, or removed for None)."""
        args = list(base)
        if "--" + name in args:
            i = args.index("--" + name)
            del args[i : i + 2]
        if value is not None:
            args += ["--" + name, value]
        return args

    def test_the_reference_command_itself_is_good(self):
        self.assertEqual(run(self.GEN).returncode, 0)

    def test_odd_and_wrong_length_hex_is_refused_naming_the_argument(self):
        err = self.assert_bad_input(self.with_option(self.GEN, "rand", RAND[:-2]), "rand")
        self.assertIn("must be 16 bytes (32 hex digits), got 15", err)
        self.assert_bad_input(self.with_option(self.GEN, "rand", RAND[:-1]), "rand")
        self.assert_bad_input(self.with_option(self.GEN, "sqn", "0001"), "sqn")
        self.assert_bad_input(self.with_option(self.GEN, "amf", "80000"), "amf")
        self.assert_bad_input(self.with_option(self.GEN, "k", MIL["k"][:-1]), "k",
                              SECRETS + [MIL["k"][:-1]])
        self.assert_bad_input(self.with_option(self.GEN, "k", MIL["k"] + "00"), "k")
        self.assert_bad_input(self.with_option(self.GEN, "opc", MIL["opc"][:-2] + "zz"), "opc",
                              SECRETS + [MIL["opc"][:-2]])

    def test_an_unknown_algorithm_is_refused(self):
        self.assert_bad_input(self.with_option(self.GEN, "alg", "comp128"), "alg")

    def test_sizes_tuak_does_not_allow_are_refused(self):
        base = ["gen", "--alg", "tuak", "--k", MIL["k"], "--opc", MIL["opc"] * 2,
                "--rand", RAND, "--sqn", "000000000001", "--amf", "8000"]
        self.assertEqual(run(base).returncode, 0)
        secrets = [MIL["k"], MIL["opc"]]
        for name, value in [("res-bits", "48"), ("res-bits", "512"), ("mac-bits", "32"),
                            ("ck-bits", "64"), ("ik-bits", "192"), ("keccak-iterations", "0"),
                            ("mac-bits", "sixty-four"), ("res-bits", "-64")]:
            with self.subTest(name=name, value=value):
                self.assert_bad_input(base + ["--" + name + "=" + value], name, secrets)
        self.assert_bad_input(self.with_option(base, "k", MIL["k"] + "00"), "k", secrets)
        self.assert_bad_input(self.with_option(base, "opc", MIL["opc"]), "opc", secrets)
        self.assert_bad_input(self.GEN + ["--res-bits", "64"], "res-bits")

    def test_a_missing_required_option_is_refused(self):
        for name in ("alg", "k", "sqn", "amf"):
            with self.subTest(name=name):
                self.assert_bad_input(self.with_option(self.GEN, name, None), name)
        self.assert_bad_input(self.with_option(self.GEN, "opc", None), "op")
        check = ["check"] + MIL_KEYS + ["--rand", RAND, "--autn", "00" * 16, "--sqn-ms", "00" * 6]
        for name in ("rand", "autn", "sqn-ms"):
            with self.subTest(name=name):
                self.assert_bad_input(self.with_option(check, name, None), name)
        self.assert_bad_input(["resync"] + MIL_KEYS + ["--rand", RAND], "auts")

    def test_op_and_opc_together_are_refused(self):
        self.assert_bad_input(self.GEN + ["--op", MIL["op"]], "op")

    def test_wrong_sizes_for_check_and_resync_are_refused(self):
        check = ["check"] + MIL_KEYS + ["--rand", RAND, "--autn", "00" * 16, "--sqn-ms", "00" * 6]
        self.assert_bad_input(self.with_option(check, "autn", "00" * 15), "autn")
        self.assert_bad_input(self.with_option(check, "sqn-ms", "00" * 7), "sqn-ms")
        self.assert_bad_input(check + ["--ind-bits", "11"], "ind-bits")
        resync = ["resync"] + MIL_KEYS + ["--rand", RAND]
        self.assert_bad_input(resync + ["--auts", "00" * 13], "auts")

    def test_bad_suci_input_is_refused(self):
        base = ["suci", "--profile", "null", "--mcc-mnc", "274012", "--msin", "001002086"]
        self.assertEqual(run(base).returncode, 0)
        self.assert_bad_input(self.with_option(base, "profile", "C"), "profile")
        self.assert_bad_input(self.with_option(base, "msin", "0010O2086"), "msin")
        self.assert_bad_input(self.with_option(base, "msin", ""), "msin")
        self.assert_bad_input(self.with_option(base, "mcc-mnc", "2740"), "mcc-mnc")
        self.assert_bad_input(self.with_option(base, "routing-indicator", "12345"),
                              "routing-indicator")
        a = ["suci", "--profile", "A", "--mcc-mnc", "274012", "--msin", "001002086",
             "--hn-key-id", "1"]
        eph = "c80949f13ebe61af4ebdbd293ea4f942696b9e815d7e8f0096bbf6ed7de62256"
        self.assert_bad_input(a, "hn-public-key")
        self.assert_bad_input(a + ["--hn-public-key", "00" * 31], "hn-public-key")
        self.assert_bad_input(a + ["--hn-public-key", "11" * 32, "--eph-private-key", eph[:-2]],
                              "eph-private-key", [eph[:-2]])
        self.assert_bad_input(a[:-2] + ["--hn-key-id", "256", "--hn-public-key", "11" * 32],
                              "hn-key-id")

    def test_malformed_values_never_crash_and_always_exit_2(self):
        hexes = {"k": MIL["k"], "opc": MIL["opc"], "rand": RAND, "sqn": "000000000001",
                 "amf": "8000"}
        malformed = []
        for name, good in hexes.items():
            malformed += [
                (name, good[:-1]), (name, good[:-2]), (name, good[:1]),
                (name, good + "0"), (name, good + "00"), (name, good * 40),
                (name, ""), (name, " " + good), (name, good + "\n"),
                (name, good[:-1] + "g"), (name, "0x" + good[2:]), (name, good.upper()[:-1]),
                (name, "é" * len(good)), (name, "💥" * 4), (name, good[:-2] + "é"),
                (name, "-" + good[1:]), (name, "--"), (name, "%s%n%x"),
                (name, good[:4] + "\t" + good[5:]), (name, "\u0660" * len(good)),
            ]
        numbers = ["", "0", "99999999999999999999", "4294967360", "-1", "6e1", "0x40", "٦٤",
                   "64.0", " 64", "+64"]
        for name in ("res-bits", "mac-bits", "ck-bits", "ik-bits"):
            malformed += [(name, v) for v in numbers + ["1", "63", "65"]]
        malformed += [("keccak-iterations", v) for v in numbers + ["256", "1e0"]]
        fuzz = []
        for name, value in malformed:
            base = self.GEN
            if name.endswith("-bits") or name == "keccak-iterations":
                base = ["gen", "--alg", "tuak", "--k", MIL["k"], "--opc", MIL["opc"] * 2,
                        "--rand", RAND, "--sqn", "000000000001", "--amf", "8000"]
            base = self.with_option(base, name, None)
            fuzz.append(base + ["--%s=%s" % (name, value)])
        raw = [b"\xff\xfe", b"\xc3", MIL["k"][:-2].encode() + b"\x80\x81", b"\x00"[1:]]
        for value in raw:
            for name in ("k", "rand"):
                base = self.with_option(self.GEN, name, None)
                fuzz.append([a.encode() for a in base] + [b"--" + name.encode() + b"=" + value])
        for value in ("", "00", "0" * 31, "zz" * 16, "00" * 200, "é" * 32, "00" * 17):
            fuzz.append(["check"] + MIL_KEYS + ["--rand", RAND, "--autn=" + value,
                                                "--sqn-ms", "00" * 6])
            fuzz.append(["resync"] + MIL_KEYS + ["--rand", RAND, "--auts=" + value])
        for value in ("", "1" * 13, "g" * 12, "00" * 7, "-1"):
            fuzz.append(["check"] + MIL_KEYS + ["--rand", RAND, "--autn", "00" * 16,
                                                "--sqn-ms=" + value])
        for name in ("mcc-mnc", "msin", "routing-indicator", "hn-key-id", "profile"):
            for value in ("", "x", "1" * 40, "-1", "١٢٣", "27401２", "0x1"):
                fuzz.append(self.with_option(
                    ["suci", "--profile", "null", "--mcc-mnc", "274012", "--msin", "001002086"],
                    name, None) + ["--%s=%s" % (name, value)])
        self.assertGreater(len(fuzz), 200)
        for args in fuzz:
            p = run(args)
            err = p.stderr.decode(errors="replace")
            self.assertTrue(0 <= p.returncode < 128, "%r crashed: %d %s" % (args, p.returncode, err))
            self.assertEqual(p.returncode, 2, "%r: %s" % (args, err))
            self.assertTrue(err.startswith("tresim-auc: "), "%r: %r" % (args, err))
            self.assertNotIn(MIL["k"], err)
            self.assertNotIn(MIL["opc"], err)

    def test_unexpected_arguments_are_refused_without_echoing_them(self):
        p = run(self.GEN + [MIL["op"]])
        self.assertEqual(p.returncode, 2)
        self.assertNotIn(MIL["op"], p.stderr.decode())
        p = run(["suci", "--profile", "null", "--mcc-mnc", "274012", "--msin", "1",
                 "--k=" + MIL["k"]])
        self.assertEqual(p.returncode, 2)
        self.assertIn("--k", p.stderr.decode())
        self.assertNotIn(MIL["k"], p.stderr.decode())
        self.assertEqual(run([]).returncode, 2)
        self.assertEqual(run(["frobnicate"]).returncode, 2)


class Usage(AucTestCase):
    def test_every_subcommand_has_help(self):
        for sub, option in (("gen", "--amf"), ("check", "--sqn-ms"), ("resync", "--auts"),
                            ("suci", "--hn-public-key")):
            with self.subTest(sub=sub):
                p = run([sub, "--help"])
                self.assertEqual(p.returncode, 0)
                self.assertIn(option, p.stdout.decode())
                self.assertIn("--json", p.stdout.decode())
        p = run(["--help"])
        self.assertEqual(p.returncode, 0)
        for sub in ("gen", "check", "resync", "suci"):
            self.assertIn(sub, p.stdout.decode())

    def test_version_prints_the_version(self):
        p = run(["--version"])
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout.decode(), r"tresim-auc \d+\.\d+")


if __name__ == "__main__":
    unittest.main(verbosity=2 if "-v" in sys.argv else 1)
