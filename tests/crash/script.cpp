#include "script.hpp"

#include <csignal>
#include <fcntl.h>
#include <sstream>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

#include "te/profile.hpp"

namespace tresim::test::crash {

std::string describe(const View& v) {
    std::ostringstream o;
    for (int n = 0; n < kProfiles; ++n) {
        const MidView& m = v[static_cast<std::size_t>(n)];
        o << " [" << n << ": ";
        if (!m.present) {
            o << "absent]";
            continue;
        }
        o << m.state << " slot=" << m.slot << " sqn=0x" << std::hex << m.sqn << std::dec << "]";
    }
    return o.str();
}

const char* kind_name(OpKind k) {
    switch (k) {
    case OpKind::Import:
        return "import";
    case OpKind::Activate:
        return "activate";
    case OpKind::Deactivate:
        return "deactivate";
    case OpKind::Remove:
        return "remove";
    case OpKind::Aka:
        return "aka";
    }
    return "?";
}

View after(View v, const Op& op) {
    MidView& m = v[static_cast<std::size_t>(op.n)];
    switch (op.kind) {
    case OpKind::Import:
        m = MidView{true, "inactive", -1, 0, 0};
        break;
    case OpKind::Activate:
        m.state = "active";
        m.slot = static_cast<int>(op.slot);
        break;
    case OpKind::Deactivate:
        m.state = "inactive";
        m.slot = -1;
        break;
    case OpKind::Remove:
        m = MidView{};
        break;
    case OpKind::Aka:
        m.sqn = op.sqn;
        break;
    }
    return v;
}

std::vector<Op> make_script(View v, std::mt19937_64& rng) {
    std::vector<Op> ops;
    const int count = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < count; ++i) {
        std::vector<std::pair<int, Op>> choices; // weight, op
        std::set<unsigned> used;
        for (const MidView& m : v) {
            if (m.present && m.state == "active") {
                used.insert(static_cast<unsigned>(m.slot));
            }
        }
        for (int n = 0; n < kProfiles; ++n) {
            const MidView& m = v[static_cast<std::size_t>(n)];
            if (!m.present) {
                choices.push_back({4, Op{OpKind::Import, n, 0, 0}});
            } else if (m.state == "inactive") {
                for (unsigned s = 0; s < kSlots; ++s) {
                    if (used.count(s) == 0) {
                        choices.push_back({4, Op{OpKind::Activate, n, s, 0}});
                        break;
                    }
                }
                choices.push_back({1, Op{OpKind::Remove, n, 0, 0}});
            } else if (m.state == "active") {
                const std::uint64_t seq = (m.sqn >> kIndBits) + 1;
                const std::uint64_t ind = rng() % (1u << kIndBits);
                choices.push_back({12, Op{OpKind::Aka, n, 0, (seq << kIndBits) | ind}});
                choices.push_back({2, Op{OpKind::Deactivate, n, 0, 0}});
            }
        }
        int total = 0;
        for (const auto& c : choices) {
            total += c.first;
        }
        int pick = static_cast<int>(rng() % static_cast<std::uint64_t>(total));
        for (const auto& [weight, op] : choices) {
            if ((pick -= weight) < 0) {
                ops.push_back(op);
                v = after(v, op);
                break;
            }
        }
    }
    return ops;
}

std::string iccid(int n) {
    const std::string body = "894902000000" + std::to_string(2000000 + n);
    for (char d = '0'; d <= '9'; ++d) {
        if (te::luhn_valid(body + d)) {
            return body + d;
        }
    }
    return body;
}

const char* mode_name(KillMode m) {
    switch (m) {
    case KillMode::None:
        return "none";
    case KillMode::Delay:
        return "delay";
    case KillMode::AfterDone:
        return "after-done";
    case KillMode::InOp:
        return "in-op";
    case KillMode::TpmCommand:
        return "tpm-command";
    case KillMode::TpmResponse:
        return "tpm-response";
    case KillMode::TpmNv:
        return "tpm-nv";
    }
    return "?";
}

std::string tail(const std::vector<std::string>& lines) {
    std::string s;
    for (const std::string& l : lines) {
        s += "\n    " + l;
    }
    return s;
}

