#include "milenage.hpp"

#include <cstring>
#include <stdexcept>

namespace tresim::usim {

namespace {

// TS 35.206 §4.1: rotation amounts in bytes (r1..r5 = 64, 0, 32, 64, 96 bits) and
// the constants c1..c5 (only their last byte is non-zero).
constexpr std::size_t kRotate[5] = {8, 0, 4, 8, 12};
constexpr std::uint8_t kConstant[5] = {0x00, 0x01, 0x02, 0x04, 0x08};

// out = a xor b, 16 bytes, as two 64-bit words.
inline void xor16(std::uint8_t* out, const std::uint8_t* a, const std::uint8_t* b) noexcept {
    std::uint64_t x[2];
    std::uint64_t y[2];
    std::memcpy(x, a, 16);
    std::memcpy(y, b, 16);
    x[0] ^= y[0];
    x[1] ^= y[1];
    std::memcpy(out, x, 16);
}

// out = rot(y, r bytes) xor c, where y is already (x xor OPc).
inline void rotate_const(Block& out, const std::uint8_t* y, std::size_t r,
                         std::uint8_t c) noexcept {
    std::memcpy(out.data(), y + r, 16 - r);
    std::memcpy(out.data() + 16 - r, y, r);
    out[15] ^= c;
}

class MilenageComputation final : public AkaComputation {
public:
    MilenageComputation(Milenage& m, const Rand& rand) : m_(m), opc_(m.opc().data()) {
        Block in{};
        xor16(in.data(), rand.data(), opc_);
        m_.cipher().encrypt({&in, 1}, {&s_.temp, 1});
        // Every OUT2..OUT5 input starts from TEMP xor OPc.
        xor16(s_.temp_opc.data(), s_.temp.data(), opc_);
        wipe(in.data(), in.size());
    }
    ~MilenageComputation() override { wipe(&s_, sizeof(s_)); }
    MilenageComputation(const MilenageComputation&) = delete;
    MilenageComputation& operator=(const MilenageComputation&) = delete;

    Mac f1(const Sqn& sqn, const Amf& amf) override { return Mac(out1(sqn, amf).first(8)); }
    Mac f1star(const Sqn& sqn, const Amf& amf) override { return Mac(out1(sqn, amf).subspan(8)); }

    F2345 f2345() override {
        Work w;
        for (std::size_t n = 0; n < 3; ++n) {
            rotate_const(w.in[n], s_.temp_opc.data(), kRotate[n + 1], kConstant[n + 1]);
        }
        encrypt_finish(w, 3);
        F2345 r;
        r.res.assign(ByteView(w.out[0]).subspan(8));
        std::memcpy(r.ak.data(), w.out[0].data(), 6);
        r.ck.assign(w.out[1]);
        r.ik.assign(w.out[2]);
        return r;
    }

    Ak f5star() override {
        Work w;
        rotate_const(w.in[0], s_.temp_opc.data(), kRotate[4], kConstant[4]);
        encrypt_finish(w, 1);
        Ak ak{};
        std::memcpy(ak.data(), w.out[0].data(), 6);
        return ak;
    }

    VectorOutputs vector(const Sqn& sqn, const Amf& amf) override {
        // OUT1..OUT4 are independent once TEMP is known: one cipher call.
        Work w;
        in1(w.in[0], sqn, amf);
        for (std::size_t n = 1; n < 4; ++n) {
            rotate_const(w.in[n], s_.temp_opc.data(), kRotate[n], kConstant[n]);
        }
        encrypt_finish(w, 4);
        VectorOutputs r;
        r.mac_a.assign(ByteView(w.out[0]).first(8));
        std::memcpy(r.ak.data(), w.out[1].data(), 6);
        r.res.assign(ByteView(w.out[1]).subspan(8));
        r.ck.assign(w.out[2]);
        r.ik.assign(w.out[3]);
        return r;
    }

    AllOutputs all(const Sqn& sqn, const Amf& amf) override {
        // The five blocks after TEMP are independent: one cipher call.
        Work w;
        in1(w.in[0], sqn, amf);
        for (std::size_t n = 1; n < 5; ++n) {
            rotate_const(w.in[n], s_.temp_opc.data(), kRotate[n], kConstant[n]);
        }
        encrypt_finish(w, 5);
        AllOutputs r;
        r.mac_a.assign(ByteView(w.out[0]).first(8));
        r.mac_s.assign(ByteView(w.out[0]).subspan(8));
        std::memcpy(r.ak.data(), w.out[1].data(), 6);
        r.res.assign(ByteView(w.out[1]).subspan(8));
        r.ck.assign(w.out[2]);
        r.ik.assign(w.out[3]);
        std::memcpy(r.ak_star.data(), w.out[4].data(), 6);
        return r;
    }

private:
    // Cipher inputs and outputs of one call; wiped when it goes out of scope.
    struct Work {
        std::array<Block, 5> in{};
        std::array<Block, 5> out{};
        Work() = default;
        Work(const Work&) = delete;
        Work& operator=(const Work&) = delete;
        ~Work() { wipe(this, sizeof(*this)); }
    };

    // TEMP xor rot(IN1 xor OPc, r1) xor c1, IN1 = SQN || AMF || SQN || AMF.
    void in1(Block& in, const Sqn& sqn, const Amf& amf) const noexcept {
        std::uint8_t block[16];
        std::memcpy(block, sqn.data(), 6);
        std::memcpy(block + 6, amf.data(), 2);
        std::memcpy(block + 8, block, 8);
        xor16(block, block, opc_);
        rotate_const(in, block, kRotate[0], kConstant[0]);
        xor16(in.data(), in.data(), s_.temp.data());
    }

    // Encrypts the first n inputs and applies OUTn = E_K(...) xor OPc.
    void encrypt_finish(Work& w, std::size_t n) {
        m_.cipher().encrypt({w.in.data(), n}, {w.out.data(), n});
        for (std::size_t i = 0; i < n; ++i) {
            xor16(w.out[i].data(), w.out[i].data(), opc_);
        }
    }

    ByteView out1(const Sqn& sqn, const Amf& amf) {
        Work w;
        in1(w.in[0], sqn, amf);
        encrypt_finish(w, 1);
        s_.out1 = w.out[0];
        return ByteView(s_.out1);
    }

    Milenage& m_;
    const std::uint8_t* opc_;
    struct State {
        Block temp{};
        Block temp_opc{};
        Block out1{};
    } s_;
};

} // namespace

Milenage::Milenage(std::unique_ptr<BlockCipher> ek, const Opc& opc)
    : ek_(std::move(ek)), opc_(opc) {
    if (!ek_) {
        throw std::logic_error("Milenage needs a block cipher");
    }
}

std::unique_ptr<Milenage> Milenage::software(ByteView k, ByteView opc) {
    require_size(k, 16, "k");
    require_size(opc, 16, "opc");
    return std::make_unique<Milenage>(std::make_unique<SoftwareAes128>(k), Opc(opc));
}

Opc Milenage::compute_opc(BlockCipher& ek, const Block& op) {
    Block out{};
    ek.encrypt({&op, 1}, {&out, 1});
    Opc opc;
    xor16(opc.data(), out.data(), op.data());
    wipe(out.data(), out.size());
    return opc;
}

std::unique_ptr<AkaComputation> Milenage::begin(const Rand& rand) {
    return std::make_unique<MilenageComputation>(*this, rand);
}

} // namespace tresim::usim
