#pragma once
// The NV indices that rollback protection and the audit record stand on
// (DESIGN.md §3, §4):
//
// - NvCounter: an orderly NV counter (TPM2_NT_COUNTER, TPMA_NV_ORDERLY),
//   incremented with owner authorization, read with its own auth value. It is
//   the state epoch of the database.
// - NvExtendIndex: a SHA-256 extend index that is policy-delete protected
//   (TPMA_NV_POLICY_DELETE with an authPolicy that allows only
//   TPM2_NV_UndefineSpaceSpecial), extended and read with its own auth value,
//   certified by a signing key (TPM2_NV_Certify). It holds the audit chain.
//
// Every operation is one TPM command (one NV write for increment/extend);
// Context::counts() shows it.
//
// ESYS_TR lifetime: ESAPI keeps one ESYS_TR per TPM handle and context (a
// second Esys_TR_FromTPMPublic of the same index returns the same ESYS_TR), so
// closing it would break every other holder of the same index in the context.
// These classes therefore never close their ESYS_TR; ESAPI frees it with the
// context, and reopening an index reuses it (no growth). Two objects opened on
// the same index share it, including the auth value the last one set.
//
// What swtpm 0.7 (libtpms) does with an orderly counter, measured by
// tests/integration/test_tpm_nv.cpp (see docs there):
// - The TPM keeps the counter in RAM and writes it to NV only when an increment
//   makes the low bits (TPM2_PT_ORDERLY_COUNT = 0xff) wrap to zero, i.e. one
//   real NV write per 256 increments.
// - Killed without TPM2_Shutdown (power loss, crash), the next TPM2_Startup
//   sets the counter to value | 0xff: it jumps forward by up to 255 (to the
//   last value before the next multiple of 256), never back, and several
//   crashes in a row without increments do not move it further.
// - After TPM2_Shutdown(STATE) or TPM2_Shutdown(CLEAR) (what the Linux kernel
//   sends on a clean reboot) the exact value survives. A command that changes
//   the counter after the Shutdown cancels its effect; read-only commands do not.
// Consequence for rollback protection: after a power loss the counter is ahead
// of the epoch stored in the database by up to orderly_count(), which looks the
// same as a restored older database. A non-orderly counter (orderly = false)
// never jumps, at the price of one real NV write per increment.
//
// TPMA_NV_POLICY_DELETE requires the index to be created by the platform
// hierarchy (TPMA_NV_PLATFORMCREATE): TPM2_NV_DefineSpace with owner
// authorization answers TPM_RC_ATTRIBUTES. On most PCs the firmware disables
// the platform hierarchy before the OS runs; then the audit index cannot be
// defined (NvPlatformUnavailable) and, if it exists, cannot even be read
// (phEnableNV). swtpm keeps the platform hierarchy enabled with empty auth.

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include <tss2/tss2_esys.h>

#include "context.hpp"
#include "usim/bytes.hpp"
#include "usim/secret.hpp"

namespace tresim::tpm {

// Default indices, in the 0x015xxxxx range (the TCG registry's assignments are
// convention only; the TPM does not enforce them).
inline constexpr TPM2_HANDLE kDefaultEpochCounterIndex = 0x01500100;
inline constexpr TPM2_HANDLE kDefaultAuditIndex = 0x01500101;

using Sha256Digest = std::array<std::uint8_t, 32>;

// The index exists but its public area differs from what we would define
// (type, attributes, name algorithm, policy or size): never use an index
// someone else put there with other properties.
class NvMismatch : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Defining or deleting a platform-created index needs the platform hierarchy,
// which is disabled (the usual state on PCs after boot) or has an auth value we
// do not know.
class NvPlatformUnavailable : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// An NV_Certify attestation that does not verify; what() names what differed.
class NvAttestationInvalid : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// ---- Public areas (also what a verifier compares against) -------------------

// TPM2_NT_COUNTER, OWNERWRITE, AUTHREAD, NO_DA, and ORDERLY when `orderly`;
// SHA-256 name algorithm, no policy, 8 bytes.
// NO_DA: the auth value is a machine secret, not a guessable PIN, and a
// DA-protected index used before a power loss would count as a failed try.
TPM2B_NV_PUBLIC counter_template(TPM2_HANDLE index, bool orderly = true);

// TPM2_NT_EXTEND, AUTHWRITE, AUTHREAD, POLICY_DELETE, PLATFORMCREATE, NO_DA;
// SHA-256, 32 bytes, authPolicy = undefine_special_policy(). Not ORDERLY:
// every extend must survive a power loss.
TPM2B_NV_PUBLIC extend_index_template(TPM2_HANDLE index);

// True when `pub` equals the template apart from the state bits the TPM
// changes (WRITTEN, WRITELOCKED, READLOCKED).
bool matches_template(const TPMS_NV_PUBLIC& pub, const TPMS_NV_PUBLIC& want);

// ---- Software computations --------------------------------------------------

// The policy digest of PolicyCommandCode(TPM2_CC_NV_UndefineSpaceSpecial) from
// an empty SHA-256 policy: SHA256(0^32 || TPM_CC_PolicyCommandCode || code).
Sha256Digest undefine_special_policy();

// The name of an NV index: nameAlg (2 bytes) || H_nameAlg(marshalled public).
// Changes when TPMA_NV_WRITTEN gets set by the first write.
TPM2B_NAME nv_name(const TPMS_NV_PUBLIC& pub);

// One step of the extend chain: SHA256(old || data). `old` is 32 bytes (all
// zero before the first extend).
Sha256Digest extend_chain(ByteView old, ByteView data);

// TPM2_PT_ORDERLY_COUNT: the largest jump of an orderly counter after a power
// loss (0xff on swtpm).
std::uint32_t orderly_count(Context& ctx);

// ---- The counter -------------------------------------------------------------

class NvCounter {
public:
    // Opens the counter at `index`, defining it first when absent (owner
    // authorization as set on ctx for ESYS_TR_RH_OWNER, empty by default).
    // When present, its public area must match counter_template(index,
    // orderly), else NvMismatch. `auth` (at most 32 bytes) is the auth value
    // for reads. Costs: NV_ReadPublic (+ NV_DefineSpace, 1 NV write).
    static NvCounter open_or_define(Context& ctx, const SecretBytes& auth,
                                    TPM2_HANDLE index = kDefaultEpochCounterIndex,
                                    bool orderly = true);

