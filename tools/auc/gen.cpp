// tresim-auc gen: the network side. Every function output for one RAND/SQN/AMF,
// as 3GPP test data lists them, plus AUTN and (Milenage) the GSM SRES and Kc.

#include <cstring>

#include "commands.hpp"
#include "usim/aka.hpp"
#include "usim/gsm.hpp"

namespace tresim::auc {

namespace {

Fields run_gen(const Args& args) {
    std::string opc;
    const auto alg = make_algorithm(args, &opc);
    const bool random = !args.has("rand");
    const usim::Rand rand = random ? usim::random_rand() : parse_hex_array<16>(args, "rand");
    const std::uint64_t sqn = parse_sqn(args, "sqn");
    const usim::Amf amf = parse_hex_array<2>(args, "amf");

    const usim::AllOutputs out = usim::generate_all(*alg, rand, sqn, amf);

    // AUTN = (SQN xor AK) || AMF || MAC-A (TS 33.102 §6.3.2).
    Bytes autn(6);
    store_be(sqn, autn);
    xor_into(autn, autn, out.ak);
    autn.insert(autn.end(), amf.begin(), amf.end());
    autn.insert(autn.end(), out.mac_a.begin(), out.mac_a.end());

    Fields fields;
    if (random) {
        fields.emplace_back("rand", hex_encode(rand));
    }
    fields.emplace_back("autn", hex_encode(autn));
    fields.emplace_back("xres", hex_encode(out.res));
    fields.emplace_back("ck", out.ck.reveal_hex());
    fields.emplace_back("ik", out.ik.reveal_hex());
    fields.emplace_back("ak", hex_encode(out.ak));
    fields.emplace_back("mac_a", hex_encode(out.mac_a));
    fields.emplace_back("mac_s", hex_encode(out.mac_s));
    fields.emplace_back("ak_star", hex_encode(out.ak_star));
    fields.emplace_back("opc", std::move(opc));
    if (std::strcmp(alg->name(), "milenage") == 0) {
        fields.emplace_back("sres", hex_encode(usim::c2(out.res)));
        const usim::Kc kc = usim::c3(out.ck.view(), out.ik.view());
        fields.emplace_back("kc", hex_encode(kc.view()));
    }
    return fields;
}

} // namespace

Command gen_command() {
    Command cmd;
    cmd.name = "gen";
    cmd.description = "Generate an authentication vector (AuC side)";
    cmd.options = key_options();
    cmd.options.push_back({"rand", "RAND, 16 bytes hex (random when omitted, then printed)"});
    cmd.options.push_back({"sqn", "SQN, 6 bytes hex (required)"});
    cmd.options.push_back({"amf", "AMF, 2 bytes hex (required)"});
    cmd.batch = true;
    cmd.run = run_gen;
    return cmd;
}

} // namespace tresim::auc
