#pragma once
// The embedded Store: one SQLite database (WAL, synchronous=FULL) in the PS's
// state folder, over the TE's RAII SQLite layer. Not thread-safe by itself:
// the service serializes its requests.

#include <memory>
#include <string>

#include "store.hpp"
#include "te/db.hpp"

namespace tresim::ps {

class SqliteStore final : public Store {
public:
    // Opens (creating when absent) `path` and its schema.
    explicit SqliteStore(const std::string& path);

    void transaction(const std::function<void()>& fn) override;

    void put_device(const DeviceRecord& r) override;
    std::optional<DeviceRecord> device(const std::string& id) override;
    std::vector<DeviceRecord> devices() override;

    void put_subscription(const SubscriptionRecord& r) override;
    std::optional<SubscriptionRecord> subscription(const std::string& id) override;
    std::vector<SubscriptionRecord> subscriptions() override;

    void put_code(const ActivationCodeRecord& r) override;
    std::optional<ActivationCodeRecord> code(const std::string& hash) override;

    void put_session(const SessionRecord& r) override;
    std::optional<SessionRecord> session(const std::string& id) override;

    void put_order(const OrderRecord& r) override;
    std::optional<OrderRecord> order(const std::string& id) override;
    std::vector<OrderRecord> orders_of(const std::string& device) override;

    void put_reference(const ReferenceRecord& r) override;
    std::vector<ReferenceRecord> references(const std::string& device_class) override;

    void put_ak_clock(const AkClockRecord& r) override;
    std::optional<AkClockRecord> ak_clock(const std::string& ak_name) override;

    void append_audit(const AuditRecord& r) override;
    std::vector<AuditRecord> audit(std::int64_t after_seq, std::size_t limit) override;

private:
    te::Db db_;
    int depth_ = 0; // nested transaction() calls join the outer one
};

} // namespace tresim::ps
