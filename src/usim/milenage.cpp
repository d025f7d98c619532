#include "milenage.hpp"

#include <stdexcept>

namespace tresim::usim {

namespace {

// TS 35.206 §4.1: rotation amounts in bytes (r1..r5 = 64, 0, 32, 64, 96 bits) and
// the constants c1..c5 (only their last byte is non-zero).
constexpr std::size_t kRotate[5] = {8, 0, 4, 8, 12};
constexpr std::uint8_t kConstant[5] = {0x00, 0x01, 0x02, 0x04, 0x08};

using SecretBlock = SecretArray<16>;

// rot(x xor OPc, r) xor c, the input to E_K for OUT2..OUT5 (with x = TEMP) and,
// xor TEMP, for OUT1 (with x = IN1).
void rotate_xor(Block& out, const std::uint8_t* x, const Opc& opc, std::size_t r, std::uint8_t c) {
    for (std::size_t i = 0; i < 16; ++i) {
        const std::size_t j = (i + r) % 16;
        out[i] = x[j] ^ opc[j];
    }
    out[15] ^= c;
}

class MilenageComputation final : public AkaComputation {
public:
    MilenageComputation(Milenage& m, const Rand& rand) : m_(m) {
        Block in{};
        xor_into(in, rand, m_.opc().view());
        Block temp{};
        m_.cipher().encrypt({&in, 1}, {&temp, 1});
        temp_ = SecretBlock(temp);
        wipe(temp.data(), temp.size());
    }

    Bytes f1(const Sqn& sqn, const Amf& amf) override {
        SecretBlock out1 = out1_block(sqn, amf);
        return Bytes(out1.data(), out1.data() + 8);
    }

    Bytes f1star(const Sqn& sqn, const Amf& amf) override {
        SecretBlock out1 = out1_block(sqn, amf);
        return Bytes(out1.data() + 8, out1.data() + 16);
    }

    F2345 f2345() override {
        // OUT2, OUT3, OUT4 in one call.
        std::array<Block, 3> in{};
        std::array<Block, 3> out{};
        for (std::size_t n = 0; n < 3; ++n) {
            rotate_xor(in[n], temp_.data(), m_.opc(), kRotate[n + 1], kConstant[n + 1]);
        }
        m_.cipher().encrypt(in, out);
        finish(out);
        F2345 r;
        r.res.assign(out[0].begin() + 8, out[0].end());
        std::copy_n(out[0].begin(), 6, r.ak.begin());
        r.ck = SecretBytes(ByteView(out[1]));
        r.ik = SecretBytes(ByteView(out[2]));
        wipe(out.data(), sizeof(out));
        wipe(in.data(), sizeof(in));
        return r;
    }

    Ak f5star() override {
        Block in{};
        Block out{};
        rotate_xor(in, temp_.data(), m_.opc(), kRotate[4], kConstant[4]);
        m_.cipher().encrypt({&in, 1}, {&out, 1});
        finish({&out, 1});
        Ak ak{};
        std::copy_n(out.begin(), 6, ak.begin());
        wipe(out.data(), out.size());
        wipe(in.data(), in.size());
        return ak;
    }

    AllOutputs all(const Sqn& sqn, const Amf& amf) override {
        // The five blocks after TEMP are independent: one call.
        std::array<Block, 5> in{};
        std::array<Block, 5> out{};
        in1_input(in[0], sqn, amf);
        for (std::size_t n = 1; n < 5; ++n) {
            rotate_xor(in[n], temp_.data(), m_.opc(), kRotate[n], kConstant[n]);
        }
        m_.cipher().encrypt(in, out);
        finish(out);
        AllOutputs r;
        r.mac_a.assign(out[0].begin(), out[0].begin() + 8);
        r.mac_s.assign(out[0].begin() + 8, out[0].end());
        std::copy_n(out[1].begin(), 6, r.ak.begin());
        r.res.assign(out[1].begin() + 8, out[1].end());
        r.ck = SecretBytes(ByteView(out[2]));
        r.ik = SecretBytes(ByteView(out[3]));
        std::copy_n(out[4].begin(), 6, r.ak_star.begin());
        wipe(out.data(), sizeof(out));
        wipe(in.data(), sizeof(in));
        return r;
    }

private:
    // TEMP xor rot(IN1 xor OPc, r1) xor c1, IN1 = SQN || AMF || SQN || AMF.
    void in1_input(Block& in, const Sqn& sqn, const Amf& amf) const {
        std::array<std::uint8_t, 16> in1{};
        std::copy(sqn.begin(), sqn.end(), in1.begin());
        std::copy(amf.begin(), amf.end(), in1.begin() + 6);
        std::copy(sqn.begin(), sqn.end(), in1.begin() + 8);
        std::copy(amf.begin(), amf.end(), in1.begin() + 14);
        rotate_xor(in, in1.data(), m_.opc(), kRotate[0], kConstant[0]);
        for (std::size_t i = 0; i < 16; ++i) {
            in[i] ^= temp_[i];
        }
    }

    SecretBlock out1_block(const Sqn& sqn, const Amf& amf) {
        Block in{};
        Block out{};
        in1_input(in, sqn, amf);
        m_.cipher().encrypt({&in, 1}, {&out, 1});
        finish({&out, 1});
        SecretBlock result(out);
        wipe(out.data(), out.size());
        wipe(in.data(), in.size());
        return result;
    }

    // OUTn = E_K(...) xor OPc.
    void finish(std::span<Block> blocks) const {
        for (Block& b : blocks) {
            for (std::size_t i = 0; i < 16; ++i) {
                b[i] ^= m_.opc()[i];
            }
        }
    }

    Milenage& m_;
    SecretBlock temp_;
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
    xor_into(opc.span(), out, op);
    wipe(out.data(), out.size());
    return opc;
}

std::unique_ptr<AkaComputation> Milenage::begin(const Rand& rand) {
    return std::make_unique<MilenageComputation>(*this, rand);
}

} // namespace tresim::usim
