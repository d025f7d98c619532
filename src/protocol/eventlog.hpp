#pragma once
// TCG PC Client Platform Firmware Profile event logs, crypto-agile format
// (TCG PFP spec §10: the first event is a TCG_PCClientPCREvent in SHA-1 format
// carrying the "Spec ID Event03" header with the digest sizes; every following
// event is a TCG_PCR_EVENT2 with a TPML_DIGEST_VALUES), as Linux exposes it in
// /sys/kernel/security/tpm0/binary_bios_measurements. The Provisioning Server
// replays a device's log into PCR values (docs/protocol.md §2 step 5); the
// tests and the demo write logs for the PCR extensions they perform on swtpm.

#include <cstdint>
#include <map>
#include <vector>

#include <tss2/tss2_tpm2_types.h>

#include "tpm/attest.hpp"
#include "usim/bytes.hpp"

namespace tresim::protocol {

constexpr std::uint32_t EV_NO_ACTION = 0x00000003;
constexpr std::uint32_t EV_SEPARATOR = 0x00000004;
constexpr std::uint32_t EV_S_CRTM_VERSION = 0x00000008;
constexpr std::uint32_t EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001;
constexpr std::uint32_t EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003;

struct Event {
    unsigned pcr = 0;
    std::uint32_t type = 0;
    std::map<TPMI_ALG_HASH, Bytes> digests; // one per bank the log carries
    Bytes data;                             // the event data
};

struct EventLog {
    std::vector<TPMI_ALG_HASH> banks;  // from the Spec ID event
    std::uint8_t startup_locality = 0; // from a "StartupLocality" EV_NO_ACTION event
    std::vector<Event> events;         // after the header, EV_NO_ACTION ones excluded
};

// Parses a whole log. InvalidArgument("event-log") naming what is wrong
// (truncated, no Spec ID header, an unknown digest algorithm, PCR > 23, ...).
EventLog parse_event_log(ByteView log);

// Replays the log's events into the PCRs of `selection` (all start at zero
// except PCR 0, whose last byte is the startup locality). A bank the log does
// not carry is InvalidArgument("event-log").
tpm::PcrValues replay(const EventLog& log, const tpm::PcrSelection& selection);

// Writes a log in the same format (SHA-256 bank only, with a StartupLocality
// event when startup_locality is not 0).
Bytes write_event_log(const EventLog& log);

} // namespace tresim::protocol
