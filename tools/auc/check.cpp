// tresim-auc check: the USIM side. Verifies AUTN against an SQN state built from
// the highest SQN the USIM has accepted, and answers RES/CK/IK, AUTS or a MAC failure.

#include <variant>

#include "commands.hpp"
#include "usim/aka.hpp"

namespace tresim::auc {

namespace {

Fields run_check(const Args& args) {
    const auto alg = make_algorithm(args);
    const usim::Rand rand = parse_hex_array<16>(args, "rand");
    const Bytes autn = hex_decode(args.required("autn"), "autn", 8 + alg->sizes().mac);
    usim::SqnConfig config;
    config.ind_bits = parse_unsigned(args, "ind-bits", 0, 10, config.ind_bits);
    config.validate();
    const std::uint64_t sqn_ms = parse_sqn(args, "sqn-ms");
    const usim::SqnState state = usim::SqnState::from_highest(sqn_ms, config);

    const usim::AkaResult result = usim::usim_authenticate(*alg, state, rand, autn);
    Fields fields;
    if (const auto* ok = std::get_if<usim::AkaSuccess>(&result)) {
        fields.emplace_back("result", "success");
        fields.emplace_back("res", hex_encode(ok->res));
        fields.emplace_back("ck", ok->ck.reveal_hex());
        fields.emplace_back("ik", ok->ik.reveal_hex());
        fields.emplace_back("sqn", sqn_hex(ok->sqn));
    } else if (const auto* sync = std::get_if<usim::AkaSyncFailure>(&result)) {
        fields.emplace_back("result", "sync-failure");
        fields.emplace_back("auts", hex_encode(sync->auts));
    } else {
        fields.emplace_back("result", "mac-failure");
    }
    return fields;
}

} // namespace

Command check_command() {
    Command cmd;
    cmd.name = "check";
    cmd.description = "Verify AUTN and answer as a USIM would (RES/CK/IK, AUTS or MAC failure)";
    cmd.options = key_options();
    cmd.options.push_back({"rand", "RAND, 16 bytes hex (required)"});
    cmd.options.push_back({"autn", "AUTN, hex: 16 bytes, or 8 + MAC length for TUAK (required)"});
    cmd.options.push_back(
        {"sqn-ms", "highest SQN the USIM has accepted so far, 6 bytes hex (required)"});
    cmd.options.push_back({"ind-bits",
                           "IND length of the SQN array (TS 33.102 Annex C), 0 to 10 "
                           "(default 5)",
                           "N"});
    cmd.batch = true;
    cmd.run = run_check;
    return cmd;
}

} // namespace tresim::auc