    // The counter value; nullopt while it was never incremented (the TPM
    // answers TPM_RC_NV_UNINITIALIZED). One NV_Read.
    std::optional<std::uint64_t> read();

    // One NV_Increment with owner authorization (one NV write as counted; the
    // TPM writes an orderly counter to NV only every orderly_count()+1).
    void increment();

    // Deletes the index (owner authorization). One NV_UndefineSpace.
    void undefine();

    TPM2_HANDLE index() const noexcept { return index_; }
    bool created() const noexcept { return created_; }
    TPM2B_NAME name() const;

private:
    NvCounter(Context& ctx, TPM2_HANDLE index) : ctx_(&ctx), index_(index) {}
    Context* ctx_;
    TPM2_HANDLE index_;
    ESYS_TR handle_ = ESYS_TR_NONE; // shared, never closed (see above)
    bool created_ = false;
};

// ---- The audit extend index --------------------------------------------------

// A TPM2_NV_Certify result: the marshalled TPMS_ATTEST (the bytes that were
// signed) and the marshalled TPMT_SIGNATURE.
struct NvCertification {
    Bytes attest;
    Bytes signature;
};

class NvExtendIndex {
public:
    // Opens the index, defining it first when absent; defining needs platform
    // authorization (as set on ctx for ESYS_TR_RH_PLATFORM, empty by default),
    // else NvPlatformUnavailable. When present, its public area must match
    // extend_index_template(index), else NvMismatch. `auth` (at most 32 bytes)
    // authorizes extends and reads.
    static NvExtendIndex open_or_define(Context& ctx, const SecretBytes& auth,
                                        TPM2_HANDLE index = kDefaultAuditIndex);

    // One NV_Extend of 1..1024 bytes (one NV write).
    void extend(ByteView data);

    // The current chain value; all zero while never extended. One NV_Read.
    Sha256Digest read();

    // TPM2_NV_Certify of the whole index by `signer` (a loaded signing key
    // whose auth value is set on ctx), with `qualifying_data` (the verifier's
    // nonce, at most 64 bytes) and ECDSA-SHA256. One command, no NV write.
    NvCertification certify(ESYS_TR signer, ByteView qualifying_data);

    // The public area as the TPM reports it now (one NV_ReadPublic).
    TPMS_NV_PUBLIC read_public();

    // TPM2_NV_UndefineSpaceSpecial: platform authorization plus a policy
    // session satisfying undefine_special_policy(). The only way to delete the
    // index: plain TPM2_NV_UndefineSpace is refused (TPM_RC_ATTRIBUTES) even
    // with platform authorization. Costs: StartAuthSession, PolicyCommandCode,
    // NV_UndefineSpaceSpecial (1 NV write). ESAPI needs the index's auth value
    // cleared for this command (the policy has no PolicyAuthValue, and ESAPI
    // would otherwise reject the TPM's response): after a failure, open the
    // index again before using it.
    void undefine_special();

    TPM2_HANDLE index() const noexcept { return index_; }
    ESYS_TR handle() const noexcept { return handle_; }
    bool created() const noexcept { return created_; }
    TPM2B_NAME name() const;

private:
    NvExtendIndex(Context& ctx, TPM2_HANDLE index) : ctx_(&ctx), index_(index) {}
    Context* ctx_;
    TPM2_HANDLE index_;
    ESYS_TR handle_ = ESYS_TR_NONE; // shared, never closed (see above)
    bool created_ = false;
};

// The software check of an NV_Certify attestation: the signature by `signer`
// (an ECC P-256/P-384 key, ECDSA) over `c.attest`, the TPM_GENERATED magic,
// type TPM_ST_ATTEST_NV, extraData == nonce, the index name, the offset and
// the certified contents. Throws NvAttestationInvalid naming the first thing
// that differs; returns the parsed attestation (clock, firmware) on success.
TPMS_ATTEST verify_nv_certification(const NvCertification& c, const TPMT_PUBLIC& signer,
                                    ByteView nonce, const TPM2B_NAME& index_name, ByteView contents,
                                    std::uint16_t offset = 0);

} // namespace tresim::tpm
