#include "base64url.hpp"

#include <array>
#include <string>

namespace tresim::protocol {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int value_of(char c) noexcept {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

} // namespace

std::string b64url_encode(ByteView data) {
    std::string out;
    out.reserve((data.size() * 4 + 2) / 3);
    std::size_t i = 0;
    for (; i + 3 <= data.size(); i += 3) {
        const std::uint32_t v =
            (std::uint32_t{data[i]} << 16) | (std::uint32_t{data[i + 1]} << 8) | data[i + 2];
        out.push_back(kAlphabet[(v >> 18) & 63]);
        out.push_back(kAlphabet[(v >> 12) & 63]);
        out.push_back(kAlphabet[(v >> 6) & 63]);
        out.push_back(kAlphabet[v & 63]);
    }
    const std::size_t rest = data.size() - i;
    if (rest == 1) {
        const std::uint32_t v = std::uint32_t{data[i]} << 16;
        out.push_back(kAlphabet[(v >> 18) & 63]);
        out.push_back(kAlphabet[(v >> 12) & 63]);
    } else if (rest == 2) {
        const std::uint32_t v = (std::uint32_t{data[i]} << 16) | (std::uint32_t{data[i + 1]} << 8);
        out.push_back(kAlphabet[(v >> 18) & 63]);
        out.push_back(kAlphabet[(v >> 12) & 63]);
        out.push_back(kAlphabet[(v >> 6) & 63]);
    }
    return out;
}

Bytes b64url_decode(std::string_view text, std::string_view field) {
    const std::string name(field);
    if (text.size() % 4 == 1) {
        throw InvalidArgument(name, "is not base64url: its length (" + std::to_string(text.size()) +
                                        ") is impossible");
    }
    Bytes out;
    out.reserve(text.size() * 3 / 4);
    std::uint32_t acc = 0;
    unsigned bits = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const int v = value_of(text[i]);
        if (v < 0) {
            const char c = text[i];
            const bool printable = c > 0x20 && c < 0x7f;
            throw InvalidArgument(name, std::string("is not base64url: ") +
                                            (c == '='    ? "padding is not allowed"
                                             : printable ? std::string("character '") + c +
                                                               "' is outside the alphabet"
                                                         : std::string("a character is outside the "
                                                                       "alphabet")) +
                                            " (at offset " + std::to_string(i) + ")");
        }
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xff));
        }
    }
    // The bits left over (2 or 4) must be zero: a canonical encoding.
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        throw InvalidArgument(name, "is not canonical base64url: the last character has "
                                    "non-zero trailing bits");
    }
    return out;
}

} // namespace tresim::protocol
