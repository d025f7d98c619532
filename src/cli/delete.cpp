// tresimctl delete MID: final; the MID must be inactive.

#include "cli.hpp"

namespace tresim::cli {

Commands add_delete(CLI::App& app) {
    auto* sub = app.add_subcommand("delete", "delete an inactive MID (final)");
    auto mid = std::make_shared<std::string>();
    sub->add_option("MID", *mid, "index, object path or ICCID")->required();
    return {{sub, [mid](Context& ctx) {
                 const std::string path = ctx.resolve(*mid);
                 MidProxy proxy(ctx.bus(), path);
                 proxy.Delete();
                 print_done(ctx, path, "deleted");
             }}};
}

} // namespace tresim::cli
