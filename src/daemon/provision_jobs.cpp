#include "provision_jobs.hpp"

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <sys/eventfd.h>
#include <unistd.h>

#include "job_adaptor.h"
#include "log.hpp"
#include "service.hpp"
#include "te/errors.hpp"

namespace tresim::daemon {

std::string job_path(std::uint64_t n) {
    return std::string(kRootPath) + "/job/" + std::to_string(n);
}

class JobObject final
    : public sdbus::AdaptorInterfaces<org::tresim1::Job_adaptor, sdbus::Properties_adaptor,
                                      sdbus::ManagedObject_adaptor> {
public:
    JobObject(sdbus::IConnection& connection, std::uint64_t n, std::string kind)
        : AdaptorInterfaces(connection, job_path(n)), kind_(std::move(kind)) {
        registerAdaptor();
    }
    ~JobObject() { unregisterAdaptor(); }

    void set_state(const std::string& state, const std::string& message) {
        std::vector<std::string> changed;
        if (state != state_) {
            state_ = state;
            changed.emplace_back("State");
        }
        if (message != message_) {
            message_ = message;
            changed.emplace_back("Message");
        }
        announce(changed);
    }

    void finish(const SessionOutcome& outcome) {
        mids_.clear();
        for (const std::int64_t m : outcome.mids) {
            mids_.emplace_back(mid_path(m));
        }
        error_ = outcome.ok ? "" : outcome.error;
        message_ = outcome.message;
        state_ = outcome.ok ? "done" : "failed";
        announce({"Mids", "Error", "Message", "State"});
    }

    const std::string& kind() const noexcept { return kind_; }
    void added() { emitInterfacesAddedSignal(); }
    void removed() { emitInterfacesRemovedSignal(); }

private:
    void announce(const std::vector<std::string>& changed) {
        if (!changed.empty()) {
            emitPropertiesChangedSignal(org::tresim1::Job_adaptor::INTERFACE_NAME, changed);
        }
    }

    std::string Kind() override { return kind_; }
    std::string State() override { return state_; }
    std::string Error() override { return error_; }
    std::string Message() override { return message_; }
    std::vector<sdbus::ObjectPath> Mids() override { return mids_; }

    std::string kind_;
    std::string state_ = "connecting";
    std::string error_;
    std::string message_ = "queued";
    std::vector<sdbus::ObjectPath> mids_;
};

namespace {

std::int64_t unix_now() {
    return static_cast<std::int64_t>(std::time(nullptr));
}

} // namespace

Provisioner::Provisioner(sdbus::IConnection& connection, te::TrustedEnvironment& te,
                         TePolicy policy, ProvisionerOptions options,
                         std::function<void()> te_changed)
    : connection_(connection), te_(te), policy_(std::move(policy)), options_(options),
      te_changed_(std::move(te_changed)), random_(std::random_device{}()) {
    wakeup_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wakeup_fd_ < 0) {
        throw std::runtime_error("eventfd failed");
    }
    thread_ = std::thread([this] { worker(); });
    if (!policy_.servers.empty() && policy_.poll_interval > 0) {
        schedule_poll(false);
    }
    switches_changed();
}

Provisioner::~Provisioner() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        tasks_.clear();
    }
    wake_worker_.notify_all();
    // A session in progress ends at its next network timeout at the latest.
    thread_.join();
    jobs_.clear();
    close(wakeup_fd_);
}

sdbus::ObjectPath Provisioner::add_job(const char* kind, std::vector<SessionRequest> requests) {
    const std::uint64_t n = next_job_++;
    auto job = std::make_unique<JobObject>(connection_, n, kind);
    job->added();
    jobs_[n] = std::move(job);
    {
        std::lock_guard lock(mutex_);
        tasks_.push_back({n, std::move(requests)});
    }
    wake_worker_.notify_one();
    return job_path(n);
}

sdbus::ObjectPath Provisioner::provision(const std::string& server,
                                         const std::string& activation_code,
                                         const std::string& confirmation_code) {
    if (policy_.servers.empty()) {
        throw te::TeError(te::ErrorCode::InvalidArgument,
                          "server: no provisioning server is configured in the TE policy");
    }
    if (!server.empty() && std::none_of(policy_.servers.begin(), policy_.servers.end(),
                                        [&](const ServerTrust& s) { return s.url == server; })) {
        throw te::TeError(te::ErrorCode::InvalidArgument,
                          "server: " + server + " is not pinned in the TE policy");
    }
    if (activation_code.size() > 256 || confirmation_code.size() > 256) {
        throw te::TeError(te::ErrorCode::InvalidArgument,
                          "activation_code: codes are at most 256 characters");
    }
    SessionRequest r;
    r.server = server;
    r.activation_code = activation_code;
    r.confirmation_code = confirmation_code;
    return add_job("provision", {r});
}

sdbus::ObjectPath Provisioner::sync(const char* kind) {
    if (policy_.servers.empty()) {
        throw te::TeError(te::ErrorCode::InvalidArgument,
                          "no provisioning server is configured in the TE policy");
    }
    std::vector<SessionRequest> requests;
    for (const ServerTrust& s : policy_.servers) {
        SessionRequest r;
        r.server = s.url;
        r.sync = true;
        requests.push_back(r);
    }
    return add_job(kind, std::move(requests));
}

void Provisioner::post(std::function<void()> f) {
    {
        std::lock_guard lock(mutex_);
        posted_.push_back(std::move(f));
    }
    const std::uint64_t one = 1;
    (void)!write(wakeup_fd_, &one, sizeof one);
}

