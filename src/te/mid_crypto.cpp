#include "mid_crypto.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <openssl/rand.h>

#include "tpm/error.hpp"
#include "tpm/keys.hpp"

namespace tresim::te {

namespace {

constexpr std::size_t kBlock = tpm::kAesBlock;

[[noreturn]] void corrupt(const std::string& what) {
    throw TeError(ErrorCode::StateCorrupt, "mid-key: " + what);
}

[[noreturn]] void invalid(const std::string& argument, const std::string& reason) {
    throw TeError(ErrorCode::InvalidArgument, argument + ": " + reason);
}

[[noreturn]] void tpm_failure(const tpm::TpmError& e) {
    if (e.is_lockout()) {
        throw TeError(ErrorCode::TpmLockout,
                      std::string("the TPM's dictionary-attack protection is engaged (") +
                          e.what() + ")");
    }
    throw TeError(ErrorCode::TpmFailure, std::string("TPM failure: ") + e.what());
}

Bytes random_bytes(std::size_t n) {
    Bytes b(n);
    if (RAND_bytes(b.data(), static_cast<int>(n)) != 1) {
        throw std::runtime_error("RAND_bytes failed");
    }
    return b;
}

Bytes digest_bytes(const TPM2B_DIGEST& d) {
    return {d.buffer, d.buffer + d.size};
}

// ESAPI (tpm2-tss 3.2) keeps a copy of each command's input parameters in the
// ESYS_CONTEXT for its _Finish step and never clears it: after TPM2_Create
// that copy is inSensitive in clear, so K (and OPc) stay in ordinary heap
// memory until a later command happens to overwrite that area, and
// StartAuthSession copies stale bytes of it into its new session record (the
// memory-dump test in tests/memdump found the first 8 bytes of K there). A
// second TPM2_Create with a zero inSensitive overwrites exactly that field. It
// makes a throwaway empty data object under the SRK that is never loaded: one
// command per created object, at import only. Call it right after a
// TPM2_Create of a secret, before any other ESAPI call.
void scrub_create_inputs(tpm::Context& ctx, ESYS_TR srk) {
    TPM2B_SENSITIVE_CREATE zero{};
    zero.sensitive.data.size = 1;
    const TPM2B_PUBLIC tmpl = tpm::sealed_data_template(Bytes(tpm::kDigestSize, 0),
                                                        tpm::ObjectOrigin::CreatedInTpm, true);
    const TPM2B_DATA outside{};
    const TPML_PCR_SELECTION no_pcrs{};
    TPM2B_PRIVATE* priv = nullptr;
    TPM2B_PUBLIC* pub = nullptr;
    TPM2B_CREATION_DATA* creation = nullptr;
    TPM2B_DIGEST* hash = nullptr;
    TPMT_TK_CREATION* ticket = nullptr;
    const TSS2_RC rc =
        Esys_Create(ctx, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &zero, &tmpl, &outside,
                    &no_pcrs, &priv, &pub, &creation, &hash, &ticket);
    Esys_Free(priv);
    Esys_Free(pub);
    Esys_Free(creation);
    Esys_Free(hash);
    Esys_Free(ticket);
    tpm::check(rc, "TPM2_Create(clearing ESAPI's copy of the last inSensitive)");
}

// What one authentication (or one creation step) uses.
struct Binding {
    tpm::Context& ctx;
    ESYS_TR srk;
    const MidKeyMaterial& material;
    tpm::TicketCache& tickets;
    WarmState* warm = nullptr;
};

// One policy session salted with the SRK, used for every command of one
// authentication (the kept one when there is a WarmState). The approved
// policy is run again before each use.
class MidSession {
public:
    explicit MidSession(const Binding& b)
        : b_(b), pcr_digest_(tpm::pcr_composite_digest(b.material.approval.pcrs)) {
        WarmState* w = b_.warm;
        if (w && w->session) {
            session_ = w->session.get();
            w->reused = true;
            return;
        }
        std::unique_ptr<tpm::PolicySession> s;
        try {
            s = std::make_unique<tpm::PolicySession>(b_.ctx, tpm::PolicySession::Type::Real,
                                                     b_.srk);
        } catch (const tpm::TpmError& e) {
            tpm_failure(e);
        }
        session_ = s.get();
        (w ? w->session : owned_) = std::move(s);
    }

