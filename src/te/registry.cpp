#include "registry.hpp"

#include <ctime>

#include <nlohmann/json.hpp>

namespace tresim::te {

namespace {

constexpr int kSchemaVersion = 1;

using nlohmann::json;

json params_json(const MidRecord& m) {
    json j;
    j["amf"] = hex_encode(m.amf);
    j["mnc_length"] = m.mnc_length;
    if (m.algorithm == Algorithm::Tuak) {
        j["tuak"] = {{"res_bits", m.tuak.res_bits},
                     {"mac_bits", m.tuak.mac_bits},
                     {"ck_bits", m.tuak.ck_bits},
                     {"ik_bits", m.tuak.ik_bits},
                     {"keccak_iterations", m.tuak.keccak_iterations}};
    }
    if (m.isim) {
        j["isim"] = {{"impi", m.isim->impi}, {"impu", m.isim->impu}, {"domain", m.isim->domain}};
    }
    if (m.suci) {
        j["suci"] = {{"profile", static_cast<int>(m.suci->profile)},
                     {"hn_key_id", m.suci->hn_key_id},
                     {"hn_public_key", hex_encode(m.suci->hn_public_key)},
                     {"routing_indicator", m.suci->routing_indicator}};
    }
    if (m.has_pin) {
        j["pin_salt"] = hex_encode(m.pin_salt);
        j["has_puk"] = m.has_puk;
    }
    if (!m.provisioned_by.empty()) {
        j["provisioned_by"] = m.provisioned_by;
    }
    if (m.borrows_functions()) {
        j["functions_from"] = m.functions_from;
    }
    if (!m.policy_ref.empty()) {
        j["policy_ref"] = hex_encode(m.policy_ref);
    }
    j["policy"] = {{"pin_required", m.policy.pin_required},
                   {"share_functions", m.policy.share_functions},
                   {"allowed_actions", m.policy.allowed_actions}};
    return j;
}

void apply_params(MidRecord& m, const json& j) {
    m.amf = hex_decode_array<2>(j.at("amf").get<std::string>(), "amf");
    m.mnc_length = j.at("mnc_length").get<unsigned>();
    if (j.contains("tuak")) {
        const json& t = j.at("tuak");
        m.tuak.res_bits = t.at("res_bits");
        m.tuak.mac_bits = t.at("mac_bits");
        m.tuak.ck_bits = t.at("ck_bits");
        m.tuak.ik_bits = t.at("ik_bits");
        m.tuak.keccak_iterations = t.at("keccak_iterations");
    }
    if (j.contains("isim")) {
        const json& i = j.at("isim");
        m.isim = IsimIdentity{i.at("impi"), i.at("impu").get<std::vector<std::string>>(),
                              i.at("domain")};
    }
    if (j.contains("suci")) {
        const json& s = j.at("suci");
        SuciConfig c;
        c.profile = static_cast<usim::SuciProfile>(s.at("profile").get<int>());
        c.hn_key_id = s.at("hn_key_id").get<std::uint8_t>();
        c.hn_public_key = hex_decode(s.at("hn_public_key").get<std::string>(), "hn_public_key");
        c.routing_indicator = s.at("routing_indicator");
        m.suci = c;
    }
    if (j.contains("pin_salt")) {
        m.pin_salt = hex_decode(j.at("pin_salt").get<std::string>(), "pin_salt");
        m.has_puk = j.at("has_puk").get<bool>();
    }
    m.provisioned_by = j.value("provisioned_by", std::string());
    m.functions_from = j.value("functions_from", std::string());
    m.policy_ref = hex_decode(j.value("policy_ref", std::string()), "policy_ref");
    const json& p = j.at("policy");
    m.policy.pin_required = p.at("pin_required");
    m.policy.share_functions = p.at("share_functions");
    m.policy.allowed_actions = p.at("allowed_actions").get<std::vector<std::string>>();
}

constexpr const char* kColumns =
    "idx, iccid, imsi, label, operator, algorithm, params, mode, state, slot, authority, "
    "has_pin, pin_retries, puk_retries, sqn, created, updated";

MidRecord read_row(Statement& s) {
    MidRecord m;
    try {
        m.index = s.column_int(0);
        m.iccid = s.column_text(1);
        m.imsi = s.column_text(2);
        m.label = s.column_text(3);
        m.operator_name = s.column_text(4);
        m.algorithm = s.column_text(5) == "tuak" ? Algorithm::Tuak : Algorithm::Milenage;
        apply_params(m, json::parse(s.column_text(6)));
        const auto mode = parse_computation_mode(s.column_text(7));
        const auto state = parse_mid_state(s.column_text(8));
        if (!mode || !state) {
            throw TeError(ErrorCode::StateCorrupt, "bad mode or state");
        }
        m.mode = *mode;
        m.state = *state;
        if (!s.column_is_null(9)) {
            m.slot = static_cast<unsigned>(s.column_int(9));
        }
        m.authority = s.column_blob(10);
        m.has_pin = s.column_int(11) != 0;
        m.pin_retries = static_cast<unsigned>(s.column_int(12));
        m.puk_retries = static_cast<unsigned>(s.column_int(13));
        m.sqn = decode_sqn(s.column_blob(14));
        m.created = s.column_int(15);
        m.updated = s.column_int(16);
    } catch (const TeError&) {
        throw;
    } catch (const std::exception& e) {
        throw TeError(ErrorCode::StateCorrupt,
                      "MID record " + std::to_string(m.index) + " is unreadable: " + e.what());
    }
    return m;
}

void bind_record(Statement& s, const MidRecord& m, int first) {
    s.bind(first, m.iccid)
        .bind(first + 1, m.imsi)
        .bind(first + 2, m.label)
        .bind(first + 3, m.operator_name)
        .bind(first + 4, std::string_view(to_string(m.algorithm)))
        .bind(first + 5, params_json(m).dump())
        .bind(first + 6, std::string_view(to_string(m.mode)))
        .bind(first + 7, std::string_view(to_string(m.state)));
    if (m.slot) {
        s.bind(first + 8, static_cast<std::int64_t>(*m.slot));
    } else {
        s.bind_null(first + 8);
    }
    s.bind(first + 9, ByteView(m.authority))
        .bind(first + 10, static_cast<std::int64_t>(m.has_pin ? 1 : 0))
        .bind(first + 11, static_cast<std::int64_t>(m.pin_retries))
        .bind(first + 12, static_cast<std::int64_t>(m.puk_retries))
        .bind(first + 13, ByteView(encode_sqn(m.sqn)));
}

std::int64_t now() {
    return static_cast<std::int64_t>(std::time(nullptr));
}

} // namespace

Bytes encode_sqn(const usim::SqnState& s) {
    Bytes out(1 + 8 + 8 + 8 * s.seq().size());
    out[0] = static_cast<std::uint8_t>(s.config().ind_bits);
    store_be(s.config().delta, {out.data() + 1, 8});
    store_be(s.config().age_limit, {out.data() + 9, 8});
    for (std::size_t i = 0; i < s.seq().size(); ++i) {
        store_be(s.seq()[i], {out.data() + 17 + 8 * i, 8});
    }
    return out;
}

usim::SqnState decode_sqn(ByteView b) {
    if (b.size() < 17 || (b.size() - 17) % 8 != 0) {
        throw TeError(ErrorCode::StateCorrupt, "SQN state has a bad length");
    }
    usim::SqnConfig c;
    c.ind_bits = b[0];
    c.delta = load_be(b.subspan(1, 8));
    c.age_limit = load_be(b.subspan(9, 8));
    std::vector<std::uint64_t> seq((b.size() - 17) / 8);
    for (std::size_t i = 0; i < seq.size(); ++i) {
        seq[i] = load_be(b.subspan(17 + 8 * i, 8));
    }
    try {
        return usim::SqnState(c, std::move(seq));
    } catch (const InvalidArgument& e) {
        throw TeError(ErrorCode::StateCorrupt, std::string("SQN state: ") + e.what());
    }
}

Registry::Registry(Db& db) : db_(db) {}

void Registry::create_schema() {
    db_.exec(R"sql(
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS mids (
    idx INTEGER PRIMARY KEY AUTOINCREMENT,
    iccid TEXT NOT NULL UNIQUE,
    imsi TEXT NOT NULL,
    label TEXT NOT NULL,
    operator TEXT NOT NULL,
    algorithm TEXT NOT NULL CHECK (algorithm IN ('milenage', 'tuak')),
    params TEXT NOT NULL,
    mode TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('inactive', 'active', 'suspended', 'blocked')),
    slot INTEGER,
    authority BLOB NOT NULL,
    has_pin INTEGER NOT NULL,
    pin_retries INTEGER NOT NULL,
    puk_retries INTEGER NOT NULL,
    sqn BLOB NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_mid_per_slot ON mids(slot) WHERE slot IS NOT NULL;
CREATE TABLE IF NOT EXISTS approvals (
    authority BLOB NOT NULL,
    auth_value INTEGER NOT NULL,
    approved BLOB NOT NULL,
    encoded BLOB NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (authority, auth_value, approved)
);
CREATE TABLE IF NOT EXISTS objects (
    mid INTEGER NOT NULL REFERENCES mids(idx) ON DELETE CASCADE,
    role TEXT NOT NULL,
    public BLOB NOT NULL,
    private BLOB NOT NULL,
    PRIMARY KEY (mid, role)
);
CREATE TABLE IF NOT EXISTS provisioning (
    server TEXT PRIMARY KEY,
    counter INTEGER NOT NULL,
    instruction TEXT NOT NULL,
    result TEXT NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_switch (
    slot INTEGER PRIMARY KEY,
    mid INTEGER NOT NULL,
    previous INTEGER,
    deadline INTEGER NOT NULL,
    server TEXT NOT NULL,
    counter INTEGER NOT NULL,
    instruction TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS late_result (
    server TEXT NOT NULL,
    counter INTEGER NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (server, counter)
);
)sql");
    if (!meta("schema_version")) {
        const Bytes v{static_cast<std::uint8_t>(kSchemaVersion)};
        set_meta("schema_version", v);
    }
}

std::int64_t Registry::insert(const MidRecord& mid) {
    auto s = db_.prepare(std::string("INSERT INTO mids (iccid, imsi, label, operator, algorithm, "
                                     "params, mode, state, slot, authority, has_pin, pin_retries, "
                                     "puk_retries, sqn, created, updated) VALUES "
                                     "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
    bind_record(s, mid, 1);
    const std::int64_t t = now();
    s.bind(15, t).bind(16, t);
    s.run();
    return db_.last_insert_id();
}

void Registry::update(const MidRecord& mid) {
    auto s = db_.prepare("UPDATE mids SET iccid=?, imsi=?, label=?, operator=?, algorithm=?, "
                         "params=?, mode=?, state=?, slot=?, authority=?, has_pin=?, "
                         "pin_retries=?, puk_retries=?, sqn=?, updated=? WHERE idx=?");
    bind_record(s, mid, 1);
    s.bind(15, now()).bind(16, mid.index);
    s.run();
    if (db_.changes() != 1) {
        throw TeError(ErrorCode::UnknownMid, "no MID " + std::to_string(mid.index));
    }
}

void Registry::remove(std::int64_t index) {
    db_.prepare("DELETE FROM objects WHERE mid=?").bind(1, index).run();
    auto s = db_.prepare("DELETE FROM mids WHERE idx=?");
    s.bind(1, index).run();
}

std::optional<MidRecord> Registry::find(std::int64_t index) {
    auto s = db_.prepare(std::string("SELECT ") + kColumns + " FROM mids WHERE idx=?");
    s.bind(1, index);
    if (!s.step()) {
        return std::nullopt;
    }
    return read_row(s);
}

std::optional<MidRecord> Registry::find_by_iccid(std::string_view iccid) {
    auto s = db_.prepare(std::string("SELECT ") + kColumns + " FROM mids WHERE iccid=?");
    s.bind(1, iccid);
    if (!s.step()) {
        return std::nullopt;
    }
    return read_row(s);
}

std::vector<MidRecord> Registry::list() {
    auto s = db_.prepare(std::string("SELECT ") + kColumns + " FROM mids ORDER BY idx");
    std::vector<MidRecord> out;
    while (s.step()) {
        out.push_back(read_row(s));
    }
    return out;
}

std::optional<MidRecord> Registry::in_slot(unsigned slot) {
    auto s = db_.prepare(std::string("SELECT ") + kColumns + " FROM mids WHERE slot=?");
    s.bind(1, static_cast<std::int64_t>(slot));
    if (!s.step()) {
        return std::nullopt;
    }
    return read_row(s);
}

void Registry::update_sqn(std::int64_t index, const usim::SqnState& sqn) {
    auto s = db_.prepare("UPDATE mids SET sqn=? WHERE idx=?");
    s.bind(1, ByteView(encode_sqn(sqn))).bind(2, index);
    s.run();
    if (db_.changes() != 1) {
        throw TeError(ErrorCode::UnknownMid, "no MID " + std::to_string(index));
    }
}

void Registry::put_object(std::int64_t index, std::string_view role,
                          const tpm::ObjectBlobs& blobs) {
    auto s = db_.prepare("INSERT OR REPLACE INTO objects (mid, role, public, private) "
                         "VALUES (?,?,?,?)");
    s.bind(1, index)
        .bind(2, role)
        .bind(3, ByteView(blobs.public_area))
        .bind(4, ByteView(blobs.private_area));
    s.run();
}

std::optional<tpm::ObjectBlobs> Registry::object(std::int64_t index, std::string_view role) {
    auto s = db_.prepare("SELECT public, private FROM objects WHERE mid=? AND role=?");
    s.bind(1, index).bind(2, role);
    if (!s.step()) {
        return std::nullopt;
    }
    return tpm::ObjectBlobs{s.column_blob(0), s.column_blob(1)};
}

void Registry::put_approval(ByteView authority_name, bool auth_value, ByteView approval_id,
                            ByteView encoded) {
    auto s = db_.prepare("INSERT OR REPLACE INTO approvals (authority, auth_value, approved, "
                         "encoded, created) VALUES (?,?,?,?,?)");
    s.bind(1, authority_name)
        .bind(2, static_cast<std::int64_t>(auth_value ? 1 : 0))
        .bind(3, approval_id)
        .bind(4, encoded)
        .bind(5, now());
    s.run();
}

std::vector<Bytes> Registry::approvals(ByteView authority_name, bool auth_value) {
    auto s = db_.prepare("SELECT encoded FROM approvals WHERE authority=? AND auth_value=? "
                         "ORDER BY created DESC, rowid DESC");
    s.bind(1, authority_name).bind(2, static_cast<std::int64_t>(auth_value ? 1 : 0));
    std::vector<Bytes> out;
    while (s.step()) {
        out.push_back(s.column_blob(0));
    }
    return out;
}

std::optional<ProvisioningRow> Registry::provisioning(std::string_view server) {
    auto s = db_.prepare("SELECT counter, instruction, result FROM provisioning WHERE server=?");
    s.bind(1, server);
    if (!s.step()) {
        return std::nullopt;
    }
    return ProvisioningRow{s.column_int(0), s.column_text(1), s.column_text(2)};
}

void Registry::put_provisioning(std::string_view server, const ProvisioningRow& row) {
    auto s = db_.prepare("INSERT OR REPLACE INTO provisioning (server, counter, instruction, "
                         "result, updated) VALUES (?,?,?,?,?)");
    s.bind(1, server)
        .bind(2, row.counter)
        .bind(3, row.instruction)
        .bind(4, row.result)
        .bind(5, now());
    s.run();
}

std::vector<PendingSwitchRow> Registry::pending_switches() {
    auto s = db_.prepare("SELECT slot, mid, previous, deadline, server, counter, instruction FROM "
                         "pending_switch ORDER BY deadline, slot");
    std::vector<PendingSwitchRow> out;
    while (s.step()) {
        PendingSwitchRow r;
        r.slot = s.column_int(0);
        r.mid = s.column_int(1);
        if (!s.column_is_null(2)) {
            r.previous = s.column_int(2);
        }
        r.deadline = s.column_int(3);
        r.server = s.column_text(4);
        r.counter = s.column_int(5);
        r.instruction = s.column_text(6);
        out.push_back(r);
    }
    return out;
}

void Registry::put_pending_switch(const PendingSwitchRow& row) {
    auto s = db_.prepare("INSERT OR REPLACE INTO pending_switch (slot, mid, previous, deadline, "
                         "server, counter, instruction) VALUES (?,?,?,?,?,?,?)");
    s.bind(1, row.slot).bind(2, row.mid);
    if (row.previous) {
        s.bind(3, *row.previous);
    } else {
        s.bind_null(3);
    }
    s.bind(4, row.deadline).bind(5, row.server).bind(6, row.counter).bind(7, row.instruction);
    s.run();
}

void Registry::remove_pending_switch(std::int64_t slot) {
    db_.prepare("DELETE FROM pending_switch WHERE slot=?").bind(1, slot).run();
}

std::vector<std::tuple<std::string, std::int64_t, std::string>> Registry::late_results() {
    auto s =
        db_.prepare("SELECT server, counter, result FROM late_result ORDER BY server, counter");
    std::vector<std::tuple<std::string, std::int64_t, std::string>> out;
    while (s.step()) {
        out.emplace_back(s.column_text(0), s.column_int(1), s.column_text(2));
    }
    return out;
}

void Registry::put_late_result(std::string_view server, std::int64_t counter,
                               std::string_view result) {
    auto s = db_.prepare("INSERT OR REPLACE INTO late_result (server, counter, result) "
                         "VALUES (?,?,?)");
    s.bind(1, server).bind(2, counter).bind(3, result);
    s.run();
}

void Registry::remove_late_result(std::string_view server, std::int64_t counter) {
    db_.prepare("DELETE FROM late_result WHERE server=? AND counter=?")
        .bind(1, server)
        .bind(2, counter)
        .run();
}

std::optional<Bytes> Registry::meta(std::string_view key) {
    auto s = db_.prepare("SELECT value FROM meta WHERE key=?");
    s.bind(1, key);
    if (!s.step()) {
        return std::nullopt;
    }
    return s.column_blob(0);
}

void Registry::set_meta(std::string_view key, ByteView value) {
    auto s = db_.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
    s.bind(1, key).bind(2, value);
    s.run();
}

} // namespace tresim::te
