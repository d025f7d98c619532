// Remote provisioning in the TE (docs/protocol.md §3): MIDs delivered as
// duplication blobs, instructions executed atomically with their audit record
// and the per-server counter, switch-slot with confirmation and fallback, and
// the attestation the provisioning client presents (EK, AK, quotes).

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "approval_json.hpp"
#include "protocol/base64url.hpp"
#include "te.hpp"
#include "tpm/error.hpp"
#include "tpm/keys.hpp"
#include "tpm/policy.hpp"

namespace tresim::te {

namespace {

using nlohmann::json;

// The roles of te.cpp (the registry's object rows; keep them equal).
constexpr const char* kRoleKey = "key";
constexpr const char* kRoleOpcWrap = "opc-wrap";

constexpr const char* kAkPublicKey = "ak_public";
constexpr const char* kAkPrivateKey = "ak_private";

[[noreturn]] void invalid(const std::string& what) {
    throw TeError(ErrorCode::InvalidArgument, what);
}

const json& field(const json& body, const char* name) {
    if (!body.is_object() || !body.contains(name)) {
        invalid(std::string("body: ") + name + ": is missing");
    }
    return body.at(name);
}

std::string text_field(const json& body, const char* name) {
    const json& v = field(body, name);
    if (!v.is_string()) {
        invalid(std::string("body: ") + name + ": must be a string");
    }
    return v.get<std::string>();
}

unsigned unsigned_field(const json& body, const char* name) {
    const json& v = field(body, name);
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0 ||
        v.get<std::int64_t>() > 0xffffffffLL) {
        invalid(std::string("body: ") + name + ": must be a non-negative integer");
    }
    return v.get<unsigned>();
}

Bytes hex_field(const json& body, const char* name) {
    if (!body.contains(name)) {
        return {};
    }
    const json& v = body.at(name);
    if (!v.is_string()) {
        invalid(std::string("body: ") + name + ": must be a hex string");
    }
    try {
        return hex_decode(v.get<std::string>(), name);
    } catch (const InvalidArgument& e) {
        invalid(std::string("body: ") + e.what());
    }
}

MidApproval instruction_approval(const json& approval, const tpm::PcrSelection& selection) {
    if (!approval.is_object()) {
        invalid("body: approval: must be a JSON object");
    }
    ParsedApproval a = parse_approval(approval.dump(), selection, false);
    if (!a.approval) {
        invalid("body: approval: must be a complete approval");
    }
    return *a.approval;
}

constexpr const char* kProfileSecrets[] = {"k", "opc", "op", "pin", "puk", "top", "topc"};

// A public profile, validated by parse_profile: the secrets it must not carry
// are refused, then placeholders stand in for K and OPc/TOPc (they are
// dropped; the real ones arrive as TPM objects).
MidProfile parse_public_profile(ByteView text) {
    json j;
    try {
        j = json::parse(text.begin(), text.end());
    } catch (const json::exception&) {
        invalid("profile: is not JSON");
    }
    if (!j.is_object()) {
        invalid("profile: must be a JSON object");
    }
    for (const char* secret : kProfileSecrets) {
        if (j.contains(secret)) {
            invalid(std::string("profile: ") + secret +
                    ": a delivered profile must not carry secrets");
        }
    }
    if (j.contains("functions_from")) {
        invalid("profile: functions_from: ISIM-only MIDs are not provisioned remotely by this "
                "version");
    }
    const bool tuak = j.value("algorithm", std::string()) == "tuak";
    j["k"] = std::string(32, '0');
    j["opc"] = std::string(tuak ? 64 : 32, '0');
    const std::string completed = j.dump();
    MidProfile p = parse_profile(
        ByteView(reinterpret_cast<const std::uint8_t*>(completed.data()), completed.size()));
    p.k = SecretBytes();
    p.opc = SecretBytes();
    if (p.policy.pin_required) {
        invalid("profile: policy: pin_required: PIN-protected MIDs cannot be provisioned");
    }
    return p;
}

// The public area the delivered key object must have: the MID template of
// objects.hpp for an imported object, with the authority's PolicyAuthorize.
void check_delivered_public(const TPM2B_PUBLIC& delivered, ComputationMode mode,
                            const TPM2B_PUBLIC& authority) {
    const Bytes policy = mid_auth_policy(authority, {});
    TPM2B_PUBLIC expected = mode == ComputationMode::Sealed
                                ? tpm::sealed_data_template(policy, tpm::ObjectOrigin::Imported)
                                : tpm::aes_key_template(policy, tpm::ObjectOrigin::Imported);
    TPM2B_PUBLIC got = delivered;
    got.publicArea.unique = expected.publicArea.unique; // the key's own; not compared
    const bool no_da = (got.publicArea.objectAttributes & TPMA_OBJECT_NODA) != 0;
    if (no_da) {
        expected = mode == ComputationMode::Sealed
                       ? tpm::sealed_data_template(policy, tpm::ObjectOrigin::Imported, true)
                       : tpm::aes_key_template(policy, tpm::ObjectOrigin::Imported, true);
        got.publicArea.unique = expected.publicArea.unique;
    }
    if (tpm::marshal_public(got) != tpm::marshal_public(expected)) {
        invalid(std::string("key: the delivered object is not a ") +
                (mode == ComputationMode::Sealed ? "sealed data" : "AES key") +
                " object bound to the approval's authority (PolicyAuthorize)");
    }
}

std::string nick_of_current() {
    try {
        throw;
    } catch (const TeError& e) {
        return nick(e.code());
    } catch (const InvalidArgument&) {
        return nick(ErrorCode::InvalidArgument);
    } catch (const tpm::TpmError&) {
        return nick(ErrorCode::TpmFailure);
    } catch (const DbError&) {
        return nick(ErrorCode::StateCorrupt);
    } catch (...) {
        return "Internal";
    }
}

json instruction_json(const Instruction& in) {
    return {{"server", in.server}, {"counter", in.counter}, {"id", in.id}, {"operation", in.op}};
}

} // namespace

