#pragma once
// Helpers shared by the Trusted Environment tests on swtpm (test_te*.cpp): the
// official test vectors, valid ICCIDs, and a read-only look at the state
// database.

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "usim/bytes.hpp"

namespace tresim::test {

// The test vector file `name` (for example "milenage.json") from
// TRESIM_VECTORS_DIR, or tests/vectors when that is not set.
nlohmann::json load_json(const std::string& name);

// Official Milenage test set `i` (TS 35.208) from milenage.json.
nlohmann::json milenage_set(std::size_t i);

// An ICCID "894902000000<base + n>" with a valid Luhn check digit, distinct
// per n. Each test file passes its own `base`, so its ICCIDs are its own.
std::string iccid(int n, int base);

// The bytes of `s`, as the TE takes a profile or a PIN.
Bytes text_bytes(std::string_view s);

// Runs `sql` on the state database at `path` opened read-only, calling `row`
// for each result row. A database that does not open or a statement that does
// not prepare is a test failure.
void query(const std::string& path, const std::string& sql,
           const std::function<void(sqlite3_stmt*)>& row);

// Every row of every table of the state database, as text: two equal dumps
// mean the TE changed nothing it keeps.
std::string dump_database(const std::string& path);

// Extends sha256 PCR `pcr` once, through a connection of its own (the TE must
// be closed: swtpm serves one connection at a time).
void extend_pcr(const std::string& tcti, unsigned pcr);

} // namespace tresim::test