    // The MID's key object (MidKeyMaterial::key): the kept one when it is
    // this object, else loaded (and kept when there is a WarmState and no
    // auth value). `owned` holds it when it is not kept.
    ESYS_TR key(const tpm::ObjectBlobs& blobs, tpm::Handle& owned) {
        WarmState* w = b_.warm;
        if (!w || b_.material.auth_value) {
            owned = load(blobs);
            return owned;
        }
        if (w->key && w->key_blobs.public_area == blobs.public_area &&
            w->key_blobs.private_area == blobs.private_area) {
            w->reused = true;
            return w->key;
        }
        w->key.reset(); // one kept key: flush the previous MID's first
        w->key_blobs = {};
        w->key = load(blobs);
        w->key_blobs = blobs;
        return w->key;
    }

    // Marks the kept session and key for release: a failed command may have
    // left the policy half satisfied.
    void poison() noexcept { poisoned_ = true; }
    bool poisoned() const noexcept { return poisoned_; }

    // TPM2_Load under the SRK, with the auth value set when there is one.
    tpm::Handle load(const tpm::ObjectBlobs& blobs) {
        tpm::Handle h;
        poisoned_ = true; // until the load succeeded
        try {
            h = tpm::load_object(b_.ctx, b_.srk, blobs);
            if (b_.material.auth_value) {
                tpm::set_auth_value(b_.ctx, h, *b_.material.auth_value);
            }
        } catch (const tpm::TpmError& e) {
            tpm_failure(e);
        } catch (const InvalidArgument& e) {
            if (e.argument() == "auth-value") {
                invalid("auth-value", "is longer than 32 bytes");
            }
            corrupt(std::string("a TPM object blob is malformed (") + e.what() + ")");
        }
        poisoned_ = false;
        return h;
    }

    // One policy-authorized command: the policy, then f().
    template <class F> SecretBytes use(F&& f) {
        try {
            satisfy();
            try {
                return f();
            } catch (const tpm::TpmError& e) {
                use_failure(e);
            }
        } catch (...) {
            poison();
            throw;
        }
    }

    // Unseal of a loaded object.
    SecretBytes unseal(ESYS_TR object) {
        return use([&] { return tpm::unseal(b_.ctx, object, *session_, true); });
    }

    // Load, Unseal, Flush.
    SecretBytes unseal(const tpm::ObjectBlobs& blobs) {
        const tpm::Handle object = load(blobs);
        return unseal(object.get());
    }

    // E_K of independent blocks, one command per 64 (ECB) or 63 (CFB) blocks.
    SecretBytes encrypt_blocks(ESYS_TR key, ByteView blocks, ComputationMode mode) {
        SecretBytes out(blocks.size());
        const std::size_t per = (mode == ComputationMode::TpmEcb ? 64 : 63) * kBlock;
        for (std::size_t offset = 0; offset < blocks.size(); offset += per) {
            const ByteView chunk = blocks.subspan(offset, std::min(per, blocks.size() - offset));
            const SecretBytes e = use([&] {
                return mode == ComputationMode::TpmEcb ? ecb(key, chunk) : cfb_batch(key, chunk);
            });
            std::copy(e.view().begin(), e.view().end(), out.data() + offset);
        }
        return out;
    }

    // One CFB encryption (chained: each ciphertext block feeds the next E_K).
    SecretBytes cfb_encrypt(ESYS_TR key, ByteView iv, ByteView data) {
        return use([&] {
            return tpm::encrypt_decrypt(b_.ctx, key, *session_, tpm::CipherMode::Cfb, iv, data,
                                        false, true);
        });
    }

private:
    SecretBytes ecb(ESYS_TR key, ByteView blocks) {
        return tpm::encrypt_decrypt(b_.ctx, key, *session_, tpm::CipherMode::Ecb, {}, blocks, false,
                                    true);
    }

