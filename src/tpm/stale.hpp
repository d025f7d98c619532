#pragma once
// Objects and sessions left in a TPM by a process that died without flushing
// them. A resource manager (tpm2-abrmd, the kernel's /dev/tpmrm0) flushes a
// client's objects and sessions when its connection closes; a raw TPM (swtpm,
// the Microsoft simulator, /dev/tpm0) keeps them, so after a SIGKILL its three
// transient slots stay full and the next TPM2_Load fails with
// TPM2_RC_OBJECT_MEMORY ("out of memory for object contexts").

#include <cstddef>
#include <string_view>

#include "context.hpp"

namespace tresim::tpm {

// True when the TCTI string ("swtpm:host=...", "device:/dev/tpm0", the
// library's full name "libtss2-tcti-mssim.so.0:...") certainly reaches a TPM
// with no resource manager in between: swtpm, mssim, libtpms, or a device whose
// path (after symbolic links) is /dev/tpmN. Everything else is false: tabrmd,
// /dev/tpmrmN, a device without a path (the loader tries /dev/tpmrm0 first),
// an empty string (the loader's default search), cmd, pcap and any TCTI this
// function does not know.
bool tcti_is_raw_tpm(std::string_view tcti);

struct StaleFlush {
    std::size_t objects = 0;  // transient objects
    std::size_t sessions = 0; // loaded and saved (context-saved) sessions
    std::size_t total() const noexcept { return objects + sessions; }
};

// When tcti_is_raw_tpm(ctx.tcti()), flushes every transient object and every
// loaded or saved session the TPM holds (TPM2_GetCapability(TPM2_CAP_HANDLES)
// for TPM2_HT_TRANSIENT, TPM2_HT_LOADED_SESSION and TPM2_HT_SAVED_SESSION, then
// TPM2_FlushContext on each) and says how many; otherwise sends no command and
// returns zeros, so it never touches other clients' objects behind a resource
// manager. Meant for start-up, before this process loads anything: it flushes
// whatever is loaded, this context's own handles included. Persistent objects
// and NV indexes are never touched. Throws TpmError when a command fails.
StaleFlush flush_stale_handles(Context& ctx);

} // namespace tresim::tpm
