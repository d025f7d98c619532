#pragma once
// Loads 3GPP test data from tests/vectors/*.json and ../shared/vectors/sample.json.
// The paths come from the environment that meson's test() sets, so the tests run
// from any working directory.

#include <string>

#include <nlohmann/json.hpp>

namespace tresim::test {

// tests/vectors/<name> (for example "milenage.json").
nlohmann::json load_vectors(const std::string& name);
// ../shared/vectors/sample.json, or null when that file is not beside the checkout.
nlohmann::json load_shared_sample();

} // namespace tresim::test
