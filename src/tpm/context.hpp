#pragma once
// An ESAPI context on a TCTI given as a tpm2-tools style string
// ("device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=2321"). Between ESAPI and
// the real TCTI sits a counting TCTI, so that every operation's cost in TPM
// commands and NV writes can be measured (DESIGN.md §3: NV writes are a budget).

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <tss2/tss2_esys.h>

namespace tresim::tpm {

struct CommandCounts {
    std::uint64_t commands = 0;
    std::uint64_t nv_writes =
        0; // NV_Write, NV_Increment, NV_Extend, NV_SetBits, NV_DefineSpace, ...
    std::map<TPM2_CC, std::uint64_t> by_code;
    CommandCounts operator-(const CommandCounts& earlier) const;
};

class Context {
public:
    // Opens the TCTI, initialises ESAPI and sends TPM2_Startup(CLEAR) (a TPM that
    // is already started answers TPM2_RC_INITIALIZE, which is fine).
    explicit Context(const std::string& tcti);
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    ESYS_CONTEXT* esys() const noexcept { return esys_; }
    operator ESYS_CONTEXT*() const noexcept { return esys_; }
    const std::string& tcti() const noexcept { return tcti_; }

    // Overwrites the command/response buffer that ESAPI shares with SAPI (it
    // decrypts responses such as TPM2_Unseal's in place there and never clears
    // them) by preparing, without sending, a TPM2_Hash over 1 KiB of zeros.
    // Sends no command.
    void scrub_command_buffer() noexcept;

    // Counters since the context was opened.
    const CommandCounts& counts() const noexcept;

    // The default TCTI: TRESIM_TCTI from the environment, else the kernel's
    // resource manager.
    static std::string default_tcti();

private:
    struct CountingTcti;
    std::string tcti_;
    std::unique_ptr<CountingTcti> counting_;
    ESYS_CONTEXT* esys_ = nullptr;
};

// Frees ESAPI output buffers.
struct EsysFree {
    void operator()(void* p) const noexcept { Esys_Free(p); }
};
template <class T> using EsysPtr = std::unique_ptr<T, EsysFree>;

} // namespace tresim::tpm
