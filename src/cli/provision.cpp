// tresimctl provision --server URL --activation-code CODE [--confirmation-code C]
// tresimctl sync
// tresimctl confirm MID
//
// Provision and sync start a job (org.tresim1.Job) and follow its
// PropertiesChanged signals until it ends: each state is printed as it comes
// (text), or the final job as one JSON document (--json).

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <poll.h>

#include "cli.hpp"
#include "job_proxy.h"

namespace tresim::cli {

namespace {

class JobProxy final
    : public sdbus::ProxyInterfaces<org::tresim1::Job_proxy, sdbus::Properties_proxy> {
public:
    JobProxy(sdbus::IConnection& c, const std::string& path) : ProxyInterfaces(c, kService, path) {
        registerProxy();
    }
    ~JobProxy() { unregisterProxy(); }

    bool changed = false;

private:
    void onPropertiesChanged(const std::string& interface,
                             const std::map<std::string, sdbus::Variant>&,
                             const std::vector<std::string>&) override {
        if (interface == org::tresim1::Job_proxy::INTERFACE_NAME) {
            changed = true;
        }
    }
};

bool ended(const std::string& state) {
    return state == "done" || state == "failed";
}

// Follows the job until it ends (or `timeout` passes); prints each state.
void follow(Context& ctx, const sdbus::ObjectPath& path, std::chrono::seconds timeout) {
    sdbus::IConnection& bus = ctx.bus();
    JobProxy job(bus, path);
    std::string shown;
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        // Read after subscribing: nothing that happened before is missed.
        const std::string state = job.State();
        if (state != shown && !ctx.json && !ended(state)) {
            std::cout << state << ": " << job.Message() << '\n' << std::flush;
        }
        shown = state;
        if (ended(state)) {
            break;
        }
        job.changed = false;
        while (!job.changed) {
            while (bus.processPendingRequest()) {
            }
            if (job.changed) {
                break;
            }
            const auto now = std::chrono::steady_clock::now();
            if (now >= until) {
                throw Failure("", "the job " + std::string(path) + " did not end in " +
                                      std::to_string(timeout.count()) + " s");
            }
            const auto data = bus.getEventLoopPollData();
            pollfd p{data.fd, data.events, 0};
            const int left = static_cast<int>(
                std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count());
            const int t = data.getPollTimeout() < 0 ? left : std::min(left, data.getPollTimeout());
            if (poll(&p, 1, std::min(t, 1000)) < 0 && errno != EINTR) {
                throw Failure("", std::string("poll: ") + std::strerror(errno));
            }
            break; // re-read the state at least once a second
        }
    }
    std::vector<std::string> mids;
    for (const auto& m : job.Mids()) {
        mids.push_back(m);
    }
    const std::string state = job.State();
    if (ctx.json) {
        print_json({{"job", path},
                    {"state", state},
                    {"error", job.Error()},
                    {"message", job.Message()},
                    {"mids", mids}});
    } else if (state == "done") {
        std::cout << "done: " << job.Message() << '\n';
        for (const auto& m : mids) {
            std::cout << "mid: " << m << '\n';
        }
    }
    if (state != "done") {
        throw Failure("org.tresim1.Error.Provisioning." + job.Error(), job.Message());
    }
}

struct ProvisionOptions {
    std::string server;
    std::string activation_code;
    std::string confirmation_code;
    unsigned timeout = 300;
};

struct ConfirmOptions {
    std::string mid;
};

} // namespace

Commands add_provision(CLI::App& app) {
    Commands out;
    auto* sub = app.add_subcommand(
        "provision", "provision MIDs from a Provisioning Server (after platform validation)");
    auto o = std::make_shared<ProvisionOptions>();
    sub->add_option("--server", o->server,
                    "the server's URL as pinned in the TE policy (default: the first)");
    sub->add_option("--activation-code", o->activation_code, "the subscription's activation code");
    sub->add_option("--confirmation-code", o->confirmation_code, "its confirmation code");
    sub->add_option("--timeout", o->timeout, "seconds to wait for the job (default 300)");
    out.push_back({sub, [o](Context& ctx) {
                       ManagerProxy manager(ctx.bus());
                       const sdbus::ObjectPath job =
                           manager.Provision(o->server, o->activation_code, o->confirmation_code);
                       follow(ctx, job, std::chrono::seconds(o->timeout));
                   }});

    auto* sync = app.add_subcommand("sync", "ask the Provisioning Servers for pending orders");
    auto so = std::make_shared<ProvisionOptions>();
    sync->add_option("--timeout", so->timeout, "seconds to wait for the job (default 300)");
    out.push_back({sync, [so](Context& ctx) {
                       ManagerProxy manager(ctx.bus());
                       const sdbus::ObjectPath job = manager.Sync();
                       follow(ctx, job, std::chrono::seconds(so->timeout));
                   }});

    auto* confirm = app.add_subcommand(
        "confirm", "confirm a MID a server switched to (else the slot falls back)");
    auto co = std::make_shared<ConfirmOptions>();
    confirm->add_option("MID", co->mid, "index, object path or ICCID")->required();
    out.push_back({confirm, [co](Context& ctx) {
                       const std::string path = ctx.resolve(co->mid);
                       MidProxy mid(ctx.bus(), path);
                       mid.ConfirmActivation();
                       print_done(ctx, path, "activation confirmed");
                   }});
    return out;
}

} // namespace tresim::cli
