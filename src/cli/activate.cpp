// tresimctl activate MID [--slot N]

#include "cli.hpp"

namespace tresim::cli {

namespace {

struct ActivateOptions {
    std::string mid;
    std::uint32_t slot = 0;
};

} // namespace

Commands add_activate(CLI::App& app) {
    auto* sub = app.add_subcommand("activate", "make an inactive MID active in a modem slot");
    auto o = std::make_shared<ActivateOptions>();
    sub->add_option("MID", o->mid, "index, object path or ICCID")->required();
    sub->add_option("--slot", o->slot, "the slot, 0 .. Slots-1 (default 0)");
    return {{sub, [o](Context& ctx) {
                 const std::string path = ctx.resolve(o->mid);
                 MidProxy mid(ctx.bus(), path);
                 mid.Activate(o->slot);
                 print_done(ctx, path, "activated in slot " + std::to_string(o->slot));
             }}};
}

} // namespace tresim::cli
