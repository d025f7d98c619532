#pragma once
// Encryption at rest of subscription secrets (K, OPc/OP): AES-256-GCM under the
// key file named in the PS config, a fresh 96-bit nonce per record and the
// record's id as associated data (so a ciphertext moved to another record
// does not decrypt). Stored form: nonce (12) || ciphertext || tag (16).

#include <string>
#include <string_view>

#include "usim/bytes.hpp"
#include "usim/secret.hpp"

namespace tresim::ps {

class Vault {
public:
    // The key file holds 64 hex digits (32 bytes), optionally followed by a
    // newline. InvalidArgument("at_rest_key") otherwise; the error never
    // quotes the file's content.
    static Vault load(const std::string& path);
    explicit Vault(SecretBytes key); // 32 bytes

    Bytes seal(const SecretBytes& plain, std::string_view record_id) const;
    // InvalidArgument("secrets") when the record was altered, moved or sealed
    // under another key.
    SecretBytes open(ByteView sealed, std::string_view record_id) const;

private:
    SecretBytes key_;
};

} // namespace tresim::ps
