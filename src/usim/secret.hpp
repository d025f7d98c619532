#pragma once
// Memory for keys and intermediate secrets: allocated from OpenSSL's secure heap
// (mlock'ed, kept out of core dumps, guard pages) once secure_heap_init() has run,
// always wiped with OPENSSL_cleanse when released, and never printable: there is
// no operator<< and no conversion to string. Read it through view() or data().

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "bytes.hpp"

namespace tresim {

// Sets up OpenSSL's secure heap of `bytes` (a power of two). Returns false when the
// kernel refuses to lock it (then secrets still get wiped, but are not locked).
// Call once, early in main(), before any secret exists.
bool secure_heap_init(std::size_t bytes = 64 * 1024);

// Wipes memory that held a secret; the compiler cannot elide it.
void wipe(void* data, std::size_t size) noexcept;

template <class T> struct SecureAllocator {
    using value_type = T;
    SecureAllocator() noexcept = default;
    template <class U> SecureAllocator(const SecureAllocator<U>&) noexcept {}
    T* allocate(std::size_t n);
    void deallocate(T* p, std::size_t n) noexcept;
    template <class U> bool operator==(const SecureAllocator<U>&) const noexcept { return true; }
};

void* secure_allocate(std::size_t bytes);
void secure_deallocate(void* p, std::size_t bytes) noexcept;

template <class T> T* SecureAllocator<T>::allocate(std::size_t n) {
    return static_cast<T*>(secure_allocate(n * sizeof(T)));
}
template <class T> void SecureAllocator<T>::deallocate(T* p, std::size_t n) noexcept {
    secure_deallocate(p, n * sizeof(T));
}

// A variable-length secret byte string.
class SecretBytes {
public:
    SecretBytes() = default;
    explicit SecretBytes(std::size_t size) : bytes_(size, 0) {}
    explicit SecretBytes(ByteView bytes) : bytes_(bytes.begin(), bytes.end()) {}
    SecretBytes(const SecretBytes&) = default;
    SecretBytes(SecretBytes&&) noexcept = default;
    SecretBytes& operator=(const SecretBytes&) = default;
    SecretBytes& operator=(SecretBytes&&) noexcept = default;
    ~SecretBytes() = default; // the allocator wipes

    // Decodes hex straight into secure memory. Errors name `argument`, never the value.
    static SecretBytes from_hex(std::string_view hex, std::string_view argument);
    static SecretBytes from_hex(std::string_view hex, std::string_view argument, std::size_t size);

    std::size_t size() const noexcept { return bytes_.size(); }
    bool empty() const noexcept { return bytes_.empty(); }
    std::uint8_t* data() noexcept { return bytes_.data(); }
    const std::uint8_t* data() const noexcept { return bytes_.data(); }
    ByteView view() const noexcept { return {bytes_.data(), bytes_.size()}; }
    std::span<std::uint8_t> span() noexcept { return {bytes_.data(), bytes_.size()}; }
    std::uint8_t& operator[](std::size_t i) { return bytes_[i]; }
    std::uint8_t operator[](std::size_t i) const { return bytes_[i]; }
    void resize(std::size_t size) { bytes_.resize(size, 0); }

    // Deliberate, greppable exit from secrecy (for output the user asked for).
    std::string reveal_hex() const { return hex_encode(view()); }

    friend bool operator==(const SecretBytes& a, const SecretBytes& b) noexcept {
        return equal_ct(a.view(), b.view());
    }

private:
    std::vector<std::uint8_t, SecureAllocator<std::uint8_t>> bytes_;
};

// A fixed-size secret (a block, a key) on the stack or inside another object,
// wiped when it goes out of scope. Use for temporaries of a computation.
template <std::size_t N> class SecretArray {
public:
    SecretArray() noexcept : bytes_{} {}
    explicit SecretArray(ByteView bytes) noexcept : bytes_{} {
        std::copy_n(bytes.begin(), std::min(N, bytes.size()), bytes_.begin());
    }
    SecretArray(const SecretArray&) noexcept = default;
    SecretArray& operator=(const SecretArray&) noexcept = default;
    ~SecretArray() { wipe(bytes_.data(), N); }

    static constexpr std::size_t size() noexcept { return N; }
    std::uint8_t* data() noexcept { return bytes_.data(); }
    const std::uint8_t* data() const noexcept { return bytes_.data(); }
    ByteView view() const noexcept { return {bytes_.data(), N}; }
    std::span<std::uint8_t> span() noexcept { return {bytes_.data(), N}; }
    std::array<std::uint8_t, N>& array() noexcept { return bytes_; }
    const std::array<std::uint8_t, N>& array() const noexcept { return bytes_; }
    std::uint8_t& operator[](std::size_t i) noexcept { return bytes_[i]; }
    std::uint8_t operator[](std::size_t i) const noexcept { return bytes_[i]; }

private:
    std::array<std::uint8_t, N> bytes_;
};

// A secret of at most Cap bytes held inline (CK, IK, Kc...): no allocation on
// the authentication path, wiped when it goes out of scope, never printable.
template <std::size_t Cap> class SecretBuffer {
public:
    SecretBuffer() noexcept = default;
    explicit SecretBuffer(ByteView bytes) { assign(bytes); }
    SecretBuffer(const SecretBuffer&) noexcept = default;
    SecretBuffer& operator=(const SecretBuffer&) noexcept = default;
    ~SecretBuffer() { wipe(bytes_.data(), Cap); }

    void resize(std::size_t size) {
        if (size > Cap) {
            throw std::length_error("SecretBuffer: size beyond capacity");
        }
        size_ = size;
    }
    void assign(ByteView bytes) {
        resize(bytes.size());
        std::copy(bytes.begin(), bytes.end(), bytes_.begin());
    }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    std::uint8_t* data() noexcept { return bytes_.data(); }
    const std::uint8_t* data() const noexcept { return bytes_.data(); }
    ByteView view() const noexcept { return {bytes_.data(), size_}; }
    std::span<std::uint8_t> span() noexcept { return {bytes_.data(), size_}; }
    std::uint8_t& operator[](std::size_t i) noexcept { return bytes_[i]; }
    std::uint8_t operator[](std::size_t i) const noexcept { return bytes_[i]; }
    std::string reveal_hex() const { return hex_encode(view()); }
    SecretBytes to_secret_bytes() const { return SecretBytes(view()); }

    friend bool operator==(const SecretBuffer& a, const SecretBuffer& b) noexcept {
        return equal_ct(a.view(), b.view());
    }

private:
    std::array<std::uint8_t, Cap> bytes_{};
    std::size_t size_ = 0;
};

} // namespace tresim
