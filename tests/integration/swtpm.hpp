#pragma once
// A software TPM for one test: swtpm on free loopback ports with its own state
// folder, manufactured by swtpm_setup with EK certificates (RSA-2048 and ECC)
// signed by a local CA whose files live in the same temporary folder.
//
// Manufacturing takes about two seconds, so the first instance in a process
// manufactures a template state and every later instance starts from a copy
// of it: each test still gets a TPM nobody else has touched.

#include <csignal>
#include <string>
#include <sys/types.h>

namespace tresim::test {

class Swtpm {
public:
    Swtpm();  // manufactures (or copies) the state and starts swtpm
    ~Swtpm(); // stops swtpm and removes the state folder
    Swtpm(const Swtpm&) = delete;
    Swtpm& operator=(const Swtpm&) = delete;

    // "swtpm:host=127.0.0.1,port=N"
    std::string tcti() const;
    // N: the command port (the control port is N + 1). A new one at every start.
    int port() const noexcept { return port_; }
    // The local CA's root certificate that signed the EK certificate's issuer.
    std::string ca_root_cert() const;
    // The CA's intermediate (issuer) certificate.
    std::string ca_issuer_cert() const;
    const std::string& state_dir() const noexcept { return dir_; }

    // Power cycle: stop swtpm and start it again on the same state (a reboot;
    // PCRs reset, NV kept).
    void restart();
    // A power cut: SIGKILL (no TPM2_Shutdown, nothing saved but what the TPM
    // already wrote to its NV file), then start again on the same state.
    void power_cut();
    // Stops swtpm with `signal` (SIGTERM: an orderly stop) and waits for it.
    void stop(int signal = SIGTERM);
    void start();

private:
    std::string dir_;
    int port_ = 0;
    pid_t pid_ = -1;
};

// Runs a command, returns its exit status; output goes to the test log.
int run_command(const std::string& command);

// A fresh temporary folder, removed by the caller.
std::string make_temp_dir(const std::string& prefix);
void remove_tree(const std::string& path);

} // namespace tresim::test
