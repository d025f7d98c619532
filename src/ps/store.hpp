#pragma once
// What the Provisioning Server keeps (docs/ps.md): devices, subscriptions,
// activation codes, sessions, orders/instructions, reference values, the last
// accepted quote clock per AK, and the audit trail. An abstract interface so
// that another backend (PostgreSQL) can replace the embedded SQLite one
// (sqlite_store.hpp). Secrets never reach the store in clear: subscription
// secrets arrive already encrypted (vault.hpp), activation and confirmation
// codes and session credentials as SHA-256 hashes.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "usim/bytes.hpp"

namespace tresim::ps {

struct DeviceRecord {
    std::string id; // te_identity: hex SHA-256 of the EK SubjectPublicKeyInfo
    std::string device_class;
    Bytes ek_public;                  // marshalled TPM2B_PUBLIC
    Bytes ak_public;                  // of the last validated session
    Bytes srk_public;                 // certified by that AK
    std::string mode;                 // computation mode the device reported
    std::uint64_t counter = 0;        // the last instruction counter issued
    std::int64_t last_validation = 0; // unix time of the last successful validation
    std::string last_result;          // "validated" or the nick of the last refusal
};

struct SubscriptionRecord {
    std::string id;
    std::string device_class; // may be empty: any class
    std::string iccid;
    std::string algorithm;      // "milenage" or "tuak"
    std::string profile_public; // JSON: the profile without k, opc, op, pin, puk
    Bytes secrets;              // vault-encrypted K and OPc/OP
    std::string bind;           // "device", "ek_certificate" or "activation_code"
    std::string device;         // bound device (empty until a code is used)
    std::optional<int> slot;
    std::string state; // registered, delivering, installed, active, inactive, deleted, failed
    std::int64_t created = 0;
    std::string history; // JSON array of {time, event}
};

struct ActivationCodeRecord {
    std::string hash; // hex SHA-256 of the code
    std::string subscription;
    std::string confirmation_hash; // empty: no confirmation code
    int wrong_confirmations = 0;
    std::string state; // unused, used, locked
    std::string used_by;
};

struct SessionRecord {
    std::string id;
    std::string device;
    Bytes ek_public;
    Bytes ak_public;
    Bytes srk_public;
    Bytes credential_hash; // SHA-256 of the credential given to MakeCredential
    Bytes nonce;
    std::string pcr_selection;
    std::string device_class;
    std::string mode;
    std::string code_hash; // the activation code of this session, if any
    std::int64_t expires = 0;
    std::string state;      // hello, evidence, validated, done
    std::string validation; // hex SHA-256 of the validated quote's attest
    std::string reference;  // id of the reference state it matched
};

struct OrderRecord {
    std::string id;
    std::string device;
    std::string subscription;
    std::string op;
    std::string body;                     // JSON of the op's body (install: built when issued)
    std::optional<std::uint64_t> counter; // assigned when first issued
    std::string state;                    // pending, sent, done, failed, refused
    std::string result;                   // JSON of the device's result
    std::int64_t created = 0;
};

struct ReferenceRecord {
    std::string id;
    std::string device_class;
    std::string pcrs; // JSON {"bank": ..., "values": {...}}
    std::int64_t created = 0;
};

struct AkClockRecord {
    std::string ak_name; // hex
    std::uint64_t clock = 0;
    std::uint32_t reset_count = 0;
    std::uint32_t restart_count = 0;
};

struct AuditRecord {
    std::int64_t seq = 0;
    std::int64_t time = 0;
    std::string device;
    std::string event;   // hello, evidence, results, subscription, order, reference, ...
    std::string outcome; // ok or an error nick
    std::string detail;  // a sentence without secrets
};

class Store {
public:
    virtual ~Store() = default;

    // Runs fn as one transaction: everything it stored, or nothing when it throws.
    virtual void transaction(const std::function<void()>& fn) = 0;

    virtual void put_device(const DeviceRecord& r) = 0;
    virtual std::optional<DeviceRecord> device(const std::string& id) = 0;
    virtual std::vector<DeviceRecord> devices() = 0;

    virtual void put_subscription(const SubscriptionRecord& r) = 0;
    virtual std::optional<SubscriptionRecord> subscription(const std::string& id) = 0;
    virtual std::vector<SubscriptionRecord> subscriptions() = 0;

    virtual void put_code(const ActivationCodeRecord& r) = 0;
    virtual std::optional<ActivationCodeRecord> code(const std::string& hash) = 0;

    virtual void put_session(const SessionRecord& r) = 0;
    virtual std::optional<SessionRecord> session(const std::string& id) = 0;

    virtual void put_order(const OrderRecord& r) = 0;
    virtual std::optional<OrderRecord> order(const std::string& id) = 0;
    // A device's orders: issued ones by counter, then pending ones by creation.
    virtual std::vector<OrderRecord> orders_of(const std::string& device) = 0;

    virtual void put_reference(const ReferenceRecord& r) = 0;
    // Newest first.
    virtual std::vector<ReferenceRecord> references(const std::string& device_class) = 0;

    virtual void put_ak_clock(const AkClockRecord& r) = 0;
    virtual std::optional<AkClockRecord> ak_clock(const std::string& ak_name) = 0;

    virtual void append_audit(const AuditRecord& r) = 0;
    virtual std::vector<AuditRecord> audit(std::int64_t after_seq, std::size_t limit) = 0;
};

} // namespace tresim::ps
