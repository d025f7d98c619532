// tresimctl status: the Manager's properties and how many MIDs there are.

#include "cli.hpp"

namespace tresim::cli {

Commands add_status(CLI::App& app) {
    auto* sub = app.add_subcommand("status", "show the TE: TPM, platform state, MIDs");
    return {{sub, [](Context& ctx) {
                 auto proxy = sdbus::createProxy(ctx.bus(), kService, kManagerPath);
                 Properties props;
                 proxy->callMethod("GetAll")
                     .onInterface("org.freedesktop.DBus.Properties")
                     .withArguments(std::string(org::tresim1::Manager_proxy::INTERFACE_NAME))
                     .storeResultsTo(props);
                 const auto mids = ctx.mids();
                 if (ctx.json) {
                     nlohmann::json j = nlohmann::json::object();
                     for (const auto& [name, value] : props) {
                         j[snake(name)] = to_json(value);
                     }
                     j["mids"] = mids.size();
                     print_json(j);
                     return;
                 }
                 Fields fields;
                 for (const auto& [name, value] : props) {
                     std::string label = snake(name);
                     std::replace(label.begin(), label.end(), '_', ' ');
                     fields.emplace_back(label, to_text(value));
                 }
                 fields.emplace_back("mids", std::to_string(mids.size()));
                 print_fields(fields);
             }}};
}

} // namespace tresim::cli
