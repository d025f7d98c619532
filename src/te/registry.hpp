#pragma once
// The MID registry in the state database: one row per installed MID with its
// public description, lifecycle state, slot, SQN array and TPM object blobs.
// Nothing secret is stored here: the blobs are TPM-wrapped (only this TPM's SRK
// can load them). Every method runs inside the caller's Transaction.

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "db.hpp"
#include "lifecycle.hpp"
#include "mid_crypto.hpp"
#include "profile.hpp"
#include "tpm/objects.hpp"
#include "usim/aka.hpp"

namespace tresim::te {

struct MidRecord {
    std::int64_t index = 0; // stable: the D-Bus object /org/tresim1/mid/<index>
    std::string iccid;
    std::string imsi;
    unsigned mnc_length = 2;
    std::string label;
    std::string operator_name;
    Algorithm algorithm = Algorithm::Milenage;
    usim::TuakParams tuak;
    usim::Amf amf{};
    ComputationMode mode = ComputationMode::TpmCfb; // mid_crypto.hpp
    MidState state = MidState::Inactive;
    std::optional<unsigned> slot; // set while active (or suspended) in a slot
    std::optional<IsimIdentity> isim;
    std::optional<SuciConfig> suci;
    MidPolicy policy;
    bool has_pin = false;
    bool has_puk = false;
    Bytes pin_salt; // for stretch_pin (pin.hpp)
    unsigned pin_retries = 0;
    unsigned puk_retries = 0;
    Bytes authority; // the TPM name of the policy authority
    // The policyRef of its objects' PolicyAuthorize: only the authority's
    // approvals with this reference open them (empty for most MIDs).
    Bytes policy_ref;
    usim::SqnState sqn;
    std::int64_t created = 0; // Unix seconds
    std::int64_t updated = 0;
    // Remote provisioning: the JWK thumbprint of the key that signed the
    // install instruction; empty for a locally imported MID.
    std::string provisioned_by;
    // An ISIM-only MID (profile.hpp): the ICCID of the MID whose USIM function
    // it uses; empty when it has its own. Such a MID has no rows in `objects`,
    // and its algorithm, tuak, amf, mode and sqn are placeholders nothing reads.
    std::string functions_from;

    bool borrows_functions() const { return !functions_from.empty(); }
};

// Remote provisioning state (docs/protocol.md): per server signing key, the
// last accepted instruction; switches waiting for a confirmation; results the
// PS has not received yet. Values are JSON texts of te.hpp's structures.
struct ProvisioningRow {
    std::int64_t counter = 0;
    std::string instruction; // id
    std::string result;      // InstructionResult JSON
};

struct PendingSwitchRow {
    std::int64_t slot = 0;
    std::int64_t mid = 0;
    std::optional<std::int64_t> previous;
    std::int64_t deadline = 0;
    std::string server;
    std::int64_t counter = 0;
    std::string instruction; // id
};

class Registry {
public:
    explicit Registry(Db& db);

    // Creates the tables when absent (schema version in meta).
    void create_schema();

    std::int64_t insert(const MidRecord& mid);
    void update(const MidRecord& mid); // every column but index/created
    void remove(std::int64_t index);   // with its objects

    std::optional<MidRecord> find(std::int64_t index);
    std::optional<MidRecord> find_by_iccid(std::string_view iccid);
    std::vector<MidRecord> list();
    // The MID active (or suspended) in a slot, if any.
    std::optional<MidRecord> in_slot(unsigned slot);

    // Only the SQN array: the hot path after each successful authentication.
    void update_sqn(std::int64_t index, const usim::SqnState& sqn);

    void put_object(std::int64_t index, std::string_view role, const tpm::ObjectBlobs& blobs);
    std::optional<tpm::ObjectBlobs> object(std::int64_t index, std::string_view role);

    Db& db() noexcept { return db_; }

    // Approvals of platform states by policy authorities, stored as encoded
    // blobs (te.cpp), newest first. `approval_id` is what the authority signs,
    // SHA-256(approved policy || policyRef) (tpm::authorization_hash): one row
    // per distinct approval, so approvals of one state under two policyRefs
    // are both kept.
    void put_approval(ByteView authority_name, bool auth_value, ByteView approval_id,
                      ByteView encoded);
    std::vector<Bytes> approvals(ByteView authority_name, bool auth_value);

    std::optional<ProvisioningRow> provisioning(std::string_view server);
    void put_provisioning(std::string_view server, const ProvisioningRow& row);

    std::vector<PendingSwitchRow> pending_switches();
    void put_pending_switch(const PendingSwitchRow& row);
    void remove_pending_switch(std::int64_t slot);

    // (server, counter, result JSON)
    std::vector<std::tuple<std::string, std::int64_t, std::string>> late_results();
    void put_late_result(std::string_view server, std::int64_t counter, std::string_view result);
    void remove_late_result(std::string_view server, std::int64_t counter);

    // Key/value metadata (epoch, MAC, identity...).
    std::optional<Bytes> meta(std::string_view key);
    void set_meta(std::string_view key, ByteView value);

private:
    Db& db_;
};

// Serialisation of the SQN array: ind_bits, delta, age limit, then SEQ_MS(i) as
// 8-byte big-endian numbers.
Bytes encode_sqn(const usim::SqnState& s);
usim::SqnState decode_sqn(ByteView b); // throws TeError(StateCorrupt)

} // namespace tresim::te
