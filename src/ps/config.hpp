#pragma once
// tresim-ps's configuration file (JSON, docs/ps.md). Relative paths are relative
// to the folder of the configuration file.

#include <cstdint>
#include <string>
#include <vector>

namespace tresim::ps {

struct Config {
    std::string listen_address = "127.0.0.1";
    unsigned port = 8443;             // 0: any free port (reported on stderr and in --port-file)
    std::string tls_certificate;      // PEM, the server certificate and its chain
    std::string tls_key;              // PEM private key
    std::string state_dir;            // holds ps.db
    std::string ca_dir;               // manufacturer (EK) CA certificates
    std::string signing_key;          // ES256 instruction-signing key (PEM, P-256)
    std::string policy_authority_key; // MID approvals; defaults to signing_key
    std::string at_rest_key;          // 64 hex digits
    std::vector<std::string> operator_token_hashes; // lower-case hex SHA-256 of each token
    unsigned session_lifetime = 120;                // seconds from hello
    unsigned instruction_lifetime = 3600;           // seconds from issue
    unsigned threads = 8;
};

// Reads and checks the file. InvalidArgument("config") naming the field.
Config load_config(const std::string& path);

} // namespace tresim::ps
