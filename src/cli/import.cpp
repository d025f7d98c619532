// tresimctl import FILE [--approval FILE]: ImportMidFromFd with the profile's
// descriptor, so the profile (K, OPc) never enters this process's memory or
// the bus daemon's.

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <iostream>
#include <unistd.h>

#include "cli.hpp"

namespace tresim::cli {

namespace {

struct ImportOptions {
    std::string profile;
    std::string approval;
};

} // namespace

Commands add_import(CLI::App& app) {
    auto* sub = app.add_subcommand("import", "import a MID from a profile file");
    auto o = std::make_shared<ImportOptions>();
    sub->add_option("FILE", o->profile, "the profile (docs/profile-format.md)")->required();
    sub->add_option("--approval", o->approval,
                    "approval JSON file: a complete approval, or the authority of a stored one");
    return {{sub, [o](Context& ctx) {
                 const std::string approval =
                     o->approval.empty() ? std::string() : read_text_file(o->approval);
                 const int fd = ::open(o->profile.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
                 if (fd < 0) {
                     throw Failure("", o->profile + ": " + std::strerror(errno));
                 }
                 const sdbus::UnixFd handle(fd, sdbus::adopt_fd);
                 ManagerProxy manager(ctx.bus());
                 const std::string path = manager.ImportMidFromFd(handle, approval);
                 MidProxy mid(ctx.bus(), path);
                 const std::int64_t index = mid.Index();
                 if (ctx.json) {
                     print_json({{"mid", path}, {"index", index}});
                 } else {
                     print_fields({{"mid", path}, {"index", std::to_string(index)}});
                 }
             }}};
}

} // namespace tresim::cli
