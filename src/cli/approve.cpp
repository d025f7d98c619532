// tresimctl approve FILE: store a policy authority's approval (AddApproval).

#include <iostream>

#include "cli.hpp"

namespace tresim::cli {

Commands add_approve(CLI::App& app) {
    auto* sub = app.add_subcommand("approve", "store an approval of the platform state");
    auto file = std::make_shared<std::string>();
    sub->add_option("FILE", *file, "approval JSON (docs/dbus-api.md#approval-json)")->required();
    return {{sub, [file](Context& ctx) {
                 const std::string approval = read_text_file(*file);
                 ManagerProxy manager(ctx.bus());
                 manager.AddApproval(approval);
                 if (ctx.json) {
                     print_json(nlohmann::json{{"result", "approved"}});
                 } else {
                     std::cout << "approval stored\n";
                 }
             }}};
}

} // namespace tresim::cli