void Provisioner::dispatch() {
    std::uint64_t count = 0;
    (void)!read(wakeup_fd_, &count, sizeof count);
    std::vector<std::function<void()>> todo;
    {
        std::lock_guard lock(mutex_);
        todo.swap(posted_);
    }
    for (auto& f : todo) {
        try {
            f();
        } catch (const std::exception& e) {
            log(LOG_WARNING, std::string("provisioning: ") + e.what());
        }
    }
}

void Provisioner::worker() {
    for (;;) {
        Task task;
        {
            std::unique_lock lock(mutex_);
            wake_worker_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
            if (stopping_) {
                return;
            }
            task = std::move(tasks_.front());
            tasks_.pop_front();
        }
        const std::uint64_t id = task.job;
        SessionOutcome total;
        total.ok = true;
        bool any_work = false;
        for (const SessionRequest& r : task.requests) {
            const SessionOutcome o =
                run_session(te_, policy_, options_.client, r, [&](const std::string& state) {
                    post([this, id, state] {
                        if (auto it = jobs_.find(id); it != jobs_.end()) {
                            it->second->set_state(state, state == "connecting" ? "connecting to "
                                                                                 "the server"
                                                                               : state);
                        }
                    });
                });
            if (!o.no_work) {
                any_work = true;
            }
            for (const std::int64_t m : o.mids) {
                if (std::find(total.mids.begin(), total.mids.end(), m) == total.mids.end()) {
                    total.mids.push_back(m);
                }
            }
            if (!o.ok && total.ok) {
                total.ok = false;
                total.error = o.error;
                total.message = o.message;
            } else if (total.ok) {
                total.message = o.message;
            }
        }
        if (total.ok && !any_work) {
            total.message = "no pending instructions";
        }
        post([this, id, total] { finish(id, total, false); });
    }
}

void Provisioner::finish(std::uint64_t id, const SessionOutcome& outcome, bool) {
    const auto it = jobs_.find(id);
    if (it != jobs_.end()) {
        const bool was_poll = it->second->kind() == "poll";
        it->second->finish(outcome);
        ended_[id] = Clock::now() + std::chrono::seconds(options_.job_linger);
        if (was_poll) {
            poll_running_ = false;
            poll_failures_ = outcome.ok ? 0 : poll_failures_ + 1;
            schedule_poll(!outcome.ok);
        }
    }
    te_changed_();
    switches_changed();
}

void Provisioner::schedule_poll(bool failed) {
    if (policy_.servers.empty() || policy_.poll_interval == 0) {
        next_poll_.reset();
        return;
    }
    double seconds = policy_.poll_interval;
    if (failed) {
        // Exponential back-off from retry_min, capped, so that a down server is
        // not hammered and a fleet does not retry in lockstep.
        const unsigned shift = std::min(poll_failures_ == 0 ? 0u : poll_failures_ - 1, 16u);
        seconds = std::min<double>(static_cast<double>(options_.retry_min) * (1u << shift),
                                   options_.retry_max);
    }
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    seconds *= jitter(random_);
    next_poll_ = Clock::now() + std::chrono::milliseconds(static_cast<long>(seconds * 1000));
}

void Provisioner::switches_changed() {
    try {
        next_deadline_.reset();
        for (const te::PendingSwitch& s : te_.pending_switches()) {
            if (!next_deadline_ || s.deadline < *next_deadline_) {
                next_deadline_ = s.deadline;
            }
        }
    } catch (const std::exception& e) {
        log(LOG_WARNING, std::string("cannot read the pending switches: ") + e.what());
    }
}

int Provisioner::timeout_ms() {
    std::optional<long> ms;
    const auto now = Clock::now();
    auto consider = [&](Clock::time_point t) {
        const long d = std::max<long>(
            0, std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count() + 1);
        ms = ms ? std::min(*ms, d) : d;
    };
    if (next_poll_ && !poll_running_) {
        consider(*next_poll_);
    }
    for (const auto& [id, when] : ended_) {
        consider(when);
    }
    if (next_deadline_) {
        const long d = std::max<long>(0, (*next_deadline_ - unix_now()) * 1000 + 1);
        ms = ms ? std::min(*ms, d) : d;
    }
    if (!ms) {
        return -1;
    }
    return static_cast<int>(std::min<long>(*ms, 60 * 60 * 1000));
}

void Provisioner::tick() {
    const auto now = Clock::now();
    for (auto it = ended_.begin(); it != ended_.end();) {
        if (it->second <= now) {
            if (auto job = jobs_.find(it->first); job != jobs_.end()) {
                job->second->removed();
                jobs_.erase(job);
            }
            it = ended_.erase(it);
        } else {
            ++it;
        }
    }
    if (next_deadline_ && *next_deadline_ <= unix_now()) {
        try {
            const auto fell = te_.expire_switches(unix_now());
            for (const te::PendingSwitch& s : fell) {
                log(LOG_NOTICE,
                    "slot " + std::to_string(s.slot) +
                        ": the switch was not confirmed in time; back on the "
                        "previous MID",
                    {s.mid, std::nullopt});
            }
            switches_changed();
            if (!fell.empty()) {
                te_changed_();
                // Tell the server at once (the result waits for the next session).
                if (!policy_.servers.empty() && !poll_running_) {
                    poll_running_ = true;
                    (void)sync("poll");
                }
            }
        } catch (const std::exception& e) {
            log(LOG_WARNING, std::string("switch fallback: ") + e.what());
            next_deadline_ = unix_now() + 30;
        }
    }
    if (next_poll_ && !poll_running_ && *next_poll_ <= now) {
        poll_running_ = true;
        next_poll_.reset();
        try {
            (void)sync("poll");
        } catch (const std::exception& e) {
            poll_running_ = false;
            log(LOG_WARNING, std::string("poll: ") + e.what());
        }
    }
}

} // namespace tresim::daemon
