// tresimctl pcrs: the current values of the PCRs MID policies bind to
// (GetPlatformState), in the forms `tresim-approve sign --pcrs` reads: the text
// form "sha256:0=HEX,2=HEX" and, with --json, {"bank": ..., "values": {...}}.

#include <iostream>

#include "cli.hpp"

namespace tresim::cli {

Commands add_pcrs(CLI::App& app) {
    auto* sub = app.add_subcommand(
        "pcrs", "show the platform state (the PCRs of PcrSelection) for an authority to approve");
    return {{sub, [](Context& ctx) {
                 ManagerProxy manager(ctx.bus());
                 const std::string selection = manager.PcrSelection();
                 const std::string bank = selection.substr(0, selection.find(':'));
                 const auto values = manager.GetPlatformState();
                 if (ctx.json) {
                     nlohmann::json v = nlohmann::json::object();
                     for (const auto& [index, value] : values) {
                         v[std::to_string(index)] = hex(value);
                     }
                     print_json({{"bank", bank}, {"values", v}});
                     return;
                 }
                 std::string line = bank + ":";
                 bool first = true;
                 for (const auto& [index, value] : values) {
                     line += (first ? "" : ",") + std::to_string(index) + "=" + hex(value);
                     first = false;
                 }
                 std::cout << line << '\n';
             }}};
}

} // namespace tresim::cli