    // CFB decryption computes P_i = C_i xor E_K(C_{i-1}), C_0 = IV. With a
    // public IV (zero) and C = (x1, ..., xn, 0): E_K(x_i) = P_{i+1} xor C_{i+1}.
    // Every x_i travels in the (parameter-encrypted) data, none as the IV.
    SecretBytes cfb_batch(ESYS_TR key, ByteView blocks) {
        SecretBytes c(blocks.size() + kBlock);
        std::copy(blocks.begin(), blocks.end(), c.data());
        const Bytes zero_iv(kBlock, 0);
        const SecretBytes p = tpm::encrypt_decrypt(b_.ctx, key, *session_, tpm::CipherMode::Cfb,
                                                   zero_iv, c.view(), true, true);
        SecretBytes e(blocks.size());
        xor_into(e.span(), p.view().subspan(kBlock), c.view().subspan(kBlock));
        return e;
    }

    void satisfy() {
        const MidApproval& a = b_.material.approval;
        try {
            session_->pcr(tpm::selection_of(a.pcrs), pcr_digest_);
        } catch (const tpm::TpmError& e) {
            if (e.is(TPM2_RC_VALUE)) {
                platform_mismatch();
            }
            tpm_failure(e);
        }
        try {
            if (a.auth_value) {
                session_->auth_value();
            }
            session_->authorize(a.authority, a.approved_policy, a.policy_ref, a.signature,
                                &b_.tickets);
        } catch (const tpm::TpmError& e) {
            if (e.is(TPM2_RC_SIGNATURE)) {
                throw TeError(ErrorCode::PolicyDenied,
                              "the platform approval is not signed by the MID's policy authority");
            }
            if (e.is_policy_failure()) {
                throw TeError(ErrorCode::PolicyDenied,
                              std::string("the platform approval was refused (") + e.what() + ")");
            }
            tpm_failure(e);
        }
    }

    [[noreturn]] void platform_mismatch() {
        std::vector<unsigned> differ;
        try {
            differ = tpm::differing_pcrs(b_.ctx, b_.material.approval.pcrs);
        } catch (const tpm::TpmError& e) {
            tpm_failure(e);
        }
        const std::string message =
            differ.empty()
                ? std::string("the PCRs do not match the approved platform state")
                : tpm::describe_pcr_difference(differ) + " from the approved platform state";
        throw PlatformMismatch(std::move(differ), message);
    }

    [[noreturn]] void use_failure(const tpm::TpmError& e) {
        if (e.is_auth_failure() && b_.material.approval.auth_value) {
            throw TeError(ErrorCode::WrongPin, "the TPM refused the MID's PIN-derived auth value");
        }
        if (e.is(TPM2_RC_POLICY_FAIL)) {
            throw TeError(ErrorCode::PolicyDenied,
                          std::string("the platform approval does not open this MID's objects (") +
                              e.what() + ")");
        }
        tpm_failure(e);
    }

    const Binding& b_;
    Bytes pcr_digest_;
    tpm::PolicySession* session_ = nullptr;
    std::unique_ptr<tpm::PolicySession> owned_; // without a WarmState
    bool poisoned_ = false;
};

// The TPM state of one authentication. Destruction flushes the key, then the
// session, unless they are kept in the WarmState; a failed computation
// releases the kept ones too.
struct TpmState {
    explicit TpmState(const Binding& b) : warm(b.warm), session(b) {}
    ~TpmState() {
        owned_key.reset();
        if (warm && session.poisoned()) {
            warm->release();
        }
    }
    TpmState(const TpmState&) = delete;
    TpmState& operator=(const TpmState&) = delete;
    WarmState* warm;
    MidSession session;
    tpm::Handle owned_key;
    ESYS_TR key = ESYS_TR_NONE;
    // An E_K value the OPc unwrapping command already produced (TEMP).
    bool memo = false;
    SecretArray<kBlock> memo_in;
    SecretArray<kBlock> memo_out;
};

// E_K over the TPM-resident K: the blocks of one call in one command.
class TpmBlockCipher final : public usim::BlockCipher {
public:
    TpmBlockCipher(TpmState& state, ComputationMode mode) : state_(state), mode_(mode) {}

