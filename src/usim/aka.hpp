#pragma once
// Authentication and Key Agreement on both sides (TS 33.102 §6.3), independent of
// the algorithm set:
//  - the USIM side verifies AUTN (MAC-A first, then freshness with the Annex C.3
//    SEQ/IND array) and answers RES/CK/IK, a synchronisation failure with AUTS, or
//    a MAC failure. It takes the SQN state as a value and returns the new one, so
//    the caller decides when it is persisted (before RES/CK/IK leave the TE);
//  - the network side (AuC) makes authentication vectors and recovers SQN_MS from
//    AUTS.

#include <cstdint>
#include <optional>
#include <span>
#include <variant>
#include <vector>

#include "aka_algorithm.hpp"

namespace tresim::usim {

inline constexpr std::uint64_t kSqnMax = (std::uint64_t{1} << 48) - 1;

// Annex C parameters. SQN = SEQ || IND with IND the ind_bits low-order bits.
struct SqnConfig {
    unsigned ind_bits = 5;                        // 0..10; the array has 2^ind_bits entries
    std::uint64_t delta = std::uint64_t{1} << 28; // C.2.1: largest accepted SEQ - SEQ_MS
    std::uint64_t age_limit = 0;                  // C.2.2: L, largest SEQ_MS - SEQ; 0 = unlimited
    void validate() const;                        // InvalidArgument("ind-bits"/"delta")
    friend bool operator==(const SqnConfig&, const SqnConfig&) = default;
};

enum class SqnVerdict {
    Fresh,    // accept
    Replayed, // SEQ <= SEQ_MS(IND)
    TooFar,   // SEQ - SEQ_MS > delta (wrap-around protection, C.2.1)
    TooOld,   // SEQ_MS - SEQ > L (age limit, C.2.2)
};
const char* to_string(SqnVerdict v) noexcept;

// The USIM's Annex C.3 array: SEQ_MS(i) for every IND value i, starting at zero.
class SqnState {
public:
    explicit SqnState(SqnConfig config = {});
    // Restores a persisted array; seq.size() must be 2^ind_bits and every value
    // below 2^(48-ind_bits). InvalidArgument("sqn-state") otherwise.
    SqnState(SqnConfig config, std::vector<std::uint64_t> seq);
    // The most permissive array consistent with "the highest SQN this USIM ever
    // accepted is sqn_ms": entries with IND <= IND_MS hold SEQ_MS, entries above it
    // SEQ_MS - 1 (an SQN greater than sqn_ms cannot have been accepted).
    static SqnState from_highest(std::uint64_t sqn_ms, SqnConfig config = {});

    const SqnConfig& config() const noexcept { return config_; }
    std::span<const std::uint64_t> seq() const noexcept { return seq_; }
    // SQN_MS = SEQ_MS || IND_MS: the highest SQN accepted so far (C.3.2), as sent in AUTS.
    std::uint64_t highest_sqn() const noexcept;

    SqnVerdict check(std::uint64_t sqn) const noexcept;
    // The state after accepting sqn (which check() said was Fresh).
    SqnState accept(std::uint64_t sqn) const;

    friend bool operator==(const SqnState&, const SqnState&) = default;

private:
    SqnConfig config_;
    std::vector<std::uint64_t> seq_;
};

// AUTN and AUTS for the largest MAC TUAK allows.
using Autn = FixedBytes<8 + 32>;
using Auts = FixedBytes<6 + 32>;

struct AkaSuccess {
    Res res;
    CipherKey ck;
    CipherKey ik;
    std::uint64_t sqn = 0; // the SQN just accepted
    SqnState state;        // the state to persist before releasing RES/CK/IK
};
struct AkaSyncFailure {
    Auts auts;           // (SQN_MS xor AK*) || MAC-S
    SqnVerdict reason{}; // why the SQN was not fresh
};
struct AkaMacFailure {};
using AkaResult = std::variant<AkaSuccess, AkaSyncFailure, AkaMacFailure>;

// USIM side. AUTN must be 8 + sizes().mac bytes, else InvalidArgument("autn").
AkaResult usim_authenticate(AkaAlgorithm& alg, const SqnState& state, const Rand& rand,
                            ByteView autn);

// AUTS for a given SQN_MS (TS 33.102 §6.3.3), AMF* the all-zero dummy.
Auts make_auts(AkaComputation& c, std::uint64_t sqn_ms);

struct AuthVector {
    Rand rand{};
    Res xres;
    CipherKey ck;
    CipherKey ik;
    Autn autn;
    Ak ak{};
};

// Network side. sqn must be <= kSqnMax, else InvalidArgument("sqn").
AuthVector generate_vector(AkaAlgorithm& alg, const Rand& rand, std::uint64_t sqn, const Amf& amf);
// Network side with every function output (what tresim-auc gen prints).
AllOutputs generate_all(AkaAlgorithm& alg, const Rand& rand, std::uint64_t sqn, const Amf& amf);

// Network side: verifies MAC-S and recovers SQN_MS; nullopt on MAC failure.
// AUTS must be 6 + sizes().mac bytes, else InvalidArgument("auts").
std::optional<std::uint64_t> resync(AkaAlgorithm& alg, const Rand& rand, ByteView auts);

// A fresh RAND from OpenSSL's CSPRNG.
Rand random_rand();

} // namespace tresim::usim