json InstructionResult::to_json() const {
    json j = {{"id", id}, {"counter", counter}, {"status", status}, {"fallback", fallback}};
    if (!error.empty()) {
        j["error"] = error;
    }
    if (!message.empty()) {
        j["message"] = message;
    }
    return j;
}

InstructionResult InstructionResult::from_json(const json& j) {
    InstructionResult r;
    r.id = j.value("id", std::string());
    r.counter = j.value("counter", std::uint64_t{0});
    r.status = j.value("status", std::string("ok"));
    r.error = j.value("error", std::string());
    r.message = j.value("message", std::string());
    r.fallback = j.value("fallback", false);
    r.mids = j.value("mids", std::vector<std::int64_t>());
    return r;
}

// What one instruction did, filled in by run_operation.
struct TrustedEnvironment::InstructionRun {
    std::vector<std::int64_t> mids;
    std::vector<std::int64_t> deleted;
};

// ---- install ------------------------------------------------------------------

void TrustedEnvironment::store_approval_locked(const MidApproval& approval,
                                               const json& instruction) {
    if (approval.auth_value) {
        invalid("approval: PolicyAuthValue approvals are not for provisioned MIDs");
    }
    if (approved_policy_for(approval.pcrs, false) != approval.approved_policy) {
        invalid("approval: its policy digest is not the policy of its PCR values");
    }
    try {
        const TPMT_TK_VERIFIED ticket =
            tpm::verify_policy_signature(*ctx_, approval.authority, approval.approved_policy,
                                         approval.policy_ref, approval.signature);
        tickets_.put(tpm::object_name(approval.authority.publicArea), approval.approved_policy,
                     approval.policy_ref, ticket);
    } catch (const tpm::TpmError& e) {
        throw TeError(ErrorCode::PolicyDenied,
                      std::string("approval: the signature does not verify: ") + e.what());
    }
    current_approval_.clear();
    put_approval_locked(approval, tpm::read_pcrs(*ctx_, selection_),
                        {{"instruction", instruction}});
}

