#include "bytes.hpp"

#include <openssl/crypto.h>

namespace tresim {

InvalidArgument::InvalidArgument(std::string argument, const std::string& reason)
    : std::invalid_argument(argument + ": " + reason), argument_(std::move(argument)) {}

std::string hex_encode(ByteView bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (const std::uint8_t b : bytes) {
        out.push_back(digits[b >> 4]);
        out.push_back(digits[b & 0x0f]);
    }
    return out;
}

namespace {
int nibble(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}
} // namespace

Bytes hex_decode(std::string_view hex, std::string_view argument) {
    if (hex.size() % 2 != 0) {
        throw InvalidArgument(std::string(argument), "hex has an odd number of digits (" +
                                                         std::to_string(hex.size()) + ")");
    }
    Bytes out(hex.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
        const int hi = nibble(hex[2 * i]);
        const int lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            // Do not echo the text: it may be a key.
            throw InvalidArgument(std::string(argument),
                                  "not hex (a character at position " +
                                      std::to_string(2 * i + (hi < 0 ? 0 : 1)) +
                                      " is not 0-9, a-f or A-F)");
        }
        out[i] = static_cast<std::uint8_t>((hi << 4) | lo);
    }
    return out;
}

Bytes hex_decode(std::string_view hex, std::string_view argument, std::size_t size) {
    Bytes out = hex_decode(hex, argument);
    require_size(out, size, argument);
    return out;
}

void require_size(ByteView bytes, std::size_t size, std::string_view argument) {
    if (bytes.size() != size) {
        throw InvalidArgument(std::string(argument), "must be " + std::to_string(size) +
                                                         " bytes (" + std::to_string(size * 2) +
                                                         " hex digits), got " +
                                                         std::to_string(bytes.size()));
    }
}

void xor_into(std::span<std::uint8_t> out, ByteView a, ByteView b) {
    for (std::size_t i = 0; i < a.size(); ++i) {
        out[i] = a[i] ^ b[i];
    }
}

std::uint64_t load_be(ByteView bytes) {
    std::uint64_t v = 0;
    for (const std::uint8_t b : bytes) {
        v = (v << 8) | b;
    }
    return v;
}

void store_be(std::uint64_t value, std::span<std::uint8_t> out) {
    for (std::size_t i = out.size(); i-- > 0;) {
        out[i] = static_cast<std::uint8_t>(value & 0xff);
        value >>= 8;
    }
}

bool equal_ct(ByteView a, ByteView b) noexcept {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

} // namespace tresim
