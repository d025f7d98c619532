// Compile-only check: every header sdbus-c++-xml2cpp generated from the XML in
// this folder builds with the project's warnings. tresimd and tresimctl use
// them through dbus_gen_dep (dbus/meson.build).

#include <string_view>
#include <type_traits>

#include "isim_adaptor.h"
#include "isim_proxy.h"
#include "job_adaptor.h"
#include "job_proxy.h"
#include "manager_adaptor.h"
#include "manager_proxy.h"
#include "mid_adaptor.h"
#include "mid_proxy.h"
#include "usim_adaptor.h"
#include "usim_proxy.h"

namespace {

using namespace std::string_view_literals;
namespace api = org::tresim1;

// The interface names (DESIGN.md §6) on both sides.
static_assert(api::Manager_adaptor::INTERFACE_NAME == "org.tresim1.Manager"sv);
static_assert(api::Mid_adaptor::INTERFACE_NAME == "org.tresim1.Mid"sv);
static_assert(api::Usim_adaptor::INTERFACE_NAME == "org.tresim1.Usim"sv);
static_assert(api::Isim_adaptor::INTERFACE_NAME == "org.tresim1.Isim"sv);
static_assert(api::Job_adaptor::INTERFACE_NAME == "org.tresim1.Job"sv);
static_assert(api::Manager_proxy::INTERFACE_NAME == "org.tresim1.Manager"sv);
static_assert(api::Mid_proxy::INTERFACE_NAME == "org.tresim1.Mid"sv);
static_assert(api::Usim_proxy::INTERFACE_NAME == "org.tresim1.Usim"sv);
static_assert(api::Isim_proxy::INTERFACE_NAME == "org.tresim1.Isim"sv);
static_assert(api::Job_proxy::INTERFACE_NAME == "org.tresim1.Job"sv);

// Adaptors leave every method and property to the daemon.
static_assert(std::is_abstract_v<api::Manager_adaptor>);
static_assert(std::is_abstract_v<api::Mid_adaptor>);
static_assert(std::is_abstract_v<api::Usim_adaptor>);
static_assert(std::is_abstract_v<api::Isim_adaptor>);
static_assert(std::is_abstract_v<api::Job_adaptor>);

} // namespace