std::int64_t TrustedEnvironment::install_locked(ByteView public_profile, ComputationMode mode,
                                                const tpm::DuplicationBlob& key,
                                                ByteView opc_wrapped, ByteView wrap_nonce,
                                                const MidApproval& approval,
                                                const std::string& server,
                                                const json& instruction) {
    const MidProfile p = parse_public_profile(public_profile);
    if (registry_->find_by_iccid(p.iccid)) {
        throw TeError(ErrorCode::AlreadyExists, "a MID with ICCID " + p.iccid + " is installed");
    }
    if (p.algorithm == Algorithm::Tuak && mode != ComputationMode::Sealed) {
        invalid("mode: TUAK MIDs are delivered sealed");
    }
    (void)choose_mode(caps_, p.algorithm, mode); // InvalidArgument when this TPM cannot
    const bool tpm_mode = mode != ComputationMode::Sealed;
    if (tpm_mode && (opc_wrapped.size() != 16 || wrap_nonce.size() != 16)) {
        invalid("opc_wrapped: and wrap_nonce must be 16 bytes each in TPM modes");
    }
    if (!tpm_mode && (!opc_wrapped.empty() || !wrap_nonce.empty())) {
        invalid("opc_wrapped: sealed MIDs carry OPc in the sealed object, not wrapped");
    }
    TPM2B_PUBLIC delivered{};
    try {
        delivered = tpm::unmarshal_public(key.object_public, "key");
    } catch (const InvalidArgument& e) {
        invalid(std::string("key: ") + e.what());
    }
    check_delivered_public(delivered, mode, approval.authority);

    tpm::ObjectBlobs blobs;
    try {
        blobs = tpm::import_duplicate(*ctx_, srk_.handle, key);
    } catch (const tpm::TpmError& e) {
        if (e.is(TPM2_RC_INTEGRITY) || e.is(TPM2_RC_ECC_POINT) || e.is(TPM2_RC_VALUE) ||
            e.is(TPM2_RC_SIZE)) {
            invalid(std::string("key: the duplication blob was not made for this TPM's SRK (") +
                    e.what() + ")");
        }
        throw TeError(ErrorCode::TpmFailure, std::string("importing the MID key: ") + e.what());
    } catch (const InvalidArgument& e) {
        invalid(std::string("key: ") + e.what());
    }

    store_approval_locked(approval, instruction);

    MidRecord m;
    m.iccid = p.iccid;
    m.imsi = p.imsi;
    m.mnc_length = p.mnc_length;
    m.label = p.label;
    m.operator_name = p.operator_name;
    m.algorithm = p.algorithm;
    m.tuak = p.tuak;
    m.amf = p.amf;
    m.mode = mode;
    m.state = MidState::Inactive;
    m.isim = p.isim;
    m.suci = p.suci;
    m.policy = p.policy;
    m.authority = tpm::object_name(approval.authority.publicArea);
    m.policy_ref = approval.policy_ref;
    m.sqn =
        p.sqn ? usim::SqnState::from_highest(*p.sqn, p.sqn_config) : usim::SqnState(p.sqn_config);
    m.provisioned_by = server;

    const std::int64_t index = registry_->insert(m);
    registry_->put_object(index, kRoleKey, blobs);
    if (tpm_mode) {
        registry_->put_object(index, kRoleOpcWrap,
                              {Bytes(wrap_nonce.begin(), wrap_nonce.end()),
                               Bytes(opc_wrapped.begin(), opc_wrapped.end())});
    }
    audit_->append(AuditType::Install, m.iccid,
                   {{"index", index},
                    {"imsi", m.imsi},
                    {"algorithm", to_string(m.algorithm)},
                    {"mode", to_string(m.mode)},
                    {"source", "provisioned"},
                    {"instruction", instruction}});
    return index;
}

std::int64_t TrustedEnvironment::install_provisioned(ByteView public_profile, ComputationMode mode,
                                                     const tpm::DuplicationBlob& key,
                                                     ByteView opc_wrapped, ByteView wrap_nonce,
                                                     const MidApproval& approval,
                                                     const std::string& server) {
    std::lock_guard lock(mutex_);
    warm_.release(); // needs TPM slots, or changes what is kept
    guard_->prepare(true);
    Transaction t(*db_);
    const std::int64_t index = install_locked(public_profile, mode, key, opc_wrapped, wrap_nonce,
                                              approval, server, json::object());
    guard_->stamp();
    t.commit();
    audit_->anchor();
    return index;
}

// ---- instructions -----------------------------------------------------------------

