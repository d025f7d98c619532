#pragma once
// base64url without padding (RFC 4648 §5), the binary encoding of the
// provisioning protocol (docs/protocol.md).

#include <string>
#include <string_view>

#include "usim/bytes.hpp"

namespace tresim::protocol {

std::string b64url_encode(ByteView data);
// Refuses padding, whitespace and characters outside the alphabet, and
// non-canonical trailing bits: InvalidArgument naming `field`.
Bytes b64url_decode(std::string_view text, std::string_view field);

} // namespace tresim::protocol
