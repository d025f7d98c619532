// tresimctl list: every MID, one line each, ordered by index.

#include <iostream>

#include "cli.hpp"

namespace tresim::cli {

namespace {

std::string text(const Properties& p, const char* name) {
    return p.contains(name) ? to_text(p.at(name)) : "";
}

} // namespace

Commands add_list(CLI::App& app) {
    auto* sub = app.add_subcommand("list", "list the installed MIDs");
    return {
        {sub, [](Context& ctx) {
             const auto mids = ctx.mids();
             std::vector<std::pair<std::int64_t, std::string>> order;
             for (const auto& [path, interfaces] : mids) {
                 const Properties& p = interfaces.at(org::tresim1::Mid_proxy::INTERFACE_NAME);
                 order.emplace_back(p.contains("Index") ? p.at("Index").get<std::int64_t>() : 0,
                                    path);
             }
             std::sort(order.begin(), order.end());
             nlohmann::json list = nlohmann::json::array();
             if (!ctx.json && order.empty()) {
                 std::cout << "No MIDs were found\n";
             }
             for (const auto& [index, path] : order) {
                 const Properties& p =
                     mids.at(sdbus::ObjectPath(path)).at(org::tresim1::Mid_proxy::INTERFACE_NAME);
                 if (ctx.json) {
                     nlohmann::json j = {{"path", path}};
                     for (const auto& [name, value] : p) {
                         j[snake(name)] = to_json(value);
                     }
                     list.push_back(j);
                     continue;
                 }
                 std::string line = path + " [" + text(p, "Iccid") + "] " + text(p, "State");
                 if (p.contains("Slot") && p.at("Slot").get<std::int32_t>() >= 0) {
                     line += " (slot " + text(p, "Slot") + ")";
                 }
                 if (!text(p, "Label").empty()) {
                     line += " " + text(p, "Label");
                 }
                 std::cout << line << '\n';
             }
             if (ctx.json) {
                 print_json(nlohmann::json{{"mids", list}});
             }
         }}};
}

} // namespace tresim::cli
