#include "context.hpp"

#include <cstdlib>
#include <cstring>

#include <tss2/tss2_sys.h>
#include <tss2/tss2_tctildr.h>

#include "error.hpp"

namespace tresim::tpm {

CommandCounts CommandCounts::operator-(const CommandCounts& earlier) const {
    CommandCounts d;
    d.commands = commands - earlier.commands;
    d.nv_writes = nv_writes - earlier.nv_writes;
    for (const auto& [cc, n] : by_code) {
        const auto it = earlier.by_code.find(cc);
        const std::uint64_t before = it == earlier.by_code.end() ? 0 : it->second;
        if (n != before) {
            d.by_code[cc] = n - before;
        }
    }
    return d;
}

namespace {

bool writes_nv(TPM2_CC cc) {
    switch (cc) {
    case TPM2_CC_NV_Write:
    case TPM2_CC_NV_Increment:
    case TPM2_CC_NV_Extend:
    case TPM2_CC_NV_SetBits:
    case TPM2_CC_NV_DefineSpace:
    case TPM2_CC_NV_UndefineSpace:
    case TPM2_CC_NV_UndefineSpaceSpecial:
    case TPM2_CC_NV_WriteLock:
    case TPM2_CC_EvictControl:
    case TPM2_CC_Clear:
    case TPM2_CC_ChangeEPS:
    case TPM2_CC_ChangePPS:
        return true;
    default:
        return false;
    }
}

} // namespace

// A TCTI whose transmit() counts the command code and forwards to the real TCTI.
// Its first member is the common TCTI header, so ESAPI can use it like any TCTI.
struct Context::CountingTcti {
    TSS2_TCTI_CONTEXT_COMMON_V2 common{};
    TSS2_TCTI_CONTEXT* inner = nullptr;
    CommandCounts counts;

    static CountingTcti* self(TSS2_TCTI_CONTEXT* c) { return reinterpret_cast<CountingTcti*>(c); }
    static TSS2_TCTI_CONTEXT_COMMON_V2* inner_common(TSS2_TCTI_CONTEXT* c) {
        return reinterpret_cast<TSS2_TCTI_CONTEXT_COMMON_V2*>(self(c)->inner);
    }

    static TSS2_RC transmit(TSS2_TCTI_CONTEXT* c, size_t size, const std::uint8_t* command) {
        CountingTcti* t = self(c);
        if (size >= 10) {
            const TPM2_CC cc = (static_cast<TPM2_CC>(command[6]) << 24) |
                               (static_cast<TPM2_CC>(command[7]) << 16) |
                               (static_cast<TPM2_CC>(command[8]) << 8) | command[9];
            ++t->counts.commands;
            ++t->counts.by_code[cc];
            if (writes_nv(cc)) {
                ++t->counts.nv_writes;
            }
        }
        return inner_common(c)->v1.transmit(t->inner, size, command);
    }
    static TSS2_RC receive(TSS2_TCTI_CONTEXT* c, size_t* size, std::uint8_t* response,
                           int32_t timeout) {
        return inner_common(c)->v1.receive(self(c)->inner, size, response, timeout);
    }
    static void finalize(TSS2_TCTI_CONTEXT*) {}
    static TSS2_RC cancel(TSS2_TCTI_CONTEXT* c) {
        return inner_common(c)->v1.cancel(self(c)->inner);
    }
    static TSS2_RC get_poll_handles(TSS2_TCTI_CONTEXT* c, TSS2_TCTI_POLL_HANDLE* handles,
                                    size_t* num) {
        return inner_common(c)->v1.getPollHandles(self(c)->inner, handles, num);
    }
    static TSS2_RC set_locality(TSS2_TCTI_CONTEXT* c, std::uint8_t locality) {
        return inner_common(c)->v1.setLocality(self(c)->inner, locality);
    }
    static TSS2_RC make_sticky(TSS2_TCTI_CONTEXT* c, TPM2_HANDLE* handle, std::uint8_t sticky) {
        TSS2_TCTI_CONTEXT_COMMON_V2* in = inner_common(c);
        if (in->v1.version < 2 || in->makeSticky == nullptr) {
            return TSS2_TCTI_RC_NOT_IMPLEMENTED;
        }
        return in->makeSticky(self(c)->inner, handle, sticky);
    }

    explicit CountingTcti(TSS2_TCTI_CONTEXT* wrapped) : inner(wrapped) {
        const auto* in = reinterpret_cast<TSS2_TCTI_CONTEXT_COMMON_V1*>(wrapped);
        common.v1.magic = in->magic;
        common.v1.version = 2;
        common.v1.transmit = &transmit;
        common.v1.receive = &receive;
        common.v1.finalize = &finalize;
        common.v1.cancel = &cancel;
        common.v1.getPollHandles = &get_poll_handles;
        common.v1.setLocality = &set_locality;
        common.makeSticky = &make_sticky;
    }
    ~CountingTcti() { Tss2_TctiLdr_Finalize(&inner); }
    TSS2_TCTI_CONTEXT* as_tcti() { return reinterpret_cast<TSS2_TCTI_CONTEXT*>(this); }
};

Context::Context(const std::string& tcti) : tcti_(tcti) {
    TSS2_TCTI_CONTEXT* inner = nullptr;
    check(Tss2_TctiLdr_Initialize(tcti.c_str(), &inner), "open TCTI");
    counting_ = std::make_unique<CountingTcti>(inner);
    check(Esys_Initialize(&esys_, counting_->as_tcti(), nullptr), "Esys_Initialize");
    const TSS2_RC rc = Esys_Startup(esys_, TPM2_SU_CLEAR);
    if (rc != TSS2_RC_SUCCESS && (rc & 0xfff) != TPM2_RC_INITIALIZE) {
        Esys_Finalize(&esys_);
        throw TpmError("TPM2_Startup", rc);
    }
}

Context::~Context() {
    Esys_Finalize(&esys_);
}

void Context::scrub_command_buffer() noexcept {
    TSS2_SYS_CONTEXT* sys = nullptr;
    if (Esys_GetSysContext(esys_, &sys) != TSS2_RC_SUCCESS || sys == nullptr) {
        return;
    }
    TPM2B_MAX_BUFFER zeros{};
    zeros.size = sizeof(zeros.buffer);
    Tss2_Sys_Hash_Prepare(sys, &zeros, TPM2_ALG_SHA256, TPM2_RH_NULL);
}

const CommandCounts& Context::counts() const noexcept {
    return counting_->counts;
}

std::string Context::default_tcti() {
    const char* env = std::getenv("TRESIM_TCTI");
    return env != nullptr && *env != '\0' ? env : "device:/dev/tpmrm0";
}

} // namespace tresim::tpm
