// tresimctl deactivate MID

#include "cli.hpp"

namespace tresim::cli {

Commands add_deactivate(CLI::App& app) {
    auto* sub = app.add_subcommand("deactivate", "make an active or suspended MID inactive");
    auto mid = std::make_shared<std::string>();
    sub->add_option("MID", *mid, "index, object path or ICCID")->required();
    return {{sub, [mid](Context& ctx) {
                 const std::string path = ctx.resolve(*mid);
                 MidProxy proxy(ctx.bus(), path);
                 proxy.Deactivate();
                 print_done(ctx, path, "deactivated");
             }}};
}

} // namespace tresim::cli
