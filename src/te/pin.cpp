#include "pin.hpp"

#include <algorithm>

#include <openssl/evp.h>

#include "errors.hpp"
#include "tpm/error.hpp"
#include "tpm/policy.hpp"

namespace tresim::te {

namespace {

[[noreturn]] void rethrow_tpm(tpm::Context& ctx, const tpm::TpmError& e, const MidApproval& a,
                              bool during_use) {
    if (e.is_lockout()) {
        throw TeError(ErrorCode::TpmLockout,
                      "the TPM's dictionary-attack protection is engaged: try again later");
    }
    if (during_use && e.is_auth_failure()) {
        throw TeError(ErrorCode::WrongPin, "wrong PIN");
    }
    if (!during_use && e.is(TPM2_RC_VALUE)) {
        std::vector<unsigned> differ = tpm::differing_pcrs(ctx, a.pcrs);
        const std::string message =
            differ.empty()
                ? std::string("the PCRs do not match the approved platform state")
                : tpm::describe_pcr_difference(differ) + " from the approved platform state";
        throw PlatformMismatch(std::move(differ), message);
    }
    throw TeError(ErrorCode::TpmFailure, std::string("TPM failure: ") + e.what());
}

} // namespace

SecretBytes stretch_pin(ByteView pin, ByteView salt) {
    Bytes full_salt{'t', 'r', 'e', 's', 'i', 'm', '-', 'p', 'i', 'n'};
    full_salt.insert(full_salt.end(), salt.begin(), salt.end());
    SecretBytes out(32);
    if (PKCS5_PBKDF2_HMAC(reinterpret_cast<const char*>(pin.data()), static_cast<int>(pin.size()),
                          full_salt.data(), static_cast<int>(full_salt.size()),
                          static_cast<int>(kPinIterations), EVP_sha256(), 32, out.data()) != 1) {
        throw std::runtime_error("PBKDF2 failed");
    }
    return out;
}

void check_pin_format(ByteView pin, bool puk) {
    const std::size_t min = puk ? 8 : 4;
    const std::size_t max = 8;
    const bool digits =
        std::all_of(pin.begin(), pin.end(), [](std::uint8_t c) { return c >= '0' && c <= '9'; });
    if (pin.size() < min || pin.size() > max || !digits) {
        throw TeError(ErrorCode::InvalidArgument,
                      puk ? "puk: must be 8 digits" : "pin: must be 4 to 8 digits");
    }
}

tpm::ObjectBlobs create_gate(tpm::Context& ctx, ESYS_TR srk, const SecretBytes& unlock,
                             const SecretBytes& auth, const MidApproval& approval) {
    tpm::ObjectOptions options;
    options.auth_policy = mid_auth_policy(approval.authority, approval.policy_ref);
    options.auth_value = auth;
    options.no_da = false; // guessing a PIN counts towards the TPM's lockout
    try {
        return tpm::create_sealed_data(ctx, srk, unlock, options);
    } catch (const tpm::TpmError& e) {
        throw TeError(ErrorCode::TpmFailure, std::string("creating a PIN gate: ") + e.what());
    }
}

SecretBytes open_gate(tpm::Context& ctx, ESYS_TR srk, const tpm::ObjectBlobs& gate,
                      const SecretBytes& auth, const MidApproval& approval,
                      tpm::TicketCache& tickets) {
    tpm::Handle object;
    try {
        object = tpm::load_object(ctx, srk, gate);
        tpm::set_auth_value(ctx, object, auth);
    } catch (const tpm::TpmError& e) {
        throw TeError(ErrorCode::StateCorrupt,
                      std::string("a PIN gate does not load: ") + e.what());
    }
    tpm::PolicySession session(ctx, tpm::PolicySession::Type::Real, srk);
    try {
        session.pcr(tpm::selection_of(approval.pcrs), tpm::pcr_composite_digest(approval.pcrs));
        session.auth_value();
        session.authorize(approval.authority, approval.approved_policy, approval.policy_ref,
                          approval.signature, &tickets);
    } catch (const tpm::TpmError& e) {
        rethrow_tpm(ctx, e, approval, false);
    }
    try {
        return tpm::unseal(ctx, object, session, true);
    } catch (const tpm::TpmError& e) {
        rethrow_tpm(ctx, e, approval, true);
    }
}

} // namespace tresim::te
