#include "aka.hpp"

#include <algorithm>
#include <stdexcept>

#include <openssl/rand.h>

namespace tresim::usim {

namespace {

Sqn sqn_bytes(std::uint64_t sqn) {
    Sqn out{};
    store_be(sqn, out);
    return out;
}

constexpr Amf kDummyAmf{}; // AMF* for resynchronisation: all zero (TS 33.102 §6.3.3)

} // namespace

void SqnConfig::validate() const {
    if (ind_bits > 10) {
        throw InvalidArgument("ind-bits", "must be 0 to 10, got " + std::to_string(ind_bits));
    }
    if (delta == 0) {
        throw InvalidArgument("delta", "must be at least 1");
    }
}

const char* to_string(SqnVerdict v) noexcept {
    switch (v) {
    case SqnVerdict::Fresh:
        return "fresh";
    case SqnVerdict::Replayed:
        return "replayed";
    case SqnVerdict::TooFar:
        return "too-far-ahead";
    case SqnVerdict::TooOld:
        return "too-old";
    }
    return "unknown";
}

SqnState::SqnState(SqnConfig config) : config_(config) {
    config_.validate();
    seq_.assign(std::size_t{1} << config_.ind_bits, 0);
}

SqnState::SqnState(SqnConfig config, std::vector<std::uint64_t> seq)
    : config_(config), seq_(std::move(seq)) {
    config_.validate();
    if (seq_.size() != (std::size_t{1} << config_.ind_bits)) {
        throw InvalidArgument("sqn-state", "has " + std::to_string(seq_.size()) +
                                               " entries, expected " +
                                               std::to_string(std::size_t{1} << config_.ind_bits));
    }
    const std::uint64_t seq_limit = std::uint64_t{1} << (48 - config_.ind_bits);
    for (const std::uint64_t s : seq_) {
        if (s >= seq_limit) {
            throw InvalidArgument("sqn-state", "holds a SEQ beyond 48-bit SQN");
        }
    }
}

SqnState SqnState::from_highest(std::uint64_t sqn_ms, SqnConfig config) {
    if (sqn_ms > kSqnMax) {
        throw InvalidArgument("sqn-ms", "exceeds 48 bits");
    }
    SqnState s(config);
    const std::uint64_t seq_ms = sqn_ms >> config.ind_bits;
    const std::uint64_t ind_ms = sqn_ms & ((std::uint64_t{1} << config.ind_bits) - 1);
    for (std::size_t i = 0; i < s.seq_.size(); ++i) {
        s.seq_[i] = i <= ind_ms ? seq_ms : (seq_ms > 0 ? seq_ms - 1 : 0);
    }
    return s;
}

std::uint64_t SqnState::highest_sqn() const noexcept {
    std::uint64_t best = 0;
    for (std::size_t i = 0; i < seq_.size(); ++i) {
        if (seq_[i] != 0) {
            best = std::max(best, (seq_[i] << config_.ind_bits) | i);
        }
    }
    return best;
}

SqnVerdict SqnState::check(std::uint64_t sqn) const noexcept {
    const std::uint64_t seq = sqn >> config_.ind_bits;
    const std::size_t ind = sqn & ((std::uint64_t{1} << config_.ind_bits) - 1);
    const std::uint64_t seq_ms = *std::max_element(seq_.begin(), seq_.end());
    // C.3.2: SEQ must exceed what this IND slot last accepted.
    if (sqn > kSqnMax || seq <= seq_[ind]) {
        return SqnVerdict::Replayed;
    }
    // C.2.1: a SEQ far beyond the highest accepted one would burn the counter
    // towards wrap-around.
    if (seq > seq_ms && seq - seq_ms > config_.delta) {
        return SqnVerdict::TooFar;
    }
    // C.2.2: optional age limit on SEQs below the highest accepted one.
    if (config_.age_limit != 0 && seq_ms > seq && seq_ms - seq > config_.age_limit) {
        return SqnVerdict::TooOld;
    }
    return SqnVerdict::Fresh;
}

SqnState SqnState::accept(std::uint64_t sqn) const {
    if (check(sqn) != SqnVerdict::Fresh) {
        throw std::logic_error("SqnState::accept called with an SQN that is not fresh");
    }
    SqnState next = *this;
    next.seq_[sqn & ((std::uint64_t{1} << config_.ind_bits) - 1)] = sqn >> config_.ind_bits;
    return next;
}

Auts make_auts(AkaComputation& c, std::uint64_t sqn_ms) {
    const Sqn sqn = sqn_bytes(sqn_ms);
    const Ak ak_star = c.f5star();
    Auts auts(6);
    xor_into({auts.data(), 6}, sqn, ak_star);
    auts.append(c.f1star(sqn, kDummyAmf));
    return auts;
}

AkaResult usim_authenticate(AkaAlgorithm& alg, const SqnState& state, const Rand& rand,
                            ByteView autn) {
    const std::size_t mac_size = alg.sizes().mac;
    require_size(autn, 8 + mac_size, "autn");
    auto c = alg.begin(rand);
    F2345 f = c->f2345();

    Sqn sqn_b{};
    xor_into(sqn_b, autn.first(6), f.ak);
    Amf amf{};
    std::copy_n(autn.begin() + 6, 2, amf.begin());
    const Mac xmac = c->f1(sqn_b, amf);
    // MAC-A first: nothing about SQN is revealed or changed for a forged AUTN.
    if (!equal_ct(xmac, autn.subspan(8))) {
        return AkaMacFailure{};
    }
    const std::uint64_t sqn = load_be(sqn_b);
    const SqnVerdict verdict = state.check(sqn);
    if (verdict != SqnVerdict::Fresh) {
        return AkaSyncFailure{make_auts(*c, state.highest_sqn()), verdict};
    }
    return AkaSuccess{std::move(f.res), std::move(f.ck), std::move(f.ik), sqn, state.accept(sqn)};
}

AllOutputs generate_all(AkaAlgorithm& alg, const Rand& rand, std::uint64_t sqn, const Amf& amf) {
    if (sqn > kSqnMax) {
        throw InvalidArgument("sqn", "exceeds 48 bits");
    }
    return alg.begin(rand)->all(sqn_bytes(sqn), amf);
}

AuthVector generate_vector(AkaAlgorithm& alg, const Rand& rand, std::uint64_t sqn, const Amf& amf) {
    if (sqn > kSqnMax) {
        throw InvalidArgument("sqn", "exceeds 48 bits");
    }
    const Sqn sqn_b = sqn_bytes(sqn);
    const VectorOutputs o = alg.begin(rand)->vector(sqn_b, amf);
    AuthVector v;
    v.rand = rand;
    v.xres = o.res;
    v.ck = o.ck;
    v.ik = o.ik;
    v.ak = o.ak;
    v.autn.resize(6);
    xor_into({v.autn.data(), 6}, sqn_b, o.ak);
    v.autn.append(amf);
    v.autn.append(o.mac_a);
    return v;
}

std::optional<std::uint64_t> resync(AkaAlgorithm& alg, const Rand& rand, ByteView auts) {
    require_size(auts, 6 + alg.sizes().mac, "auts");
    auto c = alg.begin(rand);
    const Ak ak_star = c->f5star();
    Sqn sqn{};
    xor_into(sqn, auts.first(6), ak_star);
    const Mac mac_s = c->f1star(sqn, kDummyAmf);
    if (!equal_ct(mac_s, auts.subspan(6))) {
        return std::nullopt;
    }
    return load_be(sqn);
}

Rand random_rand() {
    Rand r{};
    if (RAND_bytes(r.data(), static_cast<int>(r.size())) != 1) {
        throw std::runtime_error("OpenSSL's random generator failed");
    }
    return r;
}

} // namespace tresim::usim
