// tresimd: the tresim Trusted Environment on D-Bus (docs/dbus-api.md).

#include "daemon.hpp"

int main(int argc, char** argv) {
    return tresim::daemon::run(argc, argv);
}
