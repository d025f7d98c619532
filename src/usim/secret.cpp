#include "secret.hpp"

#include <new>

#include <openssl/crypto.h>

namespace tresim {

bool secure_heap_init(std::size_t bytes) {
    if (CRYPTO_secure_malloc_initialized() != 0) {
        return true;
    }
    // 1 = the heap is locked; 2 = mapped but mlock failed (still usable).
    return CRYPTO_secure_malloc_init(bytes, 16) == 1;
}

void wipe(void* data, std::size_t size) noexcept {
    if (data != nullptr && size != 0) {
        OPENSSL_cleanse(data, size);
    }
}

void* secure_allocate(std::size_t bytes) {
    if (bytes == 0) {
        bytes = 1;
    }
    // Falls back to the ordinary heap when the secure heap is not set up or full;
    // OPENSSL_secure_clear_free still wipes in that case.
    void* p = OPENSSL_secure_zalloc(bytes);
    if (p == nullptr) {
        throw std::bad_alloc();
    }
    return p;
}

void secure_deallocate(void* p, std::size_t bytes) noexcept {
    OPENSSL_secure_clear_free(p, bytes == 0 ? 1 : bytes);
}

SecretBytes SecretBytes::from_hex(std::string_view hex, std::string_view argument) {
    if (hex.size() % 2 != 0) {
        throw InvalidArgument(std::string(argument), "hex has an odd number of digits (" +
                                                         std::to_string(hex.size()) + ")");
    }
    SecretBytes out(hex.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
        unsigned v = 0;
        for (std::size_t j = 0; j < 2; ++j) {
            const char c = hex[2 * i + j];
            unsigned n = 0;
            if (c >= '0' && c <= '9') {
                n = static_cast<unsigned>(c - '0');
            } else if (c >= 'a' && c <= 'f') {
                n = static_cast<unsigned>(c - 'a' + 10);
            } else if (c >= 'A' && c <= 'F') {
                n = static_cast<unsigned>(c - 'A' + 10);
            } else {
                throw InvalidArgument(std::string(argument), "not hex (a character at position " +
                                                                 std::to_string(2 * i + j) +
                                                                 " is not 0-9, a-f or A-F)");
            }
            v = (v << 4) | n;
        }
        out[i] = static_cast<std::uint8_t>(v);
    }
    return out;
}

SecretBytes SecretBytes::from_hex(std::string_view hex, std::string_view argument,
                                  std::size_t size) {
    SecretBytes out = from_hex(hex, argument);
    require_size(out.view(), size, argument);
    return out;
}

} // namespace tresim
