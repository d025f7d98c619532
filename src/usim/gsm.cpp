#include "gsm.hpp"

namespace tresim::usim {

Sres c2(ByteView res) {
    if (res.size() < 4 || res.size() > 16) {
        throw InvalidArgument("res",
                              "must be 4 to 16 bytes for c2, got " + std::to_string(res.size()));
    }
    std::array<std::uint8_t, 16> padded{};
    std::copy(res.begin(), res.end(), padded.begin());
    Sres sres{};
    for (std::size_t i = 0; i < 16; ++i) {
        sres[i % 4] ^= padded[i];
    }
    return sres;
}

Kc c3(ByteView ck, ByteView ik) {
    require_size(ck, 16, "ck");
    require_size(ik, 16, "ik");
    Kc kc;
    for (std::size_t i = 0; i < 8; ++i) {
        kc[i] = ck[i] ^ ck[i + 8] ^ ik[i] ^ ik[i + 8];
    }
    return kc;
}

GsmContext gsm_authenticate(AkaAlgorithm& alg, const Rand& rand) {
    const OutputSizes sizes = alg.sizes();
    if (sizes.ck != 16 || sizes.ik != 16) {
        throw InvalidArgument("algorithm", "the GSM context needs 128-bit CK and IK");
    }
    F2345 f = alg.begin(rand)->f2345();
    GsmContext g;
    g.sres = c2(f.res);
    std::copy_n(f.res.begin(), 4, g.sres2.begin());
    g.kc = c3(f.ck.view(), f.ik.view());
    return g;
}

} // namespace tresim::usim