void TrustedEnvironment::set_state_locked(MidRecord& mid, LifecycleEvent event,
                                          std::optional<unsigned> slot, json details) {
    const auto next = next_state(mid.state, event);
    if (!next) {
        throw TeError(ErrorCode::IllegalTransition, std::string("cannot ") + to_string(event) +
                                                        " a MID that is " + to_string(mid.state));
    }
    warm_.release(); // a MID leaving (or entering) active keeps nothing loaded
    details["event"] = to_string(event);
    details["from"] = to_string(mid.state);
    details["state"] = to_string(*next);
    mid.state = *next;
    if (*next == MidState::Active && slot) {
        mid.slot = slot;
    } else if (*next == MidState::Inactive || *next == MidState::Blocked) {
        mid.slot.reset();
    }
    try {
        registry_->update(mid);
    } catch (const DbError&) {
        throw TeError(ErrorCode::SlotOccupied,
                      "slot " + std::to_string(slot.value_or(0)) + " already has an active MID");
    }
    audit_->append(AuditType::LifecycleChange, mid.iccid, details);
}

void TrustedEnvironment::run_operation(const Instruction& in, InstructionRun& run,
                                       std::int64_t now) {
    const json ij = instruction_json(in);
    const json& body = in.body;
    if (!body.is_object()) {
        invalid("body: must be a JSON object");
    }
    auto provisioned_mid = [&]() {
        const std::string iccid = text_field(body, "iccid");
        auto m = registry_->find_by_iccid(iccid);
        if (!m) {
            throw TeError(ErrorCode::UnknownMid, "no MID with ICCID " + iccid);
        }
        if (m->provisioned_by.empty()) {
            throw TeError(ErrorCode::PolicyDenied,
                          "MID " + iccid + " was imported locally: a server cannot manage it");
        }
        return *m;
    };
    auto check_slot = [&](unsigned slot) {
        if (slot >= config_.slots) {
            invalid("body: slot: must be below " + std::to_string(config_.slots));
        }
    };
    auto drop_switches_of = [&](std::int64_t index) {
        for (const PendingSwitchRow& r : registry_->pending_switches()) {
            if (r.mid == index || r.previous == index) {
                registry_->remove_pending_switch(r.slot);
            }
        }
    };

    if (in.op == "install") {
        const auto mode = parse_computation_mode(text_field(body, "mode"));
        if (!mode) {
            invalid("body: mode: must be tpm-ecb, tpm-cfb or sealed");
        }
        const json& profile = field(body, "profile");
        if (!profile.is_object()) {
            invalid("body: profile: must be a JSON object");
        }
        const std::string profile_text = profile.dump();
        const std::string key_text = text_field(body, "key");
        Bytes key_bytes;
        try {
            key_bytes = protocol::b64url_decode(key_text, "key");
        } catch (const InvalidArgument& e) {
            invalid(std::string("body: ") + e.what());
        }
        tpm::DuplicationBlob blob;
        try {
            blob = tpm::DuplicationBlob::unmarshal(key_bytes);
        } catch (const InvalidArgument& e) {
            invalid(std::string("body: key: ") + e.what());
        }
        const MidApproval approval = instruction_approval(field(body, "approval"), selection_);
        const std::int64_t index =
            install_locked(ByteView(reinterpret_cast<const std::uint8_t*>(profile_text.data()),
                                    profile_text.size()),
                           *mode, blob, hex_field(body, "opc_wrapped"),
                           hex_field(body, "wrap_nonce"), approval, in.server, ij);
        run.mids.push_back(index);
        if (body.contains("slot")) {
            const unsigned slot = unsigned_field(body, "slot");
            check_slot(slot);
            if (auto other = registry_->in_slot(slot)) {
                throw TeError(ErrorCode::SlotOccupied,
                              "slot " + std::to_string(slot) + " already has MID " +
                                  std::to_string(other->index) + " active");
            }
            MidRecord m = *registry_->find(index);
            set_state_locked(m, LifecycleEvent::Activate, slot,
                             {{"slot", slot}, {"instruction", ij}});
        }
    } else if (in.op == "activate") {
        MidRecord m = provisioned_mid();
        const unsigned slot = unsigned_field(body, "slot");
        check_slot(slot);
        if (auto other = registry_->in_slot(slot); other && other->index != m.index) {
            throw TeError(ErrorCode::SlotOccupied, "slot " + std::to_string(slot) +
                                                       " already has MID " +
                                                       std::to_string(other->index) + " active");
        }
        set_state_locked(m, LifecycleEvent::Activate, slot, {{"slot", slot}, {"instruction", ij}});
        run.mids.push_back(m.index);
    } else if (in.op == "deactivate") {
        MidRecord m = provisioned_mid();
        drop_switches_of(m.index);
        set_state_locked(m, LifecycleEvent::Deactivate, std::nullopt, {{"instruction", ij}});
        run.mids.push_back(m.index);
    } else if (in.op == "delete") {
        MidRecord m = provisioned_mid();
        if (!next_state(m.state, LifecycleEvent::Delete)) {
            throw TeError(ErrorCode::IllegalTransition,
                          std::string("cannot delete a MID that is ") + to_string(m.state) +
                              ": deactivate it first");
        }
        drop_switches_of(m.index);
        registry_->remove(m.index);
        audit_->append(AuditType::Deletion, m.iccid,
                       {{"index", m.index},
                        {"imsi", m.imsi},
                        {"from", to_string(m.state)},
                        {"instruction", ij}});
        run.mids.push_back(m.index);
        run.deleted.push_back(m.index);
    } else if (in.op == "update") {
        MidRecord m = provisioned_mid();
        for (const auto& [key, value] : body.items()) {
            if (key != "iccid" && key != "label" && key != "operator" && key != "suci" &&
                key != "isim") {
                invalid("body: " + key + ": is not a public field update can change");
            }
        }
        // The new values go through the profile's validation.
        json profile = {{"iccid", m.iccid},
                        {"imsi", m.imsi},
                        {"mnc_length", m.mnc_length},
                        {"algorithm", to_string(m.algorithm)},
                        {"amf", hex_encode(m.amf)},
                        {"label", body.value("label", m.label)},
                        {"operator", body.value("operator", m.operator_name)}};
        for (const char* f : {"suci", "isim"}) {
            if (body.contains(f)) {
                profile[f] = body.at(f);
            }
        }
        const std::string text = profile.dump();
        const MidProfile p = parse_public_profile(
            ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
        json changed = json::array();
        if (body.contains("label")) {
            m.label = p.label;
            changed.push_back("label");
        }
        if (body.contains("operator")) {
            m.operator_name = p.operator_name;
            changed.push_back("operator");
        }
        if (body.contains("suci")) {
            m.suci = p.suci;
            changed.push_back("suci");
        }
        if (body.contains("isim")) {
            m.isim = p.isim;
            changed.push_back("isim");
        }
        registry_->update(m);
        audit_->append(AuditType::PolicyUpdate, m.iccid,
                       {{"what", "public-fields"}, {"fields", changed}, {"instruction", ij}});
        run.mids.push_back(m.index);
    } else if (in.op == "policy-update") {
        store_approval_locked(instruction_approval(field(body, "approval"), selection_), ij);
    } else if (in.op == "switch-slot") {
        MidRecord target = provisioned_mid();
        const unsigned slot = unsigned_field(body, "slot");
        check_slot(slot);
        unsigned within =
            body.contains("confirm_within") ? unsigned_field(body, "confirm_within") : 0;
        if (within == 0) {
            within = config_.confirm_within;
        }
        for (const PendingSwitchRow& r : registry_->pending_switches()) {
            if (r.slot == static_cast<std::int64_t>(slot)) {
                throw TeError(ErrorCode::IllegalTransition,
                              "slot " + std::to_string(slot) +
                                  " has a switch waiting for its confirmation");
            }
        }
        if (target.state != MidState::Inactive) {
            throw TeError(ErrorCode::IllegalTransition,
                          std::string("cannot switch to a MID that is ") + to_string(target.state));
        }
        std::optional<std::int64_t> previous;
        if (auto occupant = registry_->in_slot(slot)) {
            previous = occupant->index;
            set_state_locked(*occupant, LifecycleEvent::Deactivate, std::nullopt,
                             {{"reason", "switch-slot"}, {"instruction", ij}});
            run.mids.push_back(occupant->index);
        }
        set_state_locked(target, LifecycleEvent::Activate, slot,
                         {{"slot", slot},
                          {"reason", "switch-slot"},
                          {"confirm_within", within},
                          {"instruction", ij}});
        run.mids.push_back(target.index);
        PendingSwitchRow row;
        row.slot = slot;
        row.mid = target.index;
        row.previous = previous;
        row.deadline = now + static_cast<std::int64_t>(within);
        row.server = in.server;
        row.counter = static_cast<std::int64_t>(in.counter);
        row.instruction = in.id;
        registry_->put_pending_switch(row);
    } else {
        invalid("op: unknown operation \"" + in.op.substr(0, 40) + "\"");
    }
}

std::optional<ProvisioningState> TrustedEnvironment::provisioning_state(const std::string& server) {
    std::lock_guard lock(mutex_);
    const auto row = registry_->provisioning(server);
    if (!row) {
        return std::nullopt;
    }
    ProvisioningState s;
    s.counter = static_cast<std::uint64_t>(row->counter);
    s.id = row->instruction;
    try {
        s.result = InstructionResult::from_json(json::parse(row->result));
    } catch (const json::exception&) {
        throw TeError(ErrorCode::StateCorrupt, "a stored instruction result is unreadable");
    }
    return s;
}

void TrustedEnvironment::record_refusal(const std::string& server,
                                        const InstructionResult& refusal) {
    std::lock_guard lock(mutex_);
    audit_->record(AuditType::InstructionRefused, std::nullopt,
                   {{"server", server},
                    {"id", refusal.id.substr(0, 128)},
                    {"counter", refusal.counter},
                    {"reason", refusal.error},
                    {"message", refusal.message.substr(0, 300)}});
}

void TrustedEnvironment::record_platform_validation(const std::string& server, bool validated,
                                                    const std::string& reason,
                                                    const std::string& message) {
    std::lock_guard lock(mutex_);
    audit_->record(AuditType::PlatformValidation, std::nullopt,
                   {{"server", server.substr(0, 300)},
                    {"validated", validated},
                    {"reason", reason.substr(0, 64)},
                    {"message", message.substr(0, 300)}});
}

InstructionResult TrustedEnvironment::execute_instruction(const Instruction& in, std::int64_t now) {
    std::lock_guard lock(mutex_);
    warm_.release(); // needs TPM slots, or changes what is kept
    InstructionResult result;
    result.id = in.id;
    result.counter = in.counter;
    if (const auto last = provisioning_state(in.server); last && in.counter <= last->counter) {
        if (in.counter == last->counter && in.id == last->id) {
            return last->result; // executed already: the same answer, nothing twice
        }
        result.status = "refused";
        result.error = "replayed";
        result.message = "counter " + std::to_string(in.counter) +
                         " is not greater than the last accepted " + std::to_string(last->counter);
        record_refusal(in.server, result);
        return result;
    }

    InstructionRun run;
    bool done = false;
    try {
        guard_->prepare(true);
        Transaction t(*db_);
        run_operation(in, run, now);
        result.mids = run.mids;
        json stored = result.to_json();
        stored["mids"] = run.mids;
        registry_->put_provisioning(in.server,
                                    {static_cast<std::int64_t>(in.counter), in.id, stored.dump()});
        // Kept until the PS has the result (clear_late_result): a result lost
        // with a cut connection or a crash is reported in the next session.
        registry_->put_late_result(in.server, static_cast<std::int64_t>(in.counter),
                                   result.to_json().dump());
        guard_->stamp();
        t.commit();
        done = true;
    } catch (...) {
        result.status = "failed";
        result.error = nick_of_current();
        try {
            throw;
        } catch (const std::exception& e) {
            result.message = e.what();
        } catch (...) {
            result.message = "unknown failure";
        }
        result.mids.clear();
    }
    if (done) {
        audit_->anchor();
        for (const std::int64_t index : run.deleted) {
            unlocked_.erase(index);
        }
        current_approval_.clear();
        return result;
    }
    // The operation left nothing behind; the counter is consumed with its result,
    // so the same instruction is answered, never executed later.
    guard_->prepare(true);
    Transaction t(*db_);
    registry_->put_provisioning(
        in.server, {static_cast<std::int64_t>(in.counter), in.id, result.to_json().dump()});
    registry_->put_late_result(in.server, static_cast<std::int64_t>(in.counter),
                               result.to_json().dump());
    audit_->append(AuditType::InstructionRefused, std::nullopt,
                   {{"server", in.server},
                    {"id", in.id.substr(0, 128)},
                    {"counter", in.counter},
                    {"operation", in.op.substr(0, 40)},
                    {"reason", "failed"},
                    {"error", result.error},
                    {"message", result.message.substr(0, 300)}});
    guard_->stamp();
    t.commit();
    audit_->anchor();
    return result;
}

// ---- switch-slot confirmation and fallback -------------------------------------

std::vector<PendingSwitch> TrustedEnvironment::pending_switches() {
    std::lock_guard lock(mutex_);
    std::vector<PendingSwitch> out;
    for (const PendingSwitchRow& r : registry_->pending_switches()) {
        out.push_back({static_cast<unsigned>(r.slot), r.mid, r.previous, r.deadline, r.server,
                       static_cast<std::uint64_t>(r.counter), r.instruction});
    }
    return out;
}

void TrustedEnvironment::confirm_activation(std::int64_t index) {
    std::lock_guard lock(mutex_);
    const MidRecord m = require(index);
    for (const PendingSwitchRow& r : registry_->pending_switches()) {
        if (r.mid == index) {
            guard_->prepare(true);
            Transaction t(*db_);
            registry_->remove_pending_switch(r.slot);
            audit_->append(AuditType::LifecycleChange, m.iccid,
                           {{"event", "confirm"}, {"slot", r.slot}, {"state", to_string(m.state)}});
            guard_->stamp();
            t.commit();
            audit_->anchor();
            return;
        }
    }
    throw TeError(ErrorCode::InvalidArgument,
                  "MID " + std::to_string(index) + " has no activation waiting for confirmation");
}

std::vector<PendingSwitch> TrustedEnvironment::expire_switches(std::int64_t now) {
    std::lock_guard lock(mutex_);
    std::vector<PendingSwitch> done;
    for (const PendingSwitchRow& r : registry_->pending_switches()) {
        if (r.deadline > now) {
            continue;
        }
        guard_->prepare(true);
        Transaction t(*db_);
        const json why = {{"reason", "fallback"}, {"slot", r.slot}};
        if (auto m = registry_->find(r.mid);
            m && (m->state == MidState::Active || m->state == MidState::Suspended) &&
            m->slot == static_cast<unsigned>(r.slot)) {
            set_state_locked(*m, LifecycleEvent::Deactivate, std::nullopt, why);
        }
        if (r.previous) {
            if (auto p = registry_->find(*r.previous);
                p && p->state == MidState::Inactive && !registry_->in_slot(r.slot)) {
                set_state_locked(*p, LifecycleEvent::Activate, static_cast<unsigned>(r.slot), why);
            }
        }
        registry_->remove_pending_switch(r.slot);
        InstructionResult result;
        result.id = r.instruction;
        result.counter = static_cast<std::uint64_t>(r.counter);
        result.status = "ok";
        result.fallback = true;
        result.message = "not confirmed in time: slot " + std::to_string(r.slot) +
                         " is back on the previous MID";
        if (auto last = registry_->provisioning(r.server); last && last->counter == r.counter) {
            registry_->put_provisioning(
                r.server, {last->counter, last->instruction, result.to_json().dump()});
        }
        registry_->put_late_result(r.server, r.counter, result.to_json().dump());
        guard_->stamp();
        t.commit();
        audit_->anchor();
        done.push_back({static_cast<unsigned>(r.slot), r.mid, r.previous, r.deadline, r.server,
                        static_cast<std::uint64_t>(r.counter), r.instruction});
    }
    return done;
}

std::vector<LateResult> TrustedEnvironment::late_results() {
    std::lock_guard lock(mutex_);
    std::vector<LateResult> out;
    for (const auto& [server, counter, text] : registry_->late_results()) {
        (void)counter;
        try {
            out.push_back({server, InstructionResult::from_json(json::parse(text))});
        } catch (const json::exception&) {
            throw TeError(ErrorCode::StateCorrupt, "a stored late result is unreadable");
        }
    }
    return out;
}

void TrustedEnvironment::clear_late_result(const std::string& server, std::uint64_t counter) {
    std::lock_guard lock(mutex_);
    Transaction t(*db_);
    registry_->remove_late_result(server, static_cast<std::int64_t>(counter));
    t.commit();
}

// ---- attestation ------------------------------------------------------------------

tpm::Ak TrustedEnvironment::load_ak_locked() {
    auto pub = registry_->meta(kAkPublicKey);
    auto priv = registry_->meta(kAkPrivateKey);
    tpm::AkBlob blob;
    if (pub && priv) {
        blob = {*pub, *priv};
    } else {
        blob = tpm::create_ak(*ctx_, srk_);
        Transaction t(*db_);
        registry_->set_meta(kAkPublicKey, blob.pub);
        registry_->set_meta(kAkPrivateKey, blob.priv);
        t.commit();
    }
    return tpm::load_ak(*ctx_, srk_, blob);
}

tpm::Ek TrustedEnvironment::create_ek_locked() {
    return tpm::create_ek(*ctx_, keys_ ? keys_->ek_type : tpm::EkType::Rsa2048);
}

AttestationKeys TrustedEnvironment::attestation_keys() {
    std::lock_guard lock(mutex_);
    warm_.release(); // needs TPM slots, or changes what is kept
    if (keys_) {
        return *keys_;
    }
    try {
        AttestationKeys k;
        const tpm::EkCertificates certs = tpm::read_ek_certificates(*ctx_);
        // The RSA EK unless only an ECC P-256 certificate exists (the PS checks
        // that the certificate certifies exactly this key).
        k.ek_type = !certs.rsa2048 && certs.ecc_p256 ? tpm::EkType::EccP256 : tpm::EkType::Rsa2048;
        k.ek_certificate = k.ek_type == tpm::EkType::Rsa2048 ? certs.rsa2048 : certs.ecc_p256;
        k.ek_chain = certs.chain;
        {
            const tpm::Ek ek = tpm::create_ek(*ctx_, k.ek_type);
            k.ek_public = ek.pub;
        }
        const tpm::Ak ak = load_ak_locked();
        k.ak_public = ak.pub;
        k.srk_public = srk_.pub;
        k.identity = tpm::te_identity(k.ek_public.publicArea);
        keys_ = k;
        return k;
    } catch (const tpm::TpmError& e) {
        throw TeError(ErrorCode::TpmFailure, std::string("attestation keys: ") + e.what());
    }
}

SecretBytes TrustedEnvironment::activate_credential(ByteView credential_blob, ByteView secret) {
    std::lock_guard lock(mutex_);
    warm_.release(); // needs TPM slots, or changes what is kept
    (void)attestation_keys();
    try {
        const tpm::Ak ak = load_ak_locked();
        const tpm::Ek ek = create_ek_locked();
        return tpm::activate_credential(*ctx_, ak, ek, credential_blob, secret);
    } catch (const tpm::TpmError& e) {
        throw TeError(ErrorCode::TpmFailure, std::string("ActivateCredential: ") + e.what());
    }
}

QuoteWithPcrs TrustedEnvironment::quote(ByteView qualifying_data,
                                        const std::optional<tpm::PcrSelection>& selection) {
    std::lock_guard lock(mutex_);
    warm_.release(); // needs TPM slots, or changes what is kept
    const tpm::PcrSelection& which = selection ? *selection : selection_;
    try {
        const tpm::Ak ak = load_ak_locked();
        // A PCR may be extended between the read and the quote: read again
        // until the values are the ones the quote covers.
        for (int attempt = 0; attempt < 3; ++attempt) {
            QuoteWithPcrs q;
            q.pcrs = tpm::read_pcrs(*ctx_, which);
            q.quote = tpm::quote(*ctx_, ak, which, qualifying_data);
            const TPMS_ATTEST a = tpm::parse_attest(q.quote.attest);
            const TPM2B_DIGEST& d = a.attested.quote.pcrDigest;
            if (tpm::quote_pcr_digest(q.pcrs) == Bytes(d.buffer, d.buffer + d.size)) {
                return q;
            }
        }
        throw TeError(ErrorCode::TpmFailure, "the PCRs keep changing during the quote");
    } catch (const tpm::TpmError& e) {
        throw TeError(ErrorCode::TpmFailure, std::string("Quote: ") + e.what());
    }
}

tpm::Attestation TrustedEnvironment::certify_srk(ByteView qualifying_data) {
    std::lock_guard lock(mutex_);
    warm_.release(); // needs TPM slots, or changes what is kept
    try {
        const tpm::Ak ak = load_ak_locked();
        return tpm::certify(*ctx_, ak, srk_.handle, qualifying_data);
    } catch (const tpm::TpmError& e) {
        throw TeError(ErrorCode::TpmFailure, std::string("Certify(SRK): ") + e.what());
    }
}

} // namespace tresim::te
