#pragma once
// tresimd's start, event loop and stop (main.cpp only calls run()).

namespace tresim::daemon {

inline constexpr int kExitConfig = 78; // EX_CONFIG: systemd does not restart

int run(int argc, char** argv);

} // namespace tresim::daemon