    void encrypt(std::span<const usim::Block> in, std::span<usim::Block> out) override {
        if (in.size() != out.size()) {
            throw std::logic_error("TpmBlockCipher: input and output differ in length");
        }
        SecretBytes misses(in.size() * kBlock);
        std::vector<std::size_t> where;
        for (std::size_t i = 0; i < in.size(); ++i) {
            if (state_.memo && equal_ct(in[i], state_.memo_in.view())) {
                std::copy_n(state_.memo_out.data(), kBlock, out[i].begin());
            } else {
                std::copy(in[i].begin(), in[i].end(), misses.data() + where.size() * kBlock);
                where.push_back(i);
            }
        }
        if (where.empty()) {
            return;
        }
        const SecretBytes e = state_.session.encrypt_blocks(
            state_.key, misses.view().first(where.size() * kBlock), mode_);
        for (std::size_t j = 0; j < where.size(); ++j) {
            std::copy_n(e.data() + j * kBlock, kBlock, out[where[j]].begin());
        }
    }

private:
    TpmState& state_;
    ComputationMode mode_;
};

class MidAlgorithmImpl;

class MidComputation final : public usim::AkaComputation {
public:
    MidComputation(MidAlgorithmImpl& alg, const usim::Rand& rand);
    ~MidComputation() override;
    MidComputation(const MidComputation&) = delete;
    MidComputation& operator=(const MidComputation&) = delete;

    usim::Mac f1(const usim::Sqn& sqn, const usim::Amf& amf) override {
        return inner_->f1(sqn, amf);
    }
    usim::Mac f1star(const usim::Sqn& sqn, const usim::Amf& amf) override {
        return inner_->f1star(sqn, amf);
    }
    usim::F2345 f2345() override { return inner_->f2345(); }
    usim::Ak f5star() override { return inner_->f5star(); }
    usim::AllOutputs all(const usim::Sqn& sqn, const usim::Amf& amf) override {
        return inner_->all(sqn, amf);
    }
    usim::VectorOutputs vector(const usim::Sqn& sqn, const usim::Amf& amf) override {
        return inner_->vector(sqn, amf);
    }

private:
    void begin_sealed(const usim::Rand& rand);
    void begin_tpm(const usim::Rand& rand);

    MidAlgorithmImpl& alg_;
    tpm::CommandCounts start_;
    std::unique_ptr<TpmState> tpm_;
    // Milenage over TpmBlockCipher, or software Milenage/TUAK from the unsealed K.
    std::unique_ptr<usim::AkaAlgorithm> algorithm_;
    std::unique_ptr<usim::AkaComputation> inner_;
};

class MidAlgorithmImpl final : public MidAlgorithm {
public:
    MidAlgorithmImpl(tpm::Context& ctx, ESYS_TR srk, const MidKeyMaterial& material,
                     tpm::TicketCache& tickets, WarmState* warm)
        : material_(material), binding_{ctx, srk, material_, tickets, warm} {}
    MidAlgorithmImpl(const MidAlgorithmImpl&) = delete; // binding_ refers to material_
    MidAlgorithmImpl& operator=(const MidAlgorithmImpl&) = delete;

