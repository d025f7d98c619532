#pragma once
// Byte strings, hex conversion and the argument error that names what was wrong.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tresim {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

// A caller-supplied value that is malformed: odd or wrong-length hex, a size the
// algorithm does not allow, an unknown name. argument() names the offending input
// (for example "rand" or "autn"); what() is a full sentence that never contains a
// secret value.
class InvalidArgument : public std::invalid_argument {
public:
    InvalidArgument(std::string argument, const std::string& reason);
    const std::string& argument() const noexcept { return argument_; }

private:
    std::string argument_;
};

// Lower-case hex of the bytes.
std::string hex_encode(ByteView bytes);

// Decodes hex (either case, no separators). Throws InvalidArgument naming
// `argument` when the text is not hex or has an odd number of digits.
Bytes hex_decode(std::string_view hex, std::string_view argument);

// As above, and the result must be exactly `size` bytes long.
Bytes hex_decode(std::string_view hex, std::string_view argument, std::size_t size);

// Decodes into a fixed-size array; the text must hold exactly N bytes.
template <std::size_t N>
std::array<std::uint8_t, N> hex_decode_array(std::string_view hex, std::string_view argument) {
    const Bytes b = hex_decode(hex, argument, N);
    std::array<std::uint8_t, N> out{};
    std::copy(b.begin(), b.end(), out.begin());
    return out;
}

// Checks a length and throws InvalidArgument naming `argument` when it differs.
void require_size(ByteView bytes, std::size_t size, std::string_view argument);

// out = a XOR b over the length of a (b must be at least as long).
void xor_into(std::span<std::uint8_t> out, ByteView a, ByteView b);

// Big-endian integer <-> bytes, for SQN (48 bits) and similar counters.
std::uint64_t load_be(ByteView bytes);
void store_be(std::uint64_t value, std::span<std::uint8_t> out);

// Constant-time comparison of equal-length byte strings (false when lengths differ).
bool equal_ct(ByteView a, ByteView b) noexcept;

} // namespace tresim
