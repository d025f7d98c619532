#include "http_server.hpp"

#include <httplib.h>
#include <stdexcept>

#include <openssl/ssl.h>

#include "log.hpp"

namespace tresim::ps {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxBody = 1 << 20;

void send(httplib::Response& res, const Reply& r) {
    res.status = r.status;
    if (r.status != 204) {
        res.set_content(r.body.dump(), "application/json");
    }
}

void send_error(httplib::Response& res, const ApiError& e) {
    res.status = e.status();
    res.set_content(e.body().dump(), "application/json");
}

} // namespace

HttpServer::HttpServer(Service& service, const Config& config)
    : service_(service), config_(config) {
    const std::string cert = config.tls_certificate;
    const std::string key = config.tls_key;
    server_ = std::make_unique<httplib::SSLServer>([cert, key](SSL_CTX& ctx) {
        return SSL_CTX_set_min_proto_version(&ctx, TLS1_3_VERSION) == 1 &&
               SSL_CTX_use_certificate_chain_file(&ctx, cert.c_str()) == 1 &&
               SSL_CTX_use_PrivateKey_file(&ctx, key.c_str(), SSL_FILETYPE_PEM) == 1 &&
               SSL_CTX_check_private_key(&ctx) == 1;
    });
    if (!server_->is_valid()) {
        throw std::runtime_error("cannot set up TLS with " + cert + " and " + key +
                                 " (missing, unreadable or not a matching pair)");
    }
    const unsigned threads = config.threads;
    server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    server_->set_payload_max_length(kMaxBody);
    // Replies go out as two writes (headers, body): with Nagle's algorithm the
    // second waits for the client's delayed ACK, ~40 ms per request.
    server_->set_tcp_nodelay(true);
    server_->set_logger([](const httplib::Request& req, const httplib::Response& res) {
        log(Level::Info, req.method + " " + req.path + " " + std::to_string(res.status));
    });

    Service& svc = service_;
    using Handler = std::function<Reply(const httplib::Request&)>;
    const auto guarded = [&svc](Handler fn, bool operator_api) {
        return [&svc, fn = std::move(fn), operator_api](const httplib::Request& req,
                                                        httplib::Response& res) {
            try {
                if (operator_api && !svc.authorized(req.get_header_value("Authorization"))) {
                    svc.audit("", "operator", "unauthorized", req.method + " " + req.path);
                    throw ApiError(401, "unauthorized", "a valid operator bearer token is needed");
                }
                send(res, fn(req));
            } catch (const ApiError& e) {
                send_error(res, e);
            } catch (const std::exception& e) {
                log(Level::Error, req.method + " " + req.path + ": " + e.what());
                send_error(res, ApiError(500, "internal", "internal error; see the server log"));
            }
        };
    };
    const auto device = [&](const char* path, Reply (Service::*method)(std::string_view)) {
        server_->Post(
            path,
            guarded([&svc, method](const httplib::Request& req) { return (svc.*method)(req.body); },
                    false));
    };
    device("/v1/device/hello", &Service::hello);
    device("/v1/device/sync", &Service::sync);
    device("/v1/device/evidence", &Service::evidence);
    device("/v1/device/results", &Service::results);

    server_->Post(
        "/v1/operator/subscriptions",
        guarded([&svc](const auto& req) { return svc.create_subscription(req.body); }, true));
    server_->Get("/v1/operator/subscriptions",
                 guarded([&svc](const auto&) { return svc.list_subscriptions(); }, true));
    server_->Get(
        R"(/v1/operator/subscriptions/([A-Za-z0-9_-]+))",
        guarded([&svc](const auto& req) { return svc.get_subscription(req.matches[1]); }, true));
    server_->Get("/v1/operator/devices",
                 guarded([&svc](const auto&) { return svc.list_devices(); }, true));
    server_->Get(R"(/v1/operator/devices/([0-9a-f]{64}))",
                 guarded([&svc](const auto& req) { return svc.get_device(req.matches[1]); }, true));
    server_->Post(
        R"(/v1/operator/devices/([0-9a-f]{64})/orders)",
        guarded([&svc](const auto& req) { return svc.create_order(req.matches[1], req.body); },
                true));
    server_->Post(
        "/v1/operator/references",
        guarded([&svc](const auto& req) { return svc.create_reference(req.body); }, true));
    server_->Get("/v1/operator/audit",
                 guarded(
                     [&svc](const httplib::Request& req) {
                         std::int64_t after = 0;
                         if (req.has_param("after")) {
                             try {
                                 after = std::stoll(req.get_param_value("after"));
                             } catch (const std::exception&) {
                                 throw ApiError(400, "invalid-argument", "after: must be a number");
                             }
                         }
                         return svc.get_audit(after);
                     },
                     true));
    server_->set_error_handler([](const httplib::Request&, httplib::Response& res) {
        if (res.body.empty()) {
            const std::string nick = "invalid-argument";
            res.set_content(json{{"error", nick},
                                 {"message", "no such endpoint or method (HTTP " +
                                                 std::to_string(res.status) + ")"}}
                                .dump(),
                            "application/json");
        }
    });
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
    if (config_.port == 0) {
        const int port = server_->bind_to_any_port(config_.listen_address.c_str());
        if (port <= 0) {
            throw std::runtime_error("cannot bind " + config_.listen_address);
        }
        return port;
    }
    if (!server_->bind_to_port(config_.listen_address.c_str(), static_cast<int>(config_.port))) {
        throw std::runtime_error("cannot bind " + config_.listen_address + ":" +
                                 std::to_string(config_.port));
    }
    return static_cast<int>(config_.port);
}

bool HttpServer::serve() {
    return server_->listen_after_bind();
}

void HttpServer::stop() {
    server_->stop();
}

} // namespace tresim::ps
