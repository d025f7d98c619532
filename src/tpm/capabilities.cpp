#include "capabilities.hpp"

#include <algorithm>
#include <sstream>

#include "error.hpp"
#include "hash_alg.hpp"

namespace tresim::tpm {

namespace {

std::string ascii4(std::uint32_t v) {
    std::string s;
    for (int shift = 24; shift >= 0; shift -= 8) {
        const char c = static_cast<char>((v >> shift) & 0xff);
        if (c >= 0x20 && c < 0x7f) {
            s.push_back(c);
        }
    }
    while (!s.empty() && s.back() == ' ') {
        s.pop_back();
    }
    return s;
}

std::vector<TPMS_TAGGED_PROPERTY> properties(Context& ctx, TPM2_PT first, std::uint32_t count) {
    std::vector<TPMS_TAGGED_PROPERTY> out;
    TPM2_PT next = first;
    const TPM2_PT end = first + count;
    TPMI_YES_NO more = TPM2_YES;
    while (more == TPM2_YES && next < end) {
        TPMS_CAPABILITY_DATA* raw = nullptr;
        check(Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                 TPM2_CAP_TPM_PROPERTIES, next, end - next, &more, &raw),
              "TPM2_GetCapability(properties)");
        EsysPtr<TPMS_CAPABILITY_DATA> cap(raw);
        const auto& list = cap->data.tpmProperties;
        if (list.count == 0) {
            break;
        }
        for (std::uint32_t i = 0; i < list.count; ++i) {
            if (list.tpmProperty[i].property < end) {
                out.push_back(list.tpmProperty[i]);
            }
        }
        next = list.tpmProperty[list.count - 1].property + 1;
    }
    return out;
}

std::uint32_t find(const std::vector<TPMS_TAGGED_PROPERTY>& props, TPM2_PT pt) {
    for (const auto& p : props) {
        if (p.property == pt) {
            return p.value;
        }
    }
    return 0;
}

bool has_command(Context& ctx, TPM2_CC cc) {
    TPMS_CAPABILITY_DATA* raw = nullptr;
    TPMI_YES_NO more = TPM2_NO;
    check(Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_COMMANDS, cc,
                             1, &more, &raw),
          "TPM2_GetCapability(commands)");
    EsysPtr<TPMS_CAPABILITY_DATA> cap(raw);
    return cap->data.command.count > 0 &&
           (cap->data.command.commandAttributes[0] & TPMA_CC_COMMANDINDEX_MASK) == cc;
}

bool has_algorithm(Context& ctx, TPM2_ALG_ID alg) {
    TPMS_CAPABILITY_DATA* raw = nullptr;
    TPMI_YES_NO more = TPM2_NO;
    check(Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_ALGS, alg, 1,
                             &more, &raw),
          "TPM2_GetCapability(algorithms)");
    EsysPtr<TPMS_CAPABILITY_DATA> cap(raw);
    return cap->data.algorithms.count > 0 && cap->data.algorithms.algProperties[0].alg == alg;
}

bool aes_mode_allowed(Context& ctx, TPM2_ALG_ID mode) {
    TPMT_PUBLIC_PARMS parms{};
    parms.type = TPM2_ALG_SYMCIPHER;
    parms.parameters.symDetail.sym.algorithm = TPM2_ALG_AES;
    parms.parameters.symDetail.sym.keyBits.aes = 128;
    parms.parameters.symDetail.sym.mode.aes = mode;
    return Esys_TestParms(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &parms) == TSS2_RC_SUCCESS;
}

} // namespace

Capabilities probe(Context& ctx) {
    Capabilities c;
    const auto fixed = properties(ctx, TPM2_PT_FIXED, 0x100);
    c.manufacturer = ascii4(find(fixed, TPM2_PT_MANUFACTURER));
    for (TPM2_PT pt = TPM2_PT_VENDOR_STRING_1; pt <= TPM2_PT_VENDOR_STRING_4; ++pt) {
        c.vendor += ascii4(find(fixed, pt));
    }
    const std::uint32_t fw1 = find(fixed, TPM2_PT_FIRMWARE_VERSION_1);
    const std::uint32_t fw2 = find(fixed, TPM2_PT_FIRMWARE_VERSION_2);
    c.firmware = (std::uint64_t{fw1} << 32) | fw2;
    std::ostringstream fw;
    fw << (fw1 >> 16) << '.' << (fw1 & 0xffff) << '.' << (fw2 >> 16) << '.' << (fw2 & 0xffff);
    c.firmware_text = fw.str();
    c.transient_slots = find(fixed, TPM2_PT_HR_TRANSIENT_MIN);
    c.loaded_sessions = find(fixed, TPM2_PT_HR_LOADED_MIN);
    c.nv_index_max = find(fixed, TPM2_PT_NV_INDEX_MAX);
    c.max_command_size = find(fixed, TPM2_PT_MAX_COMMAND_SIZE);
    c.max_digest = find(fixed, TPM2_PT_MAX_DIGEST);
    c.nv_write_recovery_ms = find(fixed, TPM2_PT_NV_WRITE_RECOVERY);

    const auto var = properties(ctx, TPM2_PT_VAR, 0x100);
    c.nv_indexes = find(var, TPM2_PT_HR_NV_INDEX);
    c.persistent_avail = find(var, TPM2_PT_HR_PERSISTENT_AVAIL);
    c.nv_counters_avail = find(var, TPM2_PT_NV_COUNTERS_AVAIL);

    TPMS_CAPABILITY_DATA* raw = nullptr;
    TPMI_YES_NO more = TPM2_NO;
    check(Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_PCRS, 0, 1,
                             &more, &raw),
          "TPM2_GetCapability(pcrs)");
    EsysPtr<TPMS_CAPABILITY_DATA> pcrs(raw);
    for (std::uint32_t i = 0; i < pcrs->data.assignedPCR.count; ++i) {
        const TPMS_PCR_SELECTION& s = pcrs->data.assignedPCR.pcrSelections[i];
        PcrBank bank;
        bank.hash = s.hash;
        bank.name = hash_name(s.hash).value_or("unknown");
        for (unsigned pcr = 0; pcr < s.sizeofSelect * 8u; ++pcr) {
            if ((s.pcrSelect[pcr / 8] & (1u << (pcr % 8))) != 0) {
                bank.pcrs.push_back(pcr);
            }
        }
        if (!bank.pcrs.empty()) {
            c.pcr_banks.push_back(std::move(bank));
        }
    }

    c.encrypt_decrypt = has_command(ctx, TPM2_CC_EncryptDecrypt);
    c.encrypt_decrypt2 = has_command(ctx, TPM2_CC_EncryptDecrypt2);
    c.aes = has_algorithm(ctx, TPM2_ALG_AES);
    c.cfb = c.aes && has_algorithm(ctx, TPM2_ALG_CFB) && aes_mode_allowed(ctx, TPM2_ALG_CFB);
    c.ecb = c.aes && has_algorithm(ctx, TPM2_ALG_ECB) && aes_mode_allowed(ctx, TPM2_ALG_ECB);
    return c;
}

std::string Capabilities::summary() const {
    std::ostringstream s;
    s << manufacturer << " (" << vendor << ") firmware " << firmware_text << "; banks";
    for (const auto& b : pcr_banks) {
        s << ' ' << b.name;
    }
    s << "; EncryptDecrypt" << (encrypt_decrypt2 ? "2" : (encrypt_decrypt ? "" : " none"))
      << (cfb ? " cfb" : "") << (ecb ? " ecb" : "") << "; " << transient_slots
      << " transient slots";
    return s.str();
}

} // namespace tresim::tpm
