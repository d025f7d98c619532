#include "state_guard.hpp"

#include <openssl/evp.h>

#include "errors.hpp"

namespace tresim::te {

namespace {

constexpr const char* kEpochKey = "guard_epoch";
constexpr const char* kMacKey = "guard_mac";
constexpr const char* kPendingKey = "guard_pending";
// SQN updates since the epoch last moved: kept across restarts, or a daemon
// restarted more often than every sqn_interval authentications would never
// move the epoch for them.
constexpr const char* kSqnUpdatesKey = "guard_sqn_updates";
constexpr const char* kKeyPublic = "guard_key_public";
constexpr const char* kKeyPrivate = "guard_key_private";

struct MdCtxFree {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};

// SHA-256 over length-prefixed fields: unambiguous whatever the field contents.
class Hasher {
public:
    Hasher() : ctx_(EVP_MD_CTX_new()) {
        if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) {
            throw std::runtime_error("SHA-256 unavailable");
        }
    }
    void field(ByteView b) {
        std::uint8_t len[4];
        store_be(b.size(), len);
        EVP_DigestUpdate(ctx_.get(), len, 4);
        EVP_DigestUpdate(ctx_.get(), b.data(), b.size());
    }
    void field(const std::string& s) {
        field(ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
    }
    void field(std::int64_t v) {
        std::uint8_t b[8];
        store_be(static_cast<std::uint64_t>(v), b);
        field(ByteView(b, 8));
    }
    Bytes done() {
        Bytes out(32);
        unsigned int n = 0;
        EVP_DigestFinal_ex(ctx_.get(), out.data(), &n);
        return out;
    }

private:
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx_;
};

Bytes u64_bytes(std::uint64_t v) {
    Bytes b(8);
    store_be(v, b);
    return b;
}

} // namespace

StateGuard::StateGuard(tpm::Context& ctx, ESYS_TR srk, Registry& registry, const SecretBytes& auth,
                       unsigned sqn_interval, TPM2_HANDLE counter_index)
    : ctx_(ctx), registry_(registry), sqn_interval_(sqn_interval == 0 ? 1 : sqn_interval) {
    try {
        counter_.emplace(tpm::NvCounter::open_or_define(ctx, auth, counter_index, false));
    } catch (const tpm::NvMismatch& e) {
        throw TeError(ErrorCode::StateCorrupt,
                      std::string("the TPM's epoch counter has unexpected attributes: ") +
                          e.what());
    }
    auto pub = registry_.meta(kKeyPublic);
    auto priv = registry_.meta(kKeyPrivate);
    if (!pub || !priv) {
        // First start (or a state folder without a key): make one. verify_at_start
        // decides whether that is legitimate.
        const tpm::HmacKeyBlob blob = tpm::create_hmac_key(ctx, srk, auth);
        Transaction t(registry_.db());
        registry_.set_meta(kKeyPublic, blob.public_blob);
        registry_.set_meta(kKeyPrivate, blob.private_blob);
        t.commit();
        pub = blob.public_blob;
        priv = blob.private_blob;
        created_ = true;
    }
    try {
        key_.emplace(tpm::HmacKey::load(ctx, srk, tpm::HmacKeyBlob{*pub, *priv}, auth));
    } catch (const std::exception& e) {
        throw TeError(ErrorCode::StateCorrupt,
                      std::string("the state database's MAC key does not load: ") + e.what());
    }
}

Bytes StateGuard::state_digest() {
    Hasher h;
    auto mids = registry_.db().prepare(
        "SELECT idx, iccid, imsi, algorithm, params, mode, state, IFNULL(slot, -1), authority, "
        "has_pin, pin_retries, puk_retries, sqn FROM mids ORDER BY idx");
    while (mids.step()) {
        h.field(mids.column_int(0));
        for (int i : {1, 2, 3, 4, 5, 6}) {
            h.field(mids.column_text(i));
        }
        h.field(mids.column_int(7));
        h.field(mids.column_blob(8));
        h.field(mids.column_int(9));
        h.field(mids.column_int(10));
        h.field(mids.column_int(11));
        h.field(mids.column_blob(12));
    }
    auto objects =
        registry_.db().prepare("SELECT mid, role, public, private FROM objects ORDER BY mid, role");
    while (objects.step()) {
        h.field(objects.column_int(0));
        h.field(objects.column_text(1));
        h.field(objects.column_blob(2));
        h.field(objects.column_blob(3));
    }
    // The provisioning state (docs/protocol.md §3): the last accepted
    // instruction counter per signing key and the pending slot switches. Both
    // tables are empty on a TE that was never provisioned, so older states keep
    // their MAC.
    auto provisioning = registry_.db().prepare(
        "SELECT server, counter, instruction FROM provisioning ORDER BY server");
    while (provisioning.step()) {
        h.field(provisioning.column_text(0));
        h.field(provisioning.column_int(1));
        h.field(provisioning.column_text(2));
    }
    auto switches = registry_.db().prepare(
        "SELECT slot, mid, IFNULL(previous, -1), deadline FROM pending_switch ORDER BY slot");
    while (switches.step()) {
        for (int i : {0, 1, 2, 3}) {
            h.field(switches.column_int(i));
        }
    }
    return h.done();
}

Bytes StateGuard::mac_input(std::uint64_t epoch, std::uint64_t pending) {
    Bytes in = u64_bytes(epoch);
    const Bytes p = u64_bytes(pending);
    in.insert(in.end(), p.begin(), p.end());
    const Bytes d = state_digest();
    in.insert(in.end(), d.begin(), d.end());
    return in;
}

std::uint64_t StateGuard::stored_pending() {
    const auto p = registry_.meta(kPendingKey);
    return p && p->size() == 8 ? load_be(*p) : 0;
}

void StateGuard::write_stamp(std::uint64_t epoch, std::uint64_t pending) {
    registry_.set_meta(kEpochKey, u64_bytes(epoch));
    registry_.set_meta(kPendingKey, u64_bytes(pending));
    registry_.set_meta(kMacKey, key_->mac(mac_input(epoch, pending)));
}

GuardStatus StateGuard::verify_at_start() {
    GuardStatus st;
    const std::optional<std::uint64_t> counter = counter_->read();
    const auto stamped = registry_.meta(kEpochKey);
    const auto mac = registry_.meta(kMacKey);

    if (!stamped) {
        // Never stamped: only legitimate for an empty database on a TPM whose
        // counter was just defined, or for one that we set up but never used.
        if (!registry_.list().empty()) {
            throw TeError(ErrorCode::StateCorrupt,
                          "the state database has MIDs but no rollback stamp");
        }
        if (counter && !counter_->created() && !created_) {
            throw TeError(ErrorCode::RollbackDetected,
                          "the TPM's epoch counter is at " + std::to_string(*counter) +
                              " but the state database was never stamped: it is not this TE's "
                              "current state");
        }
        prepare(true);
        Transaction t(registry_.db());
        stamp();
        t.commit();
        st.fresh = true;
        st.epoch = epoch_;
        return st;
    }
    if (stamped->size() != 8 || !mac) {
        throw TeError(ErrorCode::StateCorrupt, "the state database's rollback stamp is malformed");
    }
    const std::uint64_t db_epoch = load_be(*stamped);
    const std::uint64_t pending = stored_pending();
    if (const auto n = registry_.meta(kSqnUpdatesKey); n && n->size() == 8) {
        sqn_updates_ = load_be(*n);
    }
    if (!key_->verify(mac_input(db_epoch, pending), *mac)) {
        throw TeError(ErrorCode::StateCorrupt,
                      "the state database's MAC does not verify: it was changed outside tresimd");
    }
    const std::uint64_t tpm_epoch = counter.value_or(0);
    if (tpm_epoch == db_epoch) {
        epoch_ = db_epoch;
    } else if (pending != 0 && tpm_epoch == pending && pending == db_epoch + 1) {
        // A crash after the counter moved but before the change committed: the
        // change is lost as a whole; the state is the old one at the new epoch.
        epoch_ = tpm_epoch;
        st.recovered_crash = true;
    } else {
        throw TeError(ErrorCode::RollbackDetected,
                      "the state database is at epoch " + std::to_string(db_epoch) +
                          " but the TPM's epoch counter is at " + std::to_string(tpm_epoch) +
                          ": an older copy of the state folder was restored");
    }
    if (pending != 0 || st.recovered_crash) {
        Transaction t(registry_.db());
        write_stamp(epoch_, 0);
        t.commit();
    }
    st.epoch = epoch_;
    return st;
}

void StateGuard::prepare(bool security) {
    if (pending_ != 0) {
        // The change prepared last time did not commit: the counter is at the
        // pending epoch, which the next stamp adopts.
        epoch_ = pending_;
        pending_ = 0;
    }
    bool bump = security || epoch_ == 0;
    if (!security) {
        ++sqn_updates_;
        bump = bump || sqn_updates_ % sqn_interval_ == 0;
    }
    if (!bump) {
        pending_ = 0;
        return;
    }
    sqn_updates_ = 0;
    const std::uint64_t next = epoch_ + 1;
    {
        Transaction t(registry_.db());
        write_stamp(epoch_, next);
        t.commit();
    }
    counter_->increment();
    ++increments_;
    const std::uint64_t now = counter_->read().value_or(0);
    if (now != next) {
        throw TeError(ErrorCode::RollbackDetected,
                      "the TPM's epoch counter moved to " + std::to_string(now) + ", expected " +
                          std::to_string(next) + ": someone else increments it");
    }
    pending_ = next;
}

void StateGuard::stamp() {
    if (pending_ != 0) {
        epoch_ = pending_;
        pending_ = 0;
    }
    registry_.set_meta(kSqnUpdatesKey, u64_bytes(sqn_updates_));
    write_stamp(epoch_, 0);
}

} // namespace tresim::te
