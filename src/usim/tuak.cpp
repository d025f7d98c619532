#include "tuak.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "keccak.hpp"

namespace tresim::usim {

namespace {

// TS 35.231 works on one 1600-bit value IN (and OUT = Π(IN)). Keccak reads bit i of
// that value as bit (i mod 8) of byte i/8, so it is kept here as 200 bytes.
constexpr std::size_t kStateBytes = 200;
using TuakBlock = SecretArray<kStateBytes>;

// Byte offsets of the fields of IN (TS 35.231 §6), bit offset / 8.
constexpr std::size_t kTopOffset = 0;       // IN[0..255]: TOP, TOPc
constexpr std::size_t kInstanceOffset = 32; // IN[256..263]: INSTANCE
constexpr std::size_t kAlgonameOffset = 33; // IN[264..319]: ALGONAME
constexpr std::size_t kRandOffset = 40;     // IN[320..447]: RAND
constexpr std::size_t kAmfOffset = 56;      // IN[448..463]: AMF
constexpr std::size_t kSqnOffset = 58;      // IN[464..511]: SQN
constexpr std::size_t kKeyOffset = 64;      // IN[512..767]: K (128-bit K then zeros)
constexpr std::size_t kPadStartOffset = 96; // IN[768..772] = 1
constexpr std::size_t kPadEndOffset = 135;  // IN[1087] = 1
constexpr std::uint8_t kPadStart = 0x1f;
constexpr std::uint8_t kPadEnd = 0x80;

// Byte offsets of the outputs in OUT (TS 35.231 §6.4): RES from OUT[0], CK from
// OUT[256], IK from OUT[512], AK from OUT[768]. TOPc and MAC start at OUT[0].
constexpr std::size_t kResOffset = 0;
constexpr std::size_t kCkOffset = 32;
constexpr std::size_t kIkOffset = 64;
constexpr std::size_t kAkOffset = 96;

constexpr std::array<std::uint8_t, 7> kAlgoname{'T', 'U', 'A', 'K', '1', '.', '0'};

// INSTANCE (TS 35.231 §6.1-6.5). The specification numbers its bits INSTANCE[0]
// (most significant) to INSTANCE[7]; IN[256..263] = INSTANCE[7..0] puts
// INSTANCE[7] at Keccak's least significant bit of byte 32, so the octet below is
// stored unchanged.
constexpr std::uint8_t kInstanceF1 = 0x00;     // INSTANCE[0..1] = 0,0
constexpr std::uint8_t kInstanceF1Star = 0x80; // 1,0
constexpr std::uint8_t kInstanceF2345 = 0x40;  // 0,1
constexpr std::uint8_t kInstanceF5Star = 0xc0; // 1,1
constexpr std::uint8_t kInstanceK256 = 0x01;   // INSTANCE[7]: K is 256 bits
constexpr std::uint8_t kInstanceCk256 = 0x04;  // INSTANCE[5]: CK is 256 bits
constexpr std::uint8_t kInstanceIk256 = 0x02;  // INSTANCE[6]: IK is 256 bits

// INSTANCE[2..4] for a MAC or RES length: 0,0,1 = 64 bits, 0,1,0 = 128, 1,0,0 = 256,
// and 0,0,0 = 32 (RES only).
constexpr std::uint8_t length_code(unsigned bits) noexcept {
    switch (bits) {
    case 64:
        return 0x08;
    case 128:
        return 0x10;
    case 256:
        return 0x20;
    default:
        return 0x00;
    }
}

std::uint8_t key_code(ByteView k) noexcept {
    return k.size() == 32 ? kInstanceK256 : 0x00;
}

void check_key(ByteView k) {
    if (k.size() != 16 && k.size() != 32) {
        throw InvalidArgument("k", "TUAK K must be 128 or 256 bits (16 or 32 bytes), not " +
                                       std::to_string(k.size()) + " bytes");
    }
}

void check_iterations(unsigned iterations) {
    if (iterations < 1 || iterations > 255) {
        throw InvalidArgument("keccak-iterations", "the number of Keccak iterations must be 1 to "
                                                   "255, not " +
                                                       std::to_string(iterations));
    }
}

// IN[8o .. 8o+n-1] = X[n-1] .. X[0] for a field X of n bits (X[0] leftmost): each
// bit keeps its place in its octet and the octets come last first.
void put_field(TuakBlock& in, std::size_t offset, ByteView field) noexcept {
    for (std::size_t j = 0; j < field.size(); ++j) {
        in[offset + j] = field[field.size() - 1 - j];
    }
}

// X[0] .. X[n-1] = OUT[8o+n-1] .. OUT[8o]: the inverse of put_field.
void get_field(const TuakBlock& out, std::size_t offset, std::span<std::uint8_t> field) noexcept {
    for (std::size_t j = 0; j < field.size(); ++j) {
        field[j] = out[offset + field.size() - 1 - j];
    }
}

// The lanes that the permutation works on; wiped, since they hold K.
struct Lanes {
    KeccakState state{};
    Lanes() = default;
    Lanes(const Lanes&) = delete;
    Lanes& operator=(const Lanes&) = delete;
    ~Lanes() { wipe(state.data(), sizeof(state)); }
};

// Builds IN, applies Keccak-f[1600] `iterations` times and returns OUT.
TuakBlock permute(ByteView top, std::uint8_t instance, ByteView rand, ByteView amf, ByteView sqn,
                  ByteView k, unsigned iterations) {
    TuakBlock block;
    put_field(block, kTopOffset, top);
    block[kInstanceOffset] = instance;
    put_field(block, kAlgonameOffset, kAlgoname);
    put_field(block, kRandOffset, rand); // empty for TOPc
    put_field(block, kAmfOffset, amf);   // empty except for f1 and f1*
    put_field(block, kSqnOffset, sqn);
    put_field(block, kKeyOffset, k);
    block[kPadStartOffset] = kPadStart;
    block[kPadEndOffset] = kPadEnd;

    Lanes lanes;
    for (std::size_t i = 0; i < lanes.state.size(); ++i) { // lanes are little-endian
        std::uint64_t v = 0;
        for (std::size_t b = 0; b < 8; ++b) {
            v |= std::uint64_t{block[8 * i + b]} << (8 * b);
        }
        lanes.state[i] = v;
    }
    for (unsigned n = 0; n < iterations; ++n) {
        keccak_f1600(lanes.state);
    }
    for (std::size_t i = 0; i < lanes.state.size(); ++i) {
        for (std::size_t b = 0; b < 8; ++b) {
            block[8 * i + b] = static_cast<std::uint8_t>(lanes.state[i] >> (8 * b));
        }
    }
    return block;
}

class TuakComputation final : public AkaComputation {
public:
    TuakComputation(const SecretBytes& k, const Topc& topc, const TuakParams& params,
                    const Rand& rand)
        : k_(k.view()), topc_(topc), params_(params), rand_(rand) {}

