// tresim-auc resync: the network side of resynchronisation. Verifies MAC-S in
// AUTS and recovers SQN_MS.

#include "commands.hpp"
#include "usim/aka.hpp"

namespace tresim::auc {

namespace {

Fields run_resync(const Args& args) {
    const auto alg = make_algorithm(args);
    const usim::Rand rand = parse_hex_array<16>(args, "rand");
    const Bytes auts = hex_decode(args.required("auts"), "auts", 6 + alg->sizes().mac);

    const auto sqn_ms = usim::resync(*alg, rand, auts);
    Fields fields;
    if (sqn_ms) {
        fields.emplace_back("result", "success");
        fields.emplace_back("sqn_ms", sqn_hex(*sqn_ms));
    } else {
        fields.emplace_back("result", "mac-failure");
    }
    return fields;
}

} // namespace

Command resync_command() {
    Command cmd;
    cmd.name = "resync";
    cmd.description = "Recover SQN_MS from AUTS after a synchronisation failure (AuC side)";
    cmd.options = key_options();
    cmd.options.push_back({"rand", "RAND of the failed authentication, 16 bytes hex (required)"});
    cmd.options.push_back({"auts", "AUTS, hex: 14 bytes, or 6 + MAC length for TUAK (required)"});
    cmd.batch = true;
    cmd.run = run_resync;
    return cmd;
}

} // namespace tresim::auc
