// tresimctl authenticate MID --rand HEX --autn HEX: the USIM side of AKA.
// The output has the shape of `tresim-auc check` (docs/tresim-auc.md); a
// sync or MAC failure is a result, not an error (exit status 0).

#include "cli.hpp"

namespace tresim::cli {

namespace {

struct AuthOptions {
    std::string mid;
    std::string rand;
    std::string autn;
};

} // namespace

Commands add_authenticate(CLI::App& app) {
    auto* sub = app.add_subcommand("authenticate", "run AKA on an active MID (RAND, AUTN)");
    auto o = std::make_shared<AuthOptions>();
    sub->add_option("MID", o->mid, "index, object path or ICCID")->required();
    sub->add_option("--rand", o->rand, "RAND, 16 bytes in hex")->required();
    sub->add_option("--autn", o->autn, "AUTN in hex")->required();
    return {
        {sub, [o](Context& ctx) {
             const auto rand = parse_hex(o->rand, "rand");
             const auto autn = parse_hex(o->autn, "autn");
             const std::string path = ctx.resolve(o->mid);
             MidProxy mid(ctx.bus(), path);
             const auto [result, res, ck, ik, auts] = mid.Authenticate(rand, autn);
             nlohmann::json j = {{"result", result}};
             Fields fields{{"result", result}};
             if (result == "success") {
                 j["res"] = hex(res);
                 j["ck"] = hex(ck);
                 j["ik"] = hex(ik);
                 fields.insert(fields.end(), {{"res", hex(res)}, {"ck", hex(ck)}, {"ik", hex(ik)}});
             } else if (result == "sync-failure") {
                 j["auts"] = hex(auts);
                 fields.emplace_back("auts", hex(auts));
             }
             if (ctx.json) {
                 print_json(j);
             } else {
                 print_fields(fields);
             }
         }}};
}

} // namespace tresim::cli
