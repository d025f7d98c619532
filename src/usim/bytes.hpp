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

// A byte string of at most Cap bytes held inline: no heap allocation, for the
// short values of an authentication (RES, MAC, AUTN) on the hot path. Converts
// to ByteView, so hex_encode() and the other helpers take it.
template <std::size_t Cap> class FixedBytes {
public:
    FixedBytes() noexcept = default;
    explicit FixedBytes(std::size_t size) { resize(size); }
    FixedBytes(ByteView bytes) { assign(bytes); } // NOLINT(google-explicit-constructor)

    void resize(std::size_t size) {
        if (size > Cap) {
            throw std::length_error("FixedBytes: " + std::to_string(size) + " > capacity");
        }
        if (size > size_) {
            std::fill(bytes_.begin() + size_, bytes_.begin() + size, std::uint8_t{0});
        }
        size_ = size;
    }
    void assign(ByteView bytes) {
        resize(bytes.size());
        std::copy(bytes.begin(), bytes.end(), bytes_.begin());
    }
    void append(ByteView bytes) {
        const std::size_t at = size_;
        resize(size_ + bytes.size());
        std::copy(bytes.begin(), bytes.end(), bytes_.begin() + at);
    }

    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    std::uint8_t* data() noexcept { return bytes_.data(); }
    const std::uint8_t* data() const noexcept { return bytes_.data(); }
    std::uint8_t* begin() noexcept { return bytes_.data(); }
    std::uint8_t* end() noexcept { return bytes_.data() + size_; }
    const std::uint8_t* begin() const noexcept { return bytes_.data(); }
    const std::uint8_t* end() const noexcept { return bytes_.data() + size_; }
    std::uint8_t& operator[](std::size_t i) noexcept { return bytes_[i]; }
    std::uint8_t operator[](std::size_t i) const noexcept { return bytes_[i]; }
    std::uint8_t& back() noexcept { return bytes_[size_ - 1]; }
    ByteView view() const noexcept { return {bytes_.data(), size_}; }
    operator ByteView() const noexcept { return view(); } // NOLINT(google-explicit-constructor)
    Bytes to_bytes() const { return Bytes(begin(), end()); }

    friend bool operator==(const FixedBytes& a, const FixedBytes& b) noexcept {
        return a.size_ == b.size_ && std::equal(a.begin(), a.end(), b.begin());
    }
    friend bool operator==(const FixedBytes& a, const Bytes& b) noexcept {
        return a.size_ == b.size() && std::equal(a.begin(), a.end(), b.begin());
    }

private:
    std::array<std::uint8_t, Cap> bytes_{};
    std::size_t size_ = 0;
};

} // namespace tresim
