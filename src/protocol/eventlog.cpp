#include "eventlog.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "tpm/hash_alg.hpp"
#include "tpm/keys.hpp"

namespace tresim::protocol {
namespace {

constexpr char kSpecId[] = "Spec ID Event03";          // 16 bytes with its terminating zero
constexpr char kStartupLocality[] = "StartupLocality"; // 16 bytes with its zero
constexpr std::size_t kSignatureSize = 16;
constexpr std::size_t kSha1Size = 20;
constexpr unsigned kMaxPcr = 23;
constexpr std::uint32_t kMaxEventData = 16u << 20; // a sanity bound on one event's data

[[noreturn]] void bad(const std::string& why) {
    throw InvalidArgument("event-log", why);
}

// The banks an event log may carry: the hashes tresim computes in software.
std::string bank_name(TPMI_ALG_HASH alg) {
    const tpm::HashAlgorithm* h = tpm::find_software_hash(alg);
    return std::string(h != nullptr ? h->name : "unknown");
}

// Little-endian reader over the log that refuses to run past its end.
class Reader {
public:
    explicit Reader(ByteView data) : data_(data) {}
    bool done() const noexcept { return at_ == data_.size(); }
    std::size_t offset() const noexcept { return at_; }

    ByteView take(std::size_t n, const char* what) {
        if (data_.size() - at_ < n) {
            bad(std::string("truncated in ") + what + " at offset " + std::to_string(at_));
        }
        const ByteView out = data_.subspan(at_, n);
        at_ += n;
        return out;
    }
    std::uint32_t u32(const char* what) {
        const ByteView b = take(4, what);
        return std::uint32_t{b[0]} | std::uint32_t{b[1]} << 8 | std::uint32_t{b[2]} << 16 |
               std::uint32_t{b[3]} << 24;
    }
    std::uint16_t u16(const char* what) {
        const ByteView b = take(2, what);
        return static_cast<std::uint16_t>(b[0] | b[1] << 8);
    }
    std::uint8_t u8(const char* what) { return take(1, what)[0]; }

private:
    ByteView data_;
    std::size_t at_ = 0;
};

void put_u32(Bytes& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) {
        out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    }
}
void put_u16(Bytes& out, std::uint16_t v) {
    out.push_back(static_cast<std::uint8_t>(v));
    out.push_back(static_cast<std::uint8_t>(v >> 8));
}
void put(Bytes& out, ByteView b) {
    out.insert(out.end(), b.begin(), b.end());
}

std::size_t known_size(TPMI_ALG_HASH alg) {
    const tpm::HashAlgorithm* h = tpm::find_software_hash(alg);
    return h != nullptr ? h->digest_size : 0;
}

} // namespace

EventLog parse_event_log(ByteView log) {
    Reader r(log);
    EventLog out;

    // The header: a TCG_PCClientPCREvent (SHA-1 format) holding TCG_EfiSpecIdEvent.
    const std::uint32_t pcr0 = r.u32("the header's PCR index");
    const std::uint32_t type0 = r.u32("the header's event type");
    const ByteView digest0 = r.take(kSha1Size, "the header's digest");
    const std::uint32_t size0 = r.u32("the header's event size");
    if (pcr0 != 0 || type0 != EV_NO_ACTION ||
        std::any_of(digest0.begin(), digest0.end(), [](std::uint8_t b) { return b != 0; })) {
        bad("the first event is not the Spec ID header (PCR 0, EV_NO_ACTION, zero digest)");
    }
    Reader spec(r.take(size0, "the Spec ID event"));
    const ByteView signature = spec.take(kSignatureSize, "the Spec ID signature");
    if (std::memcmp(signature.data(), kSpecId, kSignatureSize) != 0) {
        bad("no \"Spec ID Event03\" header: not a crypto-agile log");
    }
    spec.u32("the platform class");
    spec.take(3, "the spec version");
    spec.u8("uintnSize");
    const std::uint32_t algorithms = spec.u32("numberOfAlgorithms");
    if (algorithms == 0 || algorithms > 16) {
        bad("the Spec ID header lists " + std::to_string(algorithms) + " digest algorithms");
    }
    std::map<TPMI_ALG_HASH, std::size_t> sizes;
    for (std::uint32_t i = 0; i < algorithms; ++i) {
        const TPMI_ALG_HASH alg = spec.u16("a digest algorithm");
        const std::size_t size = spec.u16("a digest size");
        const std::size_t expected = known_size(alg);
        if (expected == 0) {
            bad("unknown digest algorithm 0x" +
                hex_encode(
                    Bytes{static_cast<std::uint8_t>(alg >> 8), static_cast<std::uint8_t>(alg)}) +
                " in the Spec ID header");
        }
        if (size != expected || sizes.contains(alg)) {
            bad(std::string("the Spec ID header gives ") + bank_name(alg) +
                " a wrong size or twice");
        }
        sizes[alg] = size;
        out.banks.push_back(alg);
    }
    const std::uint8_t vendor = spec.u8("vendorInfoSize");
    spec.take(vendor, "the vendor info");
    if (!spec.done()) {
        bad("the Spec ID event has trailing bytes");
    }

    // TCG_PCR_EVENT2 records.
    while (!r.done()) {
        const std::size_t at = r.offset();
        Event e;
        const std::uint32_t pcr = r.u32("an event's PCR index");
        if (pcr > kMaxPcr) {
            bad("the event at offset " + std::to_string(at) + " names PCR " + std::to_string(pcr));
        }
        e.pcr = pcr;
        e.type = r.u32("an event's type");
        const std::uint32_t count = r.u32("an event's digest count");
        if (count > sizes.size()) {
            bad("the event at offset " + std::to_string(at) + " has more digests than banks");
        }
        for (std::uint32_t i = 0; i < count; ++i) {
            const TPMI_ALG_HASH alg = r.u16("a digest algorithm");
            const auto s = sizes.find(alg);
            if (s == sizes.end()) {
                bad("the event at offset " + std::to_string(at) +
                    " has a digest of an algorithm the header does not list");
            }
            if (e.digests.contains(alg)) {
                bad("the event at offset " + std::to_string(at) + " has two " + bank_name(alg) +
                    " digests");
            }
            const ByteView d = r.take(s->second, "a digest");
            e.digests[alg] = Bytes(d.begin(), d.end());
        }
        const std::uint32_t size = r.u32("an event's data size");
        if (size > kMaxEventData) {
            bad("the event at offset " + std::to_string(at) + " claims " + std::to_string(size) +
                " bytes of data");
        }
        const ByteView data = r.take(size, "an event's data");
        e.data = Bytes(data.begin(), data.end());
        if (e.type == EV_NO_ACTION) {
            if (e.pcr == 0 && e.data.size() == kSignatureSize + 1 &&
                std::memcmp(e.data.data(), kStartupLocality, kSignatureSize) == 0) {
                out.startup_locality = e.data.back();
            }
            continue; // never extended
        }
        out.events.push_back(std::move(e));
    }
    return out;
}

