#pragma once
// What this TPM is and can do, probed once at start.

#include <cstdint>
#include <string>
#include <vector>

#include "context.hpp"

namespace tresim::tpm {

struct PcrBank {
    TPM2_ALG_ID hash = 0;
    std::string name;           // "sha256"
    std::vector<unsigned> pcrs; // allocated PCR indexes
};

struct Capabilities {
    std::string manufacturer;   // "IBM", "IFX", "STM", ...: the four ASCII bytes, trimmed
    std::string vendor;         // TPM2_PT_VENDOR_STRING_1..4
    std::uint64_t firmware = 0; // FIRMWARE_VERSION_1 << 32 | FIRMWARE_VERSION_2
    std::string firmware_text;  // "major.minor.x.y" as manufacturers print it
    std::vector<PcrBank> pcr_banks;
    bool encrypt_decrypt = false;  // TPM2_CC_EncryptDecrypt
    bool encrypt_decrypt2 = false; // TPM2_CC_EncryptDecrypt2
    bool aes = false;
    bool cfb = false;
    bool ecb = false;
    std::uint32_t transient_slots = 0;   // TPM2_PT_HR_TRANSIENT_MIN
    std::uint32_t loaded_sessions = 0;   // TPM2_PT_HR_LOADED_MIN
    std::uint32_t nv_index_max = 0;      // TPM2_PT_NV_INDEX_MAX (bytes)
    std::uint32_t nv_indexes = 0;        // TPM2_PT_HR_NV_INDEX: NV indexes defined now
    std::uint32_t persistent_avail = 0;  // TPM2_PT_HR_PERSISTENT_AVAIL (estimate)
    std::uint32_t nv_counters_avail = 0; // TPM2_PT_NV_COUNTERS_AVAIL (estimate)
    std::uint32_t nv_write_recovery_ms = 0;
    std::uint32_t max_command_size = 0;
    std::uint32_t max_digest = 0;

    // One line for logs and `tresimctl status`.
    std::string summary() const;
};

// Probes with TPM2_GetCapability and, for the modes, a TPM2_TestParms on an AES
// key template (which also tells modes the TPM lists but refuses).
Capabilities probe(Context& ctx);

} // namespace tresim::tpm
