// tresimctl show MID: every property of one MID (Mid, and Isim when present).

#include <iostream>

#include "cli.hpp"

namespace tresim::cli {

Commands add_show(CLI::App& app) {
    auto* sub = app.add_subcommand("show", "show one MID's properties");
    auto mid = std::make_shared<std::string>();
    sub->add_option("MID", *mid, "index, object path or ICCID")->required();
    return {{sub, [mid](Context& ctx) {
                 const std::string path = ctx.resolve(*mid);
                 const Interfaces interfaces = ctx.mids().at(sdbus::ObjectPath(path));
                 nlohmann::json j = {{"path", path}};
                 Fields fields{{"path", path}};
                 for (const auto& [interface, props] : interfaces) {
                     for (const auto& [name, value] : props) {
                         j[snake(name)] = to_json(value);
                         std::string label = snake(name);
                         std::replace(label.begin(), label.end(), '_', ' ');
                         fields.emplace_back(label, to_text(value));
                     }
                 }
                 if (ctx.json) {
                     print_json(j);
                 } else {
                     print_fields(fields);
                 }
             }}};
}

} // namespace tresim::cli
