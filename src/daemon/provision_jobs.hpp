#pragma once
// Provisioning jobs on the bus: org.tresim1.Job objects at
// /org/tresim1/job/<n>, a worker thread that runs the sessions (provision.hpp)
// off the bus loop, the periodic poll with jittered exponential back-off, and
// the switch-slot fallback timer.
//
// Threads: the worker only talks to the network and to the TE (whose calls
// are serialized by its mutex). Everything that touches the bus is posted back
// to the loop thread: post() queues it and wakes the loop through an eventfd
// (wakeup_fd()), whose owner calls dispatch().

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include <sdbus-c++/sdbus-c++.h>

#include "provision.hpp"

namespace tresim::daemon {

class JobObject;

struct ProvisionerOptions {
    ClientOptions client;
    unsigned retry_min = 30;   // first back-off after a failed poll, seconds
    unsigned retry_max = 3600; // back-off ceiling
    unsigned job_linger = 120; // seconds a finished job stays on the bus
};

class Provisioner {
public:
    // `te_changed` runs on the loop thread after a session or a fallback
    // changed the TE (the service refreshes its MID objects).
    Provisioner(sdbus::IConnection& connection, te::TrustedEnvironment& te, TePolicy policy,
                ProvisionerOptions options, std::function<void()> te_changed);
    ~Provisioner();
    Provisioner(const Provisioner&) = delete;
    Provisioner& operator=(const Provisioner&) = delete;

    const TePolicy& policy() const noexcept { return policy_; }

    // Loop thread. Provision: `server` must be pinned ("" = the first);
    // InvalidArgument (TeError) otherwise. Returns the job's path.
    sdbus::ObjectPath provision(const std::string& server, const std::string& activation_code,
                                const std::string& confirmation_code);
    sdbus::ObjectPath sync(const char* kind = "sync");

    // After Mid.ConfirmActivation or anything that changes pending switches.
    void switches_changed();

    // The loop integration.
    int wakeup_fd() const noexcept { return wakeup_fd_; }
    void dispatch();  // runs what the worker posted
    int timeout_ms(); // until the next timer (-1: none)
    void tick();      // poll timer, switch fallbacks, job removal

private:
    using Clock = std::chrono::steady_clock;
    struct Task {
        std::uint64_t job = 0;
        std::vector<SessionRequest> requests;
    };

    sdbus::ObjectPath add_job(const char* kind, std::vector<SessionRequest> requests);
    void post(std::function<void()> f);
    void worker();
    void schedule_poll(bool failed);
    void finish(std::uint64_t id, const SessionOutcome& outcome, bool poll);

    sdbus::IConnection& connection_;
    te::TrustedEnvironment& te_;
    TePolicy policy_;
    ProvisionerOptions options_;
    std::function<void()> te_changed_;
    int wakeup_fd_ = -1;

    // Loop thread only.
    std::uint64_t next_job_ = 1;
    std::map<std::uint64_t, std::unique_ptr<JobObject>> jobs_;
    std::map<std::uint64_t, Clock::time_point> ended_;
    std::optional<Clock::time_point> next_poll_;
    unsigned poll_failures_ = 0;
    bool poll_running_ = false;
    std::optional<std::int64_t> next_deadline_; // earliest pending switch, Unix seconds
    std::mt19937_64 random_;

    // Shared with the worker.
    std::mutex mutex_;
    std::condition_variable wake_worker_;
    std::deque<Task> tasks_;
    std::vector<std::function<void()>> posted_;
    bool stopping_ = false;
    std::thread thread_;
};

std::string job_path(std::uint64_t n);

} // namespace tresim::daemon
