#include "te_test_util.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>

#include "te/profile.hpp"
#include "tpm/context.hpp"
#include "tpm/error.hpp"

namespace tresim::test {

nlohmann::json load_json(const std::string& name) {
    const char* dir = std::getenv("TRESIM_VECTORS_DIR");
    std::ifstream in(std::string(dir != nullptr ? dir : "tests/vectors") + "/" + name);
    return nlohmann::json::parse(in);
}

nlohmann::json milenage_set(std::size_t i) {
    return load_json("milenage.json").at("milenage").at(i);
}

std::string iccid(int n, int base) {
    const std::string body = "894902000000" + std::to_string(base + n);
    for (char d = '0'; d <= '9'; ++d) {
        if (te::luhn_valid(body + d)) {
            return body + d;
        }
    }
    return body;
}

Bytes text_bytes(std::string_view s) {
    return Bytes(s.begin(), s.end());
}

void query(const std::string& path, const std::string& sql,
           const std::function<void(sqlite3_stmt*)>& row) {
    sqlite3* raw = nullptr;
    if (sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
        sqlite3_close(raw);
        ADD_FAILURE() << "cannot open " << path;
        return;
    }
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db.get(), sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
        ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db.get());
        return;
    }
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> statement(st, sqlite3_finalize);
    while (sqlite3_step(st) == SQLITE_ROW) {
        row(st);
    }
}

std::string dump_database(const std::string& path) {
    std::vector<std::string> tables;
    query(path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
          [&](sqlite3_stmt* s) {
              tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
          });
    std::ostringstream out;
    for (const std::string& t : tables) {
        out << "[" << t << "]\n";
        query(path, "SELECT * FROM \"" + t + "\" ORDER BY 1", [&](sqlite3_stmt* s) {
            for (int c = 0; c < sqlite3_column_count(s); ++c) {
                const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(s, c));
                const int n = sqlite3_column_bytes(s, c);
                out << hex_encode(ByteView(p, static_cast<std::size_t>(n))) << "|";
            }
            out << "\n";
        });
    }
    return out.str();
}

void extend_pcr(const std::string& tcti, unsigned pcr) {
    tpm::Context ctx(tcti);
    const ESYS_TR handle = ESYS_TR_PCR0 + pcr;
    TPML_DIGEST_VALUES digests{};
    digests.count = 1;
    digests.digests[0].hashAlg = TPM2_ALG_SHA256;
    std::fill_n(digests.digests[0].digest.sha256, 32, std::uint8_t{0x42});
    tpm::check(Esys_PCR_Extend(ctx, handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &digests),
               "PCR_Extend");
}

} // namespace tresim::test
