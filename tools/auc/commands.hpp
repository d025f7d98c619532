#pragma once
// The tresim-auc subcommands, one file each.

#include "options.hpp"

namespace tresim::auc {

Command gen_command();
Command check_command();
Command resync_command();
Command suci_command();

} // namespace tresim::auc