    std::unique_ptr<usim::AkaComputation> begin(const usim::Rand& rand) override {
        return std::make_unique<MidComputation>(*this, rand);
    }
    usim::OutputSizes sizes() const override {
        if (material_.algorithm == Algorithm::Tuak) {
            const usim::TuakParams& p = material_.tuak;
            return {p.mac_bits / 8, p.res_bits / 8, p.ck_bits / 8, p.ik_bits / 8};
        }
        return {8, 8, 16, 16};
    }
    const char* name() const override {
        return material_.algorithm == Algorithm::Tuak ? "tuak" : "milenage";
    }
    ComputationMode mode() const noexcept override { return material_.mode; }
    const tpm::CommandCounts& last_counts() const noexcept override { return last_; }

    const Binding& binding() const noexcept { return binding_; }
    const MidKeyMaterial& material() const noexcept { return material_; }
    void finished(const tpm::CommandCounts& start) { last_ = binding_.ctx.counts() - start; }

private:
    MidKeyMaterial material_;
    Binding binding_;
    tpm::CommandCounts last_;
};

MidComputation::MidComputation(MidAlgorithmImpl& alg, const usim::Rand& rand)
    : alg_(alg), start_(alg.binding().ctx.counts()) {
    if (alg.material().mode == ComputationMode::Sealed) {
        begin_sealed(rand);
    } else {
        begin_tpm(rand);
    }
}

MidComputation::~MidComputation() {
    inner_.reset();
    algorithm_.reset();
    tpm_.reset();
    alg_.finished(start_);
}

void MidComputation::begin_sealed(const usim::Rand& rand) {
    const MidKeyMaterial& m = alg_.material();
    SecretBytes k;
    SecretBytes opc;
    tpm_ = std::make_unique<TpmState>(alg_.binding());
    tpm_->key = tpm_->session.key(m.key, tpm_->owned_key);
    SecretBytes first = tpm_->session.unseal(tpm_->key);
    if (m.opc) {
        opc = tpm_->session.unseal(*m.opc);
        k = std::move(first);
    } else {
        const std::size_t opc_size = m.algorithm == Algorithm::Tuak ? 32 : 16;
        if (first.size() <= opc_size) {
            corrupt("the sealed K || OPc is too short");
        }
        k = SecretBytes(first.view().first(first.size() - opc_size));
        opc = SecretBytes(first.view().last(opc_size));
    }
    tpm_.reset(); // flush the session (unless kept): nothing more to ask the TPM
    if (m.algorithm == Algorithm::Tuak) {
        if ((k.size() != 16 && k.size() != 32) || opc.size() != 32) {
            corrupt("the sealed TUAK K or TOPc has a wrong size");
        }
        algorithm_ = std::make_unique<usim::Tuak>(std::move(k), usim::Topc(opc.view()), m.tuak);
    } else {
        if (k.size() != 16 || opc.size() != 16) {
            corrupt("the sealed Milenage K or OPc has a wrong size");
        }
        algorithm_ = usim::Milenage::software(k.view(), opc.view());
    }
    inner_ = algorithm_->begin(rand);
}

void MidComputation::begin_tpm(const usim::Rand& rand) {
    const MidKeyMaterial& m = alg_.material();
    tpm_ = std::make_unique<TpmState>(alg_.binding());
    tpm_->key = tpm_->session.key(m.key, tpm_->owned_key);
    usim::Opc opc;
    if (m.opc) {
        const SecretBytes o = tpm_->session.unseal(*m.opc);
        if (o.size() != 16) {
            corrupt("the sealed OPc has a wrong size");
        }
        opc = usim::Opc(o.view());
    } else {
        // IV = N, data = (wrapped xor RAND, 0, R): C1 = OPc xor RAND, C2 = TEMP.
        SecretBytes data(3 * kBlock);
        xor_into(data.span().first(kBlock), m.opc_wrapped, rand);
        const Bytes r = random_bytes(kBlock);
        std::copy(r.begin(), r.end(), data.data() + 2 * kBlock);
        const SecretBytes c = tpm_->session.cfb_encrypt(tpm_->key, m.wrap_nonce, data.view());
        xor_into(opc.span(), c.view().first(kBlock), rand);
        tpm_->memo_in = SecretArray<kBlock>(c.view().first(kBlock));
        tpm_->memo_out = SecretArray<kBlock>(c.view().subspan(kBlock, kBlock));
        tpm_->memo = true;
    }
    algorithm_ =
        std::make_unique<usim::Milenage>(std::make_unique<TpmBlockCipher>(*tpm_, m.mode), opc);
    inner_ = algorithm_->begin(rand); // TEMP from the memo when OPc was wrapped
}

// The software checks of an approval against the objects it should open.
void check_approval(const MidKeyMaterial& m) {
    const MidApproval& a = m.approval;
    if (a.approved_policy != approved_policy_for(a.pcrs, a.auth_value)) {
        throw TeError(ErrorCode::PolicyDenied,
                      "the platform approval's policy digest does not match its PCR values");
    }
    Bytes expected;
    try {
        expected = mid_auth_policy(a.authority, a.policy_ref);
    } catch (const InvalidArgument& e) {
        throw TeError(ErrorCode::PolicyDenied,
                      std::string("the platform approval is malformed (") + e.what() + ")");
    }
    const auto check_object = [&](const tpm::ObjectBlobs& blobs) {
        TPM2B_PUBLIC pub{};
        try {
            pub = tpm::unmarshal_public(blobs.public_area, "public-blob");
        } catch (const InvalidArgument&) {
            corrupt("a TPM object's public blob is malformed");
        }
        if (digest_bytes(pub.publicArea.authPolicy) != expected) {
            throw TeError(ErrorCode::PolicyDenied,
                          "the platform approval is not from the policy authority of this MID");
        }
    };
    check_object(m.key);
    if (m.opc) {
        check_object(*m.opc);
    }
    if (a.auth_value && !m.auth_value) {
        throw TeError(ErrorCode::PinRequired, "this MID needs its PIN verified");
    }
}

void check_material(const MidKeyMaterial& m) {
    if (m.algorithm == Algorithm::Tuak) {
        if (m.mode != ComputationMode::Sealed) {
            invalid("computation-mode", "TUAK runs only in sealed mode");
        }
        try {
            m.tuak.validate();
        } catch (const InvalidArgument& e) {
            invalid(e.argument(), e.what());
        }
    }
    if (m.mode != ComputationMode::Sealed && !m.opc &&
        (m.opc_wrapped.size() != kBlock || m.wrap_nonce.size() != kBlock)) {
        corrupt("the wrapped OPc or its nonce is not 16 bytes");
    }
    check_approval(m);
}

tpm::ObjectOptions object_options(const MidApproval& approval,
                                  const std::optional<SecretBytes>& auth_value) {
    return {mid_auth_policy(approval.authority, approval.policy_ref),
            auth_value.value_or(SecretBytes{}), false};
}

} // namespace

const char* to_string(ComputationMode mode) noexcept {
    switch (mode) {
    case ComputationMode::TpmEcb:
        return "tpm-ecb";
    case ComputationMode::TpmCfb:
        return "tpm-cfb";
    case ComputationMode::Sealed:
        return "sealed";
    }
    return "unknown";
}

std::optional<ComputationMode> parse_computation_mode(std::string_view text) noexcept {
    for (const ComputationMode m :
         {ComputationMode::TpmEcb, ComputationMode::TpmCfb, ComputationMode::Sealed}) {
        if (text == to_string(m)) {
            return m;
        }
    }
    return std::nullopt;
}

ComputationMode choose_mode(const tpm::Capabilities& caps, Algorithm algorithm,
                            std::optional<ComputationMode> forced) {
    // TpmEcb needs CFB too: the OPc unwrapping command chains in CFB.
    const bool cfb = caps.encrypt_decrypt2 && caps.aes && caps.cfb;
    const bool ecb = cfb && caps.ecb;
    if (algorithm == Algorithm::Tuak) {
        if (forced && *forced != ComputationMode::Sealed) {
            invalid("computation-mode", "TUAK runs only in sealed mode");
        }
        return ComputationMode::Sealed;
    }
    if (forced) {
        if ((*forced == ComputationMode::TpmEcb && !ecb) ||
            (*forced == ComputationMode::TpmCfb && !cfb)) {
            invalid("computation-mode",
                    std::string("this TPM cannot do ") + to_string(*forced) +
                        " (it needs TPM2_EncryptDecrypt2 with AES-CFB" +
                        (*forced == ComputationMode::TpmEcb ? " and ECB)" : ")"));
        }
        return *forced;
    }
    return ecb ? ComputationMode::TpmEcb : cfb ? ComputationMode::TpmCfb : ComputationMode::Sealed;
}

Bytes approved_policy_for(const tpm::PcrValues& pcrs, bool auth_value) {
    tpm::PolicyDigest d;
    d.pcr(tpm::selection_of(pcrs), tpm::pcr_composite_digest(pcrs));
    if (auth_value) {
        d.auth_value();
    }
    return d.value();
}

Bytes mid_auth_policy(const TPM2B_PUBLIC& authority, ByteView policy_ref) {
    return tpm::PolicyDigest()
        .authorize(tpm::object_name(authority.publicArea), policy_ref)
        .value();
}

MidApproval approve(const tpm::PolicyAuthority& authority, tpm::PcrValues pcrs, bool auth_value,
                    Bytes policy_ref) {
    MidApproval a;
    a.approved_policy = approved_policy_for(pcrs, auth_value);
    a.pcrs = std::move(pcrs);
    a.auth_value = auth_value;
    a.policy_ref = std::move(policy_ref);
    a.authority = authority.tpm_public();
    a.signature = authority.sign_policy(a.approved_policy, a.policy_ref);
    return a;
}

std::unique_ptr<MidAlgorithm> make_mid_algorithm(tpm::Context& ctx, ESYS_TR srk,
                                                 const MidKeyMaterial& material,
                                                 tpm::TicketCache& tickets, WarmState* warm) {
    check_material(material);
    return std::make_unique<MidAlgorithmImpl>(ctx, srk, material, tickets, warm);
}

MidKeyMaterial create_milenage_mid(tpm::Context& ctx, ESYS_TR srk, const SecretBytes& k,
                                   const SecretBytes& opc, bool opc_is_op,
                                   const MidCreateOptions& options, const MidApproval& approval,
                                   tpm::TicketCache& tickets) {
    if (k.size() != 16) {
        invalid("k", "must be 16 bytes for Milenage");
    }
    if (opc.size() != 16) {
        invalid(opc_is_op ? "op" : "opc", "must be 16 bytes");
    }
    MidKeyMaterial m;
    m.algorithm = Algorithm::Milenage;
    m.mode = options.mode;
    m.approval = approval;
    m.auth_value = options.auth_value;
    const tpm::ObjectOptions object = object_options(approval, options.auth_value);
    try {
        if (m.mode == ComputationMode::Sealed) {
            // K is used in software at every computation in this mode anyway.
            usim::Opc o(opc.view());
            if (opc_is_op) {
                usim::SoftwareAes128 aes(k.view());
                usim::Block op{};
                std::copy_n(opc.data(), kBlock, op.begin());
                o = usim::Milenage::compute_opc(aes, op);
            }
            if (options.separate_opc_object) {
                m.key = tpm::create_sealed_data(ctx, srk, k, object);
                scrub_create_inputs(ctx, srk);
                m.opc = tpm::create_sealed_data(ctx, srk, SecretBytes(o.view()), object);
            } else {
                SecretBytes both(2 * kBlock);
                std::copy(k.view().begin(), k.view().end(), both.data());
                std::copy(o.view().begin(), o.view().end(), both.data() + kBlock);
                m.key = tpm::create_sealed_data(ctx, srk, both, object);
            }
            scrub_create_inputs(ctx, srk);
            return m;
        }
        m.key = tpm::create_aes_key(ctx, srk, k, object);
        scrub_create_inputs(ctx, srk);
    } catch (const tpm::TpmError& e) {
        tpm_failure(e);
    }

    const bool wrap = !options.separate_opc_object;
    usim::Opc o(opc.view());
    if (opc_is_op || wrap) {
        // One TPM use for E_K(OP) and the wrapping pad E_K(N).
        check_approval(m);
        if (wrap) {
            m.wrap_nonce = random_bytes(kBlock);
        }
        SecretBytes blocks;
        if (opc_is_op) {
            blocks = SecretBytes(opc.view());
        }
        if (wrap) {
            const std::size_t at = blocks.size();
            blocks.resize(at + kBlock);
            std::copy(m.wrap_nonce.begin(), m.wrap_nonce.end(), blocks.data() + at);
        }
        const Binding b{ctx, srk, m, tickets, nullptr};
        MidSession session(b);
        const tpm::Handle key = session.load(m.key);
        const SecretBytes e = session.encrypt_blocks(key, blocks.view(), m.mode);
        if (opc_is_op) {
            xor_into(o.span(), opc.view(), e.view().first(kBlock));
        }
        if (wrap) {
            m.opc_wrapped.resize(kBlock);
            xor_into(m.opc_wrapped, o.view(), e.view().last(kBlock));
        }
    }
    if (options.separate_opc_object) {
        try {
            m.opc = tpm::create_sealed_data(ctx, srk, SecretBytes(o.view()), object);
            scrub_create_inputs(ctx, srk);
        } catch (const tpm::TpmError& e) {
            tpm_failure(e);
        }
    }
    return m;
}

MidKeyMaterial create_tuak_mid(tpm::Context& ctx, ESYS_TR srk, const SecretBytes& k,
                               const usim::Topc& topc, const usim::TuakParams& params,
                               const MidCreateOptions& options, const MidApproval& approval) {
    if (k.size() != 16 && k.size() != 32) {
        invalid("k", "must be 16 or 32 bytes for TUAK");
    }
    try {
        params.validate();
    } catch (const InvalidArgument& e) {
        invalid(e.argument(), e.what());
    }
    MidKeyMaterial m;
    m.algorithm = Algorithm::Tuak;
    m.tuak = params;
    m.mode = ComputationMode::Sealed;
    m.approval = approval;
    m.auth_value = options.auth_value;
    const tpm::ObjectOptions object = object_options(approval, options.auth_value);
    try {
        if (options.separate_opc_object) {
            m.key = tpm::create_sealed_data(ctx, srk, k, object);
            scrub_create_inputs(ctx, srk);
            m.opc = tpm::create_sealed_data(ctx, srk, SecretBytes(topc.view()), object);
        } else {
            SecretBytes both(k.size() + topc.size());
            std::copy(k.view().begin(), k.view().end(), both.data());
            std::copy(topc.view().begin(), topc.view().end(), both.data() + k.size());
            m.key = tpm::create_sealed_data(ctx, srk, both, object);
        }
        scrub_create_inputs(ctx, srk);
    } catch (const tpm::TpmError& e) {
        tpm_failure(e);
    }
    return m;
}

usim::Opc compute_opc_in_tpm(tpm::Context& ctx, ESYS_TR srk, const MidKeyMaterial& material,
                             tpm::TicketCache& tickets, const usim::Block& op) {
    if (material.algorithm != Algorithm::Milenage || material.mode == ComputationMode::Sealed) {
        invalid("computation-mode", "OPc is computed in the TPM only for a TPM-resident AES key");
    }
    check_approval(material);
    const Binding b{ctx, srk, material, tickets, nullptr};
    MidSession session(b);
    const tpm::Handle key = session.load(material.key);
    const SecretBytes e = session.encrypt_blocks(key, op, material.mode);
    usim::Opc opc;
    xor_into(opc.span(), op, e.view());
    return opc;
}

} // namespace tresim::te
