// tresimctl suci MID: a fresh SUCI concealing the MID's SUPI.

#include "cli.hpp"

namespace tresim::cli {

Commands add_suci(CLI::App& app) {
    auto* sub = app.add_subcommand("suci", "compute a SUCI for an active MID");
    auto mid = std::make_shared<std::string>();
    sub->add_option("MID", *mid, "index, object path or ICCID")->required();
    return {{sub, [mid](Context& ctx) {
                 const std::string path = ctx.resolve(*mid);
                 MidProxy proxy(ctx.bus(), path);
                 const auto [suci, output] = proxy.GetSuci();
                 if (ctx.json) {
                     print_json({{"suci", suci}, {"scheme_output", hex(output)}});
                 } else {
                     print_fields({{"suci", suci}, {"scheme output", hex(output)}});
                 }
             }}};
}

} // namespace tresim::cli
