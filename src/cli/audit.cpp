// tresimctl audit verify|export: the TPM-anchored audit record (docs/audit.md).

#include <iostream>

#include "cli.hpp"

namespace tresim::cli {

Commands add_audit(CLI::App& app) {
    auto* audit = app.add_subcommand("audit", "verify or export the audit record");
    audit->require_subcommand(1);
    auto* verify = audit->add_subcommand("verify", "replay the record against its TPM anchor");
    auto* exp = audit->add_subcommand("export", "print the record as one JSON document");
    return {
        {verify,
         [](Context& ctx) {
             ManagerProxy manager(ctx.bus());
             const auto [ok, records, message] = manager.AuditVerify();
             if (ctx.json) {
                 print_json({{"ok", ok}, {"records", records}, {"message", message}});
             } else {
                 Fields fields{{"result", ok ? "ok" : "FAILED"},
                               {"records", std::to_string(records)}};
                 if (!message.empty()) {
                     fields.emplace_back("message", message);
                 }
                 print_fields(fields);
             }
             if (!ok) {
                 // A failed verification is the daemon's result, not an error
                 // of the call; the exit status still tells scripts.
                 throw Failure("", "the audit record does not verify");
             }
         }},
        {exp,
         [](Context& ctx) {
             ManagerProxy manager(ctx.bus());
             const std::string text = manager.AuditExport();
             if (ctx.json) {
                 print_json(nlohmann::json::parse(text));
             } else {
                 std::cout << nlohmann::json::parse(text).dump(2) << '\n';
             }
         }},
    };
}

} // namespace tresim::cli
