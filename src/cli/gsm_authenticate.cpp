// tresimctl gsm-authenticate MID --rand HEX: GSM security context (SRES, Kc).

#include "cli.hpp"

namespace tresim::cli {

namespace {

struct GsmOptions {
    std::string mid;
    std::string rand;
};

} // namespace

Commands add_gsm_authenticate(CLI::App& app) {
    auto* sub = app.add_subcommand("gsm-authenticate", "GSM context authentication (SRES, Kc)");
    auto o = std::make_shared<GsmOptions>();
    sub->add_option("MID", o->mid, "index, object path or ICCID")->required();
    sub->add_option("--rand", o->rand, "RAND, 16 bytes in hex")->required();
    return {{sub, [o](Context& ctx) {
                 const auto rand = parse_hex(o->rand, "rand");
                 const std::string path = ctx.resolve(o->mid);
                 MidProxy mid(ctx.bus(), path);
                 const auto [sres, kc] = mid.GsmAuthenticate(rand);
                 if (ctx.json) {
                     print_json({{"sres", hex(sres)}, {"kc", hex(kc)}});
                 } else {
                     print_fields({{"sres", hex(sres)}, {"kc", hex(kc)}});
                 }
             }}};
}

} // namespace tresim::cli