    Mac f1(const Sqn& sqn, const Amf& amf) override { return mac(kInstanceF1, sqn, amf); }

    Mac f1star(const Sqn& sqn, const Amf& amf) override { return mac(kInstanceF1Star, sqn, amf); }

    F2345 f2345() override {
        const std::uint8_t instance = kInstanceF2345 | length_code(params_.res_bits) |
                                      (params_.ck_bits == 256 ? kInstanceCk256 : 0x00) |
                                      (params_.ik_bits == 256 ? kInstanceIk256 : 0x00) |
                                      key_code(k_.view());
        const TuakBlock out = run(instance, {}, {});
        F2345 r;
        r.res.resize(params_.res_bits / 8);
        get_field(out, kResOffset, r.res);
        r.ck.resize(params_.ck_bits / 8);
        get_field(out, kCkOffset, r.ck.span());
        r.ik.resize(params_.ik_bits / 8);
        get_field(out, kIkOffset, r.ik.span());
        get_field(out, kAkOffset, r.ak);
        return r;
    }

    Ak f5star() override {
        const TuakBlock out = run(kInstanceF5Star | key_code(k_.view()), {}, {});
        Ak ak{};
        get_field(out, kAkOffset, ak);
        return ak;
    }

    AllOutputs all(const Sqn& sqn, const Amf& amf) override {
        // Every function has its own INSTANCE, so there is nothing to share: four
        // permutations.
        AllOutputs o;
        o.mac_a = f1(sqn, amf);
        o.mac_s = f1star(sqn, amf);
        F2345 r = f2345();
        o.res = r.res;
        o.ck = r.ck;
        o.ik = r.ik;
        o.ak = r.ak;
        o.ak_star = f5star();
        return o;
    }

private:
    TuakBlock run(std::uint8_t instance, ByteView amf, ByteView sqn) const {
        return permute(topc_.view(), instance, rand_, amf, sqn, k_.view(),
                       params_.keccak_iterations);
    }

    Mac mac(std::uint8_t function, const Sqn& sqn, const Amf& amf) const {
        const TuakBlock out =
            run(function | length_code(params_.mac_bits) | key_code(k_.view()), amf, sqn);
        Mac m(params_.mac_bits / 8);
        get_field(out, kTopOffset, m);
        return m;
    }

    SecretBuffer<32> k_; // inline: no secure-heap allocation per computation
    Topc topc_;
    TuakParams params_;
    Rand rand_;
};

} // namespace

void TuakParams::validate() const {
    if (mac_bits != 64 && mac_bits != 128 && mac_bits != 256) {
        throw InvalidArgument("mac-bits", "TUAK MAC-A/MAC-S must be 64, 128 or 256 bits, not " +
                                              std::to_string(mac_bits));
    }
    if (res_bits != 32 && res_bits != 64 && res_bits != 128 && res_bits != 256) {
        throw InvalidArgument("res-bits", "TUAK RES must be 32, 64, 128 or 256 bits, not " +
                                              std::to_string(res_bits));
    }
    if (ck_bits != 128 && ck_bits != 256) {
        throw InvalidArgument("ck-bits",
                              "TUAK CK must be 128 or 256 bits, not " + std::to_string(ck_bits));
    }
    if (ik_bits != 128 && ik_bits != 256) {
        throw InvalidArgument("ik-bits",
                              "TUAK IK must be 128 or 256 bits, not " + std::to_string(ik_bits));
    }
    check_iterations(keccak_iterations);
}

Tuak::Tuak(SecretBytes k, const Topc& topc, TuakParams params)
    : k_(std::move(k)), topc_(topc), params_(params) {
    check_key(k_.view());
    params_.validate();
}

Topc Tuak::compute_topc(ByteView k, const Top& top, unsigned keccak_iterations) {
    check_key(k);
    check_iterations(keccak_iterations);
    // TS 35.231 §6.1: INSTANCE[0..6] = 0, INSTANCE[7] = the K length; no RAND/AMF/SQN.
    const TuakBlock out = permute(top, key_code(k), {}, {}, {}, k, keccak_iterations);
    Topc topc;
    get_field(out, kTopOffset, topc.span());
    return topc;
}

std::unique_ptr<AkaComputation> Tuak::begin(const Rand& rand) {
    return std::make_unique<TuakComputation>(k_, topc_, params_, rand);
}

OutputSizes Tuak::sizes() const {
    return {params_.mac_bits / 8, params_.res_bits / 8, params_.ck_bits / 8, params_.ik_bits / 8};
}

} // namespace tresim::usim
