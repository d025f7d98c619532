#include "vectors.hpp"

#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace tresim::test {

namespace {
nlohmann::json load_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        throw std::runtime_error("cannot open test vectors " + path);
    }
    return nlohmann::json::parse(in);
}
} // namespace

nlohmann::json load_vectors(const std::string& name) {
    const char* dir = std::getenv("TRESIM_VECTORS_DIR");
    const std::string base = dir != nullptr ? dir : "tests/vectors";
    return load_file(base + "/" + name);
}

nlohmann::json load_shared_sample() {
    const char* path = std::getenv("TRESIM_SHARED_VECTORS");
    if (path == nullptr) {
        return nullptr;
    }
    std::ifstream in(path);
    if (!in) {
        return nullptr;
    }
    return nlohmann::json::parse(in);
}

} // namespace tresim::test
