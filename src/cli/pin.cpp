// tresimctl pin verify|change|unblock MID ...
// PINs on a command line are visible in ps; this mirrors mmcli's --pin.

#include "cli.hpp"

namespace tresim::cli {

namespace {

struct PinOptions {
    std::string mid;
    std::string first;
    std::string second;
};

} // namespace

Commands add_pin(CLI::App& app) {
    auto* pin = app.add_subcommand("pin", "verify, change or unblock a MID's PIN");
    pin->require_subcommand(1);
    auto o = std::make_shared<PinOptions>();

    auto* verify = pin->add_subcommand("verify", "verify the PIN");
    verify->add_option("MID", o->mid, "index, object path or ICCID")->required();
    verify->add_option("PIN", o->first, "4-8 digits")->required();

    auto* change = pin->add_subcommand("change", "change the PIN");
    change->add_option("MID", o->mid, "index, object path or ICCID")->required();
    change->add_option("OLD", o->first, "the current PIN")->required();
    change->add_option("NEW", o->second, "the new PIN")->required();

    auto* unblock = pin->add_subcommand("unblock", "unblock with the PUK and set a new PIN");
    unblock->add_option("MID", o->mid, "index, object path or ICCID")->required();
    unblock->add_option("PUK", o->first, "the PUK")->required();
    unblock->add_option("NEW", o->second, "the new PIN")->required();

    return {
        {verify,
         [o](Context& ctx) {
             const std::string path = ctx.resolve(o->mid);
             MidProxy(ctx.bus(), path).VerifyPin(o->first);
             print_done(ctx, path, "PIN verified");
         }},
        {change,
         [o](Context& ctx) {
             const std::string path = ctx.resolve(o->mid);
             MidProxy(ctx.bus(), path).ChangePin(o->first, o->second);
             print_done(ctx, path, "PIN changed");
         }},
        {unblock,
         [o](Context& ctx) {
             const std::string path = ctx.resolve(o->mid);
             MidProxy(ctx.bus(), path).UnblockPin(o->first, o->second);
             print_done(ctx, path, "PIN unblocked");
         }},
    };
}

} // namespace tresim::cli