tpm::PcrValues replay(const EventLog& log, const tpm::PcrSelection& selection) {
    const EVP_MD* md = tpm::evp_md(selection.bank);
    if (md == nullptr ||
        std::find(log.banks.begin(), log.banks.end(), selection.bank) == log.banks.end()) {
        bad(std::string("the log has no ") + bank_name(selection.bank) + " bank");
    }
    const std::size_t size = known_size(selection.bank);
    tpm::PcrValues out;
    out.bank = selection.bank;
    for (const unsigned pcr : selection.pcrs) {
        if (pcr > kMaxPcr) {
            bad("PCR " + std::to_string(pcr) + " does not exist");
        }
        Bytes v(size, 0);
        if (pcr == 0) {
            v.back() = log.startup_locality;
        }
        out.values[pcr] = std::move(v);
    }
    for (const Event& e : log.events) {
        const auto target = out.values.find(e.pcr);
        if (target == out.values.end()) {
            continue;
        }
        const auto d = e.digests.find(selection.bank);
        if (d == e.digests.end()) {
            bad(std::string("an event for PCR ") + std::to_string(e.pcr) + " has no " +
                bank_name(selection.bank) + " digest");
        }
        Bytes in = target->second;
        in.insert(in.end(), d->second.begin(), d->second.end());
        unsigned int len = 0;
        if (EVP_Digest(in.data(), in.size(), target->second.data(), &len, md, nullptr) != 1) {
            throw std::runtime_error("EVP_Digest failed");
        }
    }
    return out;
}

Bytes write_event_log(const EventLog& log) {
    Bytes out;
    // Header: TCG_PCClientPCREvent with TCG_EfiSpecIdEvent (SHA-256 only).
    Bytes spec;
    put(spec, ByteView(reinterpret_cast<const std::uint8_t*>(kSpecId), kSignatureSize));
    put_u32(spec, 0);  // platformClass: client
    spec.push_back(0); // specVersionMinor
    spec.push_back(2); // specVersionMajor
    spec.push_back(0); // specErrata
    spec.push_back(2); // uintnSize: UINT64
    put_u32(spec, 1);  // numberOfAlgorithms
    put_u16(spec, TPM2_ALG_SHA256);
    put_u16(spec, 32);
    spec.push_back(0); // vendorInfoSize
    put_u32(out, 0);
    put_u32(out, EV_NO_ACTION);
    out.insert(out.end(), kSha1Size, 0);
    put_u32(out, static_cast<std::uint32_t>(spec.size()));
    put(out, spec);

    const auto event2 = [&out](std::uint32_t pcr, std::uint32_t type, ByteView digest,
                               ByteView data) {
        put_u32(out, pcr);
        put_u32(out, type);
        put_u32(out, 1);
        put_u16(out, TPM2_ALG_SHA256);
        put(out, digest);
        put_u32(out, static_cast<std::uint32_t>(data.size()));
        put(out, data);
    };
    if (log.startup_locality != 0) {
        Bytes data(kStartupLocality, kStartupLocality + kSignatureSize);
        data.push_back(log.startup_locality);
        event2(0, EV_NO_ACTION, Bytes(32, 0), data);
    }
    for (const Event& e : log.events) {
        if (e.pcr > kMaxPcr) {
            throw InvalidArgument("event-log", "an event names PCR " + std::to_string(e.pcr));
        }
        const auto d = e.digests.find(TPM2_ALG_SHA256);
        if (d == e.digests.end() || d->second.size() != 32) {
            throw InvalidArgument("event-log", "an event for PCR " + std::to_string(e.pcr) +
                                                   " has no SHA-256 digest");
        }
        event2(e.pcr, e.type, d->second, e.data);
    }
    return out;
}

} // namespace tresim::protocol
