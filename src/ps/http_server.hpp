#pragma once
// The HTTPS edge of tresim-ps: cpp-httplib's SSLServer restricted to TLS 1.3,
// the routes of docs/protocol.md mapped onto Service, error bodies, bearer
// token checks for the operator API, and one log line per request (method,
// path, status: never a body).

#include <memory>
#include <string>

#include "service.hpp"

namespace httplib {
class SSLServer;
}

namespace tresim::ps {

class HttpServer {
public:
    // Loads the TLS certificate chain and key; std::runtime_error when they
    // do not load or do not match.
    HttpServer(Service& service, const Config& config);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Binds the configured address and port (0: any free port); returns the port.
    int bind();
    // Serves until stop(); returns false when serving failed.
    bool serve();
    void stop();

private:
    Service& service_;
    Config config_;
    std::unique_ptr<httplib::SSLServer> server_;
};

} // namespace tresim::ps