Outcome Runner::run(const std::vector<std::string>& base_args, int tpm_port, const Plan& plan,
                    const std::string& stderr_path, const std::function<void()>& before_kill) {
    std::vector<std::string> args = base_args;
    args.insert(args.begin(), worker_);
    args.push_back("--tcti");
    args.push_back(proxy_.tcti());
    for (const Op& op : plan.ops) {
        args.push_back(op.arg());
    }
    std::vector<char*> argv;
    for (std::string& a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);

    Outcome out;
    pid_t pid = -1;
    auto kill_now = [&] {
        if (!out.killed) {
            proxy_.hold();
            before_kill();
            trace("kill worker");
            kill(pid, SIGKILL);
            out.killed = true;
        }
    };
    // TPM-aimed kills: armed when operation k begins.
    std::optional<std::uint64_t> target; // command number
    bool at_response = false;
    bool nv_armed = false;
    proxy_.begin(tpm_port, [&](const TpmProxy::Message& m) {
        if (out.killed) {
            return false;
        }
        bool hit = false;
        if (target && m.n == *target && m.command != at_response) {
            hit = true;
        } else if (nv_armed && is_nv_write(m.code) && m.command != plan.nv_response) {
            hit = true;
        }
        if (!hit) {
            return true;
        }
        out.tpm_kill = std::string(m.command ? "before " : "inside ") + code_name(m.code);
        kill_now();
        return false;
    });

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        throw std::runtime_error("pipe failed");
    }
    const auto t0 = Clock::now();
    pid = fork();
    if (pid < 0) {
        throw std::runtime_error("fork failed");
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        const int err = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (err >= 0) {
            dup2(err, STDERR_FILENO);
        }
        execv(argv[0], argv.data());
        _exit(127);
    }
    close(fds[1]);

    std::optional<Clock::time_point> deadline;
    auto after_ms = [&](double max_ms) {
        std::uniform_real_distribution<double> d(0, max_ms);
        return Clock::now() + std::chrono::microseconds(static_cast<long>(d(rng_) * 1000));
    };
    if (plan.mode == KillMode::Delay) {
        deadline = after_ms(timing_.script_ms(plan.ops) * 1.1);
    }
    auto t_last = t0;
    std::uint64_t commands_at_begin = 0;
    std::string buffer;
    const auto give_up = t0 + std::chrono::seconds(60);
    bool eof = false;
    std::vector<pollfd> pfds;
    while (!eof) {
        int timeout_ms = 1000;
        if (deadline && !out.killed) {
            const auto left =
                std::chrono::duration_cast<std::chrono::microseconds>(*deadline - Clock::now())
                    .count();
            if (left <= 0) {
                kill_now();
            } else {
                timeout_ms = static_cast<int>((left + 999) / 1000);
            }
        }
        if (Clock::now() > give_up) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
            close(fds[0]);
            proxy_.drop();
            throw std::runtime_error("te_worker hangs (60 s)");
        }
        pfds.clear();
        pfds.push_back({fds[0], POLLIN, 0});
        proxy_.add_fds(pfds);
        if (poll(pfds.data(), pfds.size(), timeout_ms) <= 0) {
            continue;
        }
        // The worker's lines first: a line is written before the TPM
        // commands that follow it, so an operation is armed in time.
        if ((pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            char chunk[4096];
            const ssize_t n = read(fds[0], chunk, sizeof(chunk));
            if (n <= 0) {
                eof = true;
            } else {
                buffer.append(chunk, static_cast<std::size_t>(n));
            }
        }
        std::size_t nl = 0;
        while ((nl = buffer.find('\n')) != std::string::npos) {
            const std::string line = buffer.substr(0, nl);
            buffer.erase(0, nl + 1);
            const auto now = Clock::now();
            const double ms = std::chrono::duration<double, std::milli>(now - t_last).count();
            t_last = now;
            out.lines.push_back(line);
            trace("worker: " + line);
            if (line.rfind("open ", 0) == 0) {
                out.opened = true;
                if (!out.killed) {
                    timing_.learn(timing_.open_ms, ms);
                }
            } else if (line.rfind("begin ", 0) == 0) {
                const std::size_t i = out.began++;
                const OpKind kind = plan.ops.at(i).kind;
                commands_at_begin = proxy_.commands();
                if (kind == OpKind::Aka) {
                    const auto r = line.find(" rand=");
                    const auto a = line.find(" autn=");
                    out.challenges[i] = {hex_decode_array<16>(line.substr(r + 6, 32), "rand"),
                                         hex_decode(line.substr(a + 6), "autn")};
                }
                if (i == plan.k && !out.killed) {
                    const double avg = timing_.op_ms.at(kind);
                    const auto cmds = static_cast<std::uint64_t>(timing_.op_commands.at(kind)) + 1;
                    switch (plan.mode) {
                    case KillMode::InOp:
                        // Half anywhere in the operation, half near its end,
                        // where the commit and the audit extend are.
                        deadline = rng_() % 2 == 0
                                       ? after_ms(avg * 1.2)
                                       : after_ms(avg * 0.5) + std::chrono::microseconds(
                                                                   static_cast<long>(avg * 600));
                        break;
                    case KillMode::TpmCommand:
                    case KillMode::TpmResponse:
                        target = commands_at_begin + 1 + rng_() % cmds;
                        at_response = plan.mode == KillMode::TpmResponse;
                        break;
                    case KillMode::TpmNv:
                        nv_armed = true;
                        break;
                    default:
                        break;
                    }
                }
            } else if (line.rfind("done ", 0) == 0) {
                const std::size_t i = out.done++;
                const OpKind kind = plan.ops.at(i).kind;
                if (!out.killed) {
                    timing_.learn(timing_.op_ms.at(kind), ms);
                    timing_.learn(timing_.op_commands.at(kind),
                                  static_cast<double>(proxy_.commands() - commands_at_begin));
                }
                nv_armed = false; // the operation had no NV write (an SQN update)
                if (plan.mode == KillMode::AfterDone && out.done == plan.k) {
                    kill_now();
                }
            } else if (line == "end") {
                out.ended = true;
            }
        }
        if (!eof) {
            proxy_.service(pfds, 1);
        }
    }
    close(fds[0]);
    waitpid(pid, &out.status, 0);
    out.commands = proxy_.commands();
    proxy_.drop();
    if (plan.mode != KillMode::None && !out.killed) {
        before_kill(); // the worker finished first: still cut the power when planned
    }
    // Where it died, from what it had written.
    if (!out.opened) {
        out.phase = "open";
    } else if (out.in_progress()) {
        out.phase = kind_name(plan.ops.at(out.done).kind);
    } else if (out.ended) {
        out.phase = "finished";
    } else {
        out.phase = "between";
    }
    return out;
}

} // namespace tresim::test::crash
