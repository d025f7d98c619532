#include "stale.hpp"

#include <cctype>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <tss2/tss2_sys.h>

#include "error.hpp"

namespace tresim::tpm {

namespace {

bool starts_with_digits(std::string_view s, std::string_view prefix) {
    if (s.substr(0, prefix.size()) != prefix || s.size() == prefix.size()) {
        return false;
    }
    for (const char c : s.substr(prefix.size())) {
        if (std::isdigit(static_cast<unsigned char>(c)) == 0) {
            return false;
        }
    }
    return true;
}

// "libtss2-tcti-swtpm.so.0" and "tcti-swtpm" name the same TCTI as "swtpm".
std::string_view tcti_name(std::string_view name) {
    for (const std::string_view prefix : {"libtss2-tcti-", "libtcti-", "tcti-"}) {
        if (name.substr(0, prefix.size()) == prefix) {
            name.remove_prefix(prefix.size());
            break;
        }
    }
    return name.substr(0, name.find(".so"));
}

bool is_raw_device(std::string_view conf) {
    if (conf.empty()) {
        return false; // the device TCTI then tries /dev/tpmrm0 before /dev/tpm0
    }
    std::error_code ec;
    const std::filesystem::path given{std::string(conf)};
    std::filesystem::path path = std::filesystem::canonical(given, ec);
    if (ec) {
        path = given;
    }
    return path.parent_path() == "/dev" && starts_with_digits(path.filename().string(), "tpm");
}

// Every handle of one type the TPM lists, continuing while it has more.
std::vector<TPM2_HANDLE> handles_of(Context& ctx, TPM2_HT type) {
    std::vector<TPM2_HANDLE> out;
    const TPM2_HANDLE first = static_cast<TPM2_HANDLE>(type) << TPM2_HR_SHIFT;
    TPM2_HANDLE next = first;
    TPMI_YES_NO more = TPM2_YES;
    while (more == TPM2_YES) {
        TPMS_CAPABILITY_DATA* raw = nullptr;
        check(Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES,
                                 next, TPM2_MAX_CAP_HANDLES, &more, &raw),
              "TPM2_GetCapability(handles)");
        EsysPtr<TPMS_CAPABILITY_DATA> cap(raw);
        const TPML_HANDLE& list = cap->data.handles;
        if (list.count == 0) {
            break;
        }
        out.insert(out.end(), list.handle, list.handle + list.count);
        // Loaded policy sessions are listed with their own handle type, so the
        // next query keeps the type asked for and continues after the index.
        next = first | ((list.handle[list.count - 1] & TPM2_HR_HANDLE_MASK) + 1);
    }
    return out;
}

// Flushes each handle; one that is already gone does not count.
std::size_t flush_all(TSS2_SYS_CONTEXT* sys, const std::vector<TPM2_HANDLE>& handles) {
    std::size_t flushed = 0;
    for (const TPM2_HANDLE h : handles) {
        const TSS2_RC rc = Tss2_Sys_FlushContext(sys, h);
        if (rc == TSS2_RC_SUCCESS) {
            ++flushed;
            continue;
        }
        const TpmError error("TPM2_FlushContext(stale handle)", rc);
        if (!error.is(TPM2_RC_HANDLE) && !error.is(TPM2_RC_REFERENCE_H0)) {
            throw error;
        }
    }
    return flushed;
}

} // namespace

bool tcti_is_raw_tpm(std::string_view tcti) {
    const std::size_t colon = tcti.find(':');
    const std::string_view name = tcti_name(tcti.substr(0, colon));
    const std::string_view conf =
        colon == std::string_view::npos ? std::string_view{} : tcti.substr(colon + 1);
    if (name == "swtpm" || name == "mssim" || name == "libtpms") {
        return true;
    }
    if (name == "device") {
        return is_raw_device(conf);
    }
    return false;
}

StaleFlush flush_stale_handles(Context& ctx) {
    StaleFlush result;
    if (!tcti_is_raw_tpm(ctx.tcti())) {
        return result;
    }
    const std::vector<TPM2_HANDLE> objects = handles_of(ctx, TPM2_HT_TRANSIENT);
    std::vector<TPM2_HANDLE> sessions = handles_of(ctx, TPM2_HT_LOADED_SESSION);
    const std::vector<TPM2_HANDLE> saved = handles_of(ctx, TPM2_HT_SAVED_SESSION);
    sessions.insert(sessions.end(), saved.begin(), saved.end());
    if (objects.empty() && sessions.empty()) {
        return result;
    }
    TSS2_SYS_CONTEXT* sys = nullptr;
    check(Esys_GetSysContext(ctx, &sys), "Esys_GetSysContext");
    result.objects = flush_all(sys, objects);
    result.sessions = flush_all(sys, sessions);
    return result;
}

} // namespace tresim::tpm
