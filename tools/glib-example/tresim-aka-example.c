/*
 * tresim-aka-example: one AKA through tresimd, written the way a
 * ModemManager plugin talks to it (docs/dbus-api.md, "Writing a ModemManager
 * plugin"): GDBus only, every call asynchronous on a GMainLoop, errors
 * branched on by code in a registered error domain.
 *
 *   tresim-aka-example [--session] [--json] (--mid PATH|ICCID | --slot N)
 *                      --rand HEX --autn HEX
 *
 * The MID is found with a GDBusObjectManagerClient on /org/tresim1 (by
 * ICCID, or as the active MID of a slot, from the properties it caches), or
 * addressed by its object path directly with a GDBusProxy. Then
 * org.tresim1.Usim.Authenticate(ay rand, ay autn) -> (s result, ay res,
 * ay ck, ay ik, ay auts) is called, and the result printed:
 *
 *   result: success          {"result":"success","res":"..","ck":"..","ik":".."}
 *   res:    a54211d5e3ba50bf {"result":"sync-failure","auts":".."}
 *   ck:     ...              {"result":"mac-failure"}
 *   ik:     ...
 *
 * A failed call prints the D-Bus error name and which error of the list it
 * is (`{"result":"error","error":"org.tresim1.Error.InvalidArgument",
 * "code":"TRESIM_ERROR_INVALID_ARGUMENT","remote":true,"message":".."}`).
 *
 * Exit status: 0 when the USIM answered (success, sync-failure and
 * mac-failure are all answers for the network), 1 when a call failed, 2 for
 * a bad command line. The bus is the system bus, at DBUS_SYSTEM_BUS_ADDRESS
 * when that is set (or the session bus with --session).
 */

#include <gio/gio.h>
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define TRESIM_SERVICE "org.tresim1"
#define TRESIM_MANAGER_PATH "/org/tresim1"
#define TRESIM_MID_INTERFACE "org.tresim1.Mid"
#define TRESIM_USIM_INTERFACE "org.tresim1.Usim"

/* The error list of dbus/errors.md, in its order. A plugin registers it once
 * so that replies arrive as GErrors of tresim_error_quark() with these codes
 * (ModemManager does the same with its own errors). */
typedef enum {
    TRESIM_ERROR_INVALID_ARGUMENT,
    TRESIM_ERROR_UNKNOWN_MID,
    TRESIM_ERROR_ALREADY_EXISTS,
    TRESIM_ERROR_ILLEGAL_TRANSITION,
    TRESIM_ERROR_SLOT_OCCUPIED,
    TRESIM_ERROR_WRONG_PIN,
    TRESIM_ERROR_PIN_BLOCKED,
    TRESIM_ERROR_PIN_REQUIRED,
    TRESIM_ERROR_TPM_LOCKOUT,
    TRESIM_ERROR_PLATFORM_STATE_MISMATCH,
    TRESIM_ERROR_POLICY_DENIED,
    TRESIM_ERROR_ROLLBACK_DETECTED,
    TRESIM_ERROR_TPM_FAILURE,
    TRESIM_ERROR_STATE_CORRUPT,
    TRESIM_ERROR_NOT_AUTHORIZED,
} TresimError;

static const GDBusErrorEntry tresim_error_entries[] = {
    {TRESIM_ERROR_INVALID_ARGUMENT, "org.tresim1.Error.InvalidArgument"},
    {TRESIM_ERROR_UNKNOWN_MID, "org.tresim1.Error.UnknownMid"},
    {TRESIM_ERROR_ALREADY_EXISTS, "org.tresim1.Error.AlreadyExists"},
    {TRESIM_ERROR_ILLEGAL_TRANSITION, "org.tresim1.Error.IllegalTransition"},
    {TRESIM_ERROR_SLOT_OCCUPIED, "org.tresim1.Error.SlotOccupied"},
    {TRESIM_ERROR_WRONG_PIN, "org.tresim1.Error.WrongPin"},
    {TRESIM_ERROR_PIN_BLOCKED, "org.tresim1.Error.PinBlocked"},
    {TRESIM_ERROR_PIN_REQUIRED, "org.tresim1.Error.PinRequired"},
    {TRESIM_ERROR_TPM_LOCKOUT, "org.tresim1.Error.TpmLockout"},
    {TRESIM_ERROR_PLATFORM_STATE_MISMATCH, "org.tresim1.Error.PlatformStateMismatch"},
    {TRESIM_ERROR_POLICY_DENIED, "org.tresim1.Error.PolicyDenied"},
    {TRESIM_ERROR_ROLLBACK_DETECTED, "org.tresim1.Error.RollbackDetected"},
    {TRESIM_ERROR_TPM_FAILURE, "org.tresim1.Error.TpmFailure"},
    {TRESIM_ERROR_STATE_CORRUPT, "org.tresim1.Error.StateCorrupt"},
    {TRESIM_ERROR_NOT_AUTHORIZED, "org.tresim1.Error.NotAuthorized"},
};

/* The enum's names, for printing which error it was. */
static const char* const tresim_error_codes[] = {
    "TRESIM_ERROR_INVALID_ARGUMENT", "TRESIM_ERROR_UNKNOWN_MID",
    "TRESIM_ERROR_ALREADY_EXISTS",   "TRESIM_ERROR_ILLEGAL_TRANSITION",
    "TRESIM_ERROR_SLOT_OCCUPIED",    "TRESIM_ERROR_WRONG_PIN",
    "TRESIM_ERROR_PIN_BLOCKED",      "TRESIM_ERROR_PIN_REQUIRED",
    "TRESIM_ERROR_TPM_LOCKOUT",      "TRESIM_ERROR_PLATFORM_STATE_MISMATCH",
    "TRESIM_ERROR_POLICY_DENIED",    "TRESIM_ERROR_ROLLBACK_DETECTED",
    "TRESIM_ERROR_TPM_FAILURE",      "TRESIM_ERROR_STATE_CORRUPT",
    "TRESIM_ERROR_NOT_AUTHORIZED",
};

G_STATIC_ASSERT(G_N_ELEMENTS(tresim_error_entries) == G_N_ELEMENTS(tresim_error_codes));

static GQuark tresim_error_quark(void) {
    static gsize quark = 0;
    g_dbus_error_register_error_domain("tresim-error-quark", &quark, tresim_error_entries,
                                       G_N_ELEMENTS(tresim_error_entries));
    return (GQuark)quark;
}

typedef struct {
    GMainLoop* loop;
    GCancellable* cancellable;
    GBusType bus_type;
    gboolean json;
    const char* mid;
    gint slot; /* -1: none */
    GBytes* rand;
    GBytes* autn;
    int status;
} Ctx;

/* --- output -------------------------------------------------------------- */

static char* hex_of(GVariant* bytes) {
    gsize n = 0;
    const guint8* p = g_variant_get_fixed_array(bytes, &n, 1);
    GString* s = g_string_sized_new(2 * n + 1);
    for (gsize i = 0; i < n; ++i) {
        g_string_append_printf(s, "%02x", p[i]);
    }
    return g_string_free(s, FALSE);
}

/* A JSON string literal (the message of an error may hold any text). */
static void append_json_string(GString* out, const char* text) {
    g_string_append_c(out, '"');
    for (const char* p = text; *p != '\0'; ++p) {
        const unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            g_string_append_c(out, '\\');
            g_string_append_c(out, (char)c);
        } else if (c < 0x20) {
            g_string_append_printf(out, "\\u%04x", c);
        } else {
            g_string_append_c(out, (char)c);
        }
    }
    g_string_append_c(out, '"');
}

/* Prints name/value pairs as "name: value" lines or one JSON object. */
static void print_fields(const Ctx* ctx, const char* const* names, const char* const* values,
                         gsize n) {
    GString* out = g_string_new(NULL);
    if (ctx->json) {
        g_string_append_c(out, '{');
        for (gsize i = 0; i < n; ++i) {
            if (i > 0) {
                g_string_append_c(out, ',');
            }
            append_json_string(out, names[i]);
            g_string_append_c(out, ':');
            if (strcmp(values[i], "true") == 0 || strcmp(values[i], "false") == 0) {
                g_string_append(out, values[i]);
            } else {
                append_json_string(out, values[i]);
            }
        }
        g_string_append(out, "}\n");
    } else {
        gsize width = 0;
        for (gsize i = 0; i < n; ++i) {
            width = MAX(width, strlen(names[i]));
        }
        for (gsize i = 0; i < n; ++i) {
            g_string_append_printf(out, "%s:%*s%s\n", names[i], (int)(width - strlen(names[i]) + 1),
                                   "", values[i]);
        }
    }
    fputs(out->str, stdout);
    g_string_free(out, TRUE);
}

/* Reports a failed call: which error of the list it is (or which other
 * D-Bus error), and whether the daemon or this client raised it. */
static void report_error(Ctx* ctx, const char* what, const GError* error) {
    const gboolean remote = g_dbus_error_is_remote_error(error);
    g_autofree char* name = g_dbus_error_encode_gerror(error);
    g_autoptr(GError) copy = g_error_copy(error);
    g_dbus_error_strip_remote_error(copy);
    const char* code = "";
    g_autofree char* code_name = NULL;
    if (error->domain == tresim_error_quark() && error->code >= 0 &&
        (gsize)error->code < G_N_ELEMENTS(tresim_error_codes)) {
        /* Branch on the code here, as a plugin would: PinRequired asks the
         * user for the PIN (Mid.VerifyPin) and retries; PlatformStateMismatch
         * means the MID is now suspended; everything else fails the attach. */
        code = tresim_error_codes[error->code];
    } else if (error->domain == G_DBUS_ERROR || error->domain == G_IO_ERROR) {
        /* The bus's own errors (UnknownObject, AccessDenied, ...), or a
         * local failure such as a cancelled call. */
        GEnumClass* codes = g_type_class_ref(error->domain == G_DBUS_ERROR ? G_TYPE_DBUS_ERROR
                                                                           : G_TYPE_IO_ERROR_ENUM);
        const GEnumValue* value = g_enum_get_value(codes, error->code);
        code_name = g_strdup(value != NULL ? value->value_name : "");
        code = code_name;
        g_type_class_unref(codes);
    }
    if (ctx->json) {
        const char* names[] = {"result", "error", "code", "remote", "message"};
        const char* values[] = {"error", name, code, remote ? "true" : "false", copy->message};
        print_fields(ctx, names, values, G_N_ELEMENTS(names));
    } else {
        fprintf(stderr, "tresim-aka-example: %s: %s%s%s: %s\n", what, name, *code ? " = " : "",
                code, copy->message);
    }
    ctx->status = 1;
}

/* --- Authenticate -------------------------------------------------------- */

static void authenticate_ready(GObject* source, GAsyncResult* res, gpointer user_data) {
    Ctx* ctx = user_data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GVariant) reply = g_dbus_proxy_call_finish(G_DBUS_PROXY(source), res, &error);
    if (reply == NULL) {
        report_error(ctx, "Authenticate", error);
        g_main_loop_quit(ctx->loop);
        return;
    }
    const char* result = NULL;
    g_autoptr(GVariant) v_res = NULL;
    g_autoptr(GVariant) v_ck = NULL;
    g_autoptr(GVariant) v_ik = NULL;
    g_autoptr(GVariant) v_auts = NULL;
    g_variant_get(reply, "(&s@ay@ay@ay@ay)", &result, &v_res, &v_ck, &v_ik, &v_auts);
    if (strcmp(result, "success") == 0) {
        /* RES goes to the network; CK and IK to the modem's key derivation. */
        g_autofree char* res_hex = hex_of(v_res);
        g_autofree char* ck_hex = hex_of(v_ck);
        g_autofree char* ik_hex = hex_of(v_ik);
        const char* names[] = {"result", "res", "ck", "ik"};
        const char* values[] = {result, res_hex, ck_hex, ik_hex};
        print_fields(ctx, names, values, G_N_ELEMENTS(names));
    } else if (strcmp(result, "sync-failure") == 0) {
        /* AUTHENTICATION FAILURE, cause "synch failure", with AUTS. */
        g_autofree char* auts_hex = hex_of(v_auts);
        const char* names[] = {"result", "auts"};
        const char* values[] = {result, auts_hex};
        print_fields(ctx, names, values, G_N_ELEMENTS(names));
    } else {
        /* "mac-failure": the network is not genuine; never retry this RAND. */
        const char* names[] = {"result"};
        const char* values[] = {result};
        print_fields(ctx, names, values, G_N_ELEMENTS(names));
    }
    ctx->status = 0;
    g_main_loop_quit(ctx->loop);
}

static void authenticate(Ctx* ctx, GDBusProxy* usim) {
    gsize rand_len = 0;
    gsize autn_len = 0;
    const guint8* rand = g_bytes_get_data(ctx->rand, &rand_len);
    const guint8* autn = g_bytes_get_data(ctx->autn, &autn_len);
    /* Lengths are the daemon's to check: a wrong one is InvalidArgument. */
    GVariant* args =
        g_variant_new("(@ay@ay)", g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, rand, rand_len, 1),
                      g_variant_new_fixed_array(G_VARIANT_TYPE_BYTE, autn, autn_len, 1));
    g_dbus_proxy_call(usim, "Authenticate", args, G_DBUS_CALL_FLAGS_NONE, -1, ctx->cancellable,
                      authenticate_ready, ctx);
}

/* --- finding the MID ----------------------------------------------------- */

static void usim_proxy_ready(GObject* source, GAsyncResult* res, gpointer user_data) {
    Ctx* ctx = user_data;
    (void)source;
    g_autoptr(GError) error = NULL;
    g_autoptr(GDBusProxy) usim = g_dbus_proxy_new_finish(res, &error);
    if (usim == NULL) {
        report_error(ctx, "connecting", error);
        g_main_loop_quit(ctx->loop);
        return;
    }
    authenticate(ctx, usim);
}

/* The cached properties of the object manager are current: it follows
 * InterfacesAdded/Removed and PropertiesChanged without polling. */
static gboolean mid_matches(const Ctx* ctx, GDBusObject* object) {
    g_autoptr(GDBusInterface) iface = g_dbus_object_get_interface(object, TRESIM_MID_INTERFACE);
    if (iface == NULL) {
        return FALSE;
    }
    GDBusProxy* mid = G_DBUS_PROXY(iface);
    if (ctx->slot >= 0) {
        g_autoptr(GVariant) slot = g_dbus_proxy_get_cached_property(mid, "Slot");
        g_autoptr(GVariant) state = g_dbus_proxy_get_cached_property(mid, "State");
        return slot != NULL && state != NULL && g_variant_is_of_type(slot, G_VARIANT_TYPE_INT32) &&
               g_variant_get_int32(slot) == ctx->slot &&
               g_strcmp0(g_variant_get_string(state, NULL), "active") == 0;
    }
    g_autoptr(GVariant) iccid = g_dbus_proxy_get_cached_property(mid, "Iccid");
    return iccid != NULL && g_variant_is_of_type(iccid, G_VARIANT_TYPE_STRING) &&
           g_strcmp0(g_variant_get_string(iccid, NULL), ctx->mid) == 0;
}

static void manager_ready(GObject* source, GAsyncResult* res, gpointer user_data) {
    Ctx* ctx = user_data;
    (void)source;
    g_autoptr(GError) error = NULL;
    g_autoptr(GDBusObjectManager) manager =
        g_dbus_object_manager_client_new_for_bus_finish(res, &error);
    if (manager == NULL) {
        report_error(ctx, "connecting", error);
        g_main_loop_quit(ctx->loop);
        return;
    }
    if (g_dbus_object_manager_client_get_name_owner(G_DBUS_OBJECT_MANAGER_CLIENT(manager)) ==
        NULL) {
        g_autoptr(GError) absent = g_error_new(G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN,
                                               "%s is not on the bus", TRESIM_SERVICE);
        report_error(ctx, "connecting", absent);
        g_main_loop_quit(ctx->loop);
        return;
    }
    GList* objects = g_dbus_object_manager_get_objects(manager);
    GDBusProxy* usim = NULL;
    for (GList* l = objects; l != NULL && usim == NULL; l = l->next) {
        if (mid_matches(ctx, G_DBUS_OBJECT(l->data))) {
            usim = G_DBUS_PROXY(
                g_dbus_object_get_interface(G_DBUS_OBJECT(l->data), TRESIM_USIM_INTERFACE));
        }
    }
    g_list_free_full(objects, g_object_unref);
    if (usim == NULL) {
        /* The daemon has no such MID: the same condition, and the same code,
         * as its own UnknownMid. */
        g_autoptr(GError) unknown =
            ctx->slot >= 0 ? g_error_new(tresim_error_quark(), TRESIM_ERROR_UNKNOWN_MID,
                                         "no active MID in slot %d", ctx->slot)
                           : g_error_new(tresim_error_quark(), TRESIM_ERROR_UNKNOWN_MID,
                                         "no MID with ICCID %s", ctx->mid);
        report_error(ctx, "finding the MID", unknown);
        g_main_loop_quit(ctx->loop);
        return;
    }
    authenticate(ctx, usim);
    g_object_unref(usim);
}

static gboolean on_signal(gpointer user_data) {
    Ctx* ctx = user_data;
    g_cancellable_cancel(ctx->cancellable);
    return G_SOURCE_CONTINUE;
}

/* --- command line -------------------------------------------------------- */

static GBytes* parse_hex(const char* option, const char* text, GError** error) {
    const gsize len = strlen(text);
    if (len % 2 != 0) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "%s: an even number of hex digits is needed", option);
        return NULL;
    }
    GByteArray* bytes = g_byte_array_sized_new((guint)(len / 2));
    for (gsize i = 0; i < len; i += 2) {
        const int hi = g_ascii_xdigit_value(text[i]);
        const int lo = g_ascii_xdigit_value(text[i + 1]);
        if (hi < 0 || lo < 0) {
            g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "%s: not a hex digit at position %" G_GSIZE_FORMAT, option,
                        hi < 0 ? i + 1 : i + 2);
            g_byte_array_unref(bytes);
            return NULL;
        }
        const guint8 b = (guint8)(hi * 16 + lo);
        g_byte_array_append(bytes, &b, 1);
    }
    return g_byte_array_free_to_bytes(bytes);
}

int main(int argc, char** argv) {
    gboolean session = FALSE;
    gboolean json = FALSE;
    g_autofree char* mid = NULL;
    gint slot = -1;
    g_autofree char* rand_hex = NULL;
    g_autofree char* autn_hex = NULL;
    const GOptionEntry entries[] = {
        {"session", 0, 0, G_OPTION_ARG_NONE, &session, "Use the session bus", NULL},
        {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL},
        {"mid", 0, 0, G_OPTION_ARG_STRING, &mid, "The MID: object path or ICCID", "PATH|ICCID"},
        {"slot", 0, 0, G_OPTION_ARG_INT, &slot, "The MID active in this slot", "N"},
        {"rand", 0, 0, G_OPTION_ARG_STRING, &rand_hex, "RAND in hex (16 bytes)", "HEX"},
        {"autn", 0, 0, G_OPTION_ARG_STRING, &autn_hex, "AUTN in hex", "HEX"},
        {NULL, 0, 0, G_OPTION_ARG_NONE, NULL, NULL, NULL},
    };
    g_autoptr(GOptionContext) options = g_option_context_new("- one AKA through tresimd");
    g_option_context_add_main_entries(options, entries, NULL);
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(options, &argc, &argv, &error)) {
        fprintf(stderr, "tresim-aka-example: %s\n", error->message);
        return 2;
    }
    if ((mid == NULL) == (slot < 0) || rand_hex == NULL || autn_hex == NULL || argc > 1) {
        fprintf(stderr, "tresim-aka-example: give --mid or --slot, --rand and --autn "
                        "(see --help)\n");
        return 2;
    }

    Ctx ctx = {0};
    ctx.bus_type = session ? G_BUS_TYPE_SESSION : G_BUS_TYPE_SYSTEM;
    ctx.json = json;
    ctx.mid = mid;
    ctx.slot = slot;
    ctx.status = 1;
    ctx.rand = parse_hex("--rand", rand_hex, &error);
    ctx.autn = ctx.rand != NULL ? parse_hex("--autn", autn_hex, &error) : NULL;
    if (ctx.autn == NULL) {
        fprintf(stderr, "tresim-aka-example: %s\n", error->message);
        g_clear_pointer(&ctx.rand, g_bytes_unref);
        return 2;
    }
    /* Registers the domain before the first reply can arrive. */
    (void)tresim_error_quark();

    ctx.loop = g_main_loop_new(NULL, FALSE);
    ctx.cancellable = g_cancellable_new();
    const guint sigint = g_unix_signal_add(SIGINT, on_signal, &ctx);
    const guint sigterm = g_unix_signal_add(SIGTERM, on_signal, &ctx);

    if (mid != NULL && mid[0] == '/') {
        /* By path: a proxy for that one object, no properties needed. */
        g_dbus_proxy_new_for_bus(ctx.bus_type,
                                 G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES |
                                     G_DBUS_PROXY_FLAGS_DO_NOT_CONNECT_SIGNALS |
                                     G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START,
                                 NULL, TRESIM_SERVICE, mid, TRESIM_USIM_INTERFACE, ctx.cancellable,
                                 usim_proxy_ready, &ctx);
    } else {
        /* By ICCID or slot: the ObjectManager's view of every MID. */
        g_dbus_object_manager_client_new_for_bus(
            ctx.bus_type, G_DBUS_OBJECT_MANAGER_CLIENT_FLAGS_DO_NOT_AUTO_START, TRESIM_SERVICE,
            TRESIM_MANAGER_PATH, NULL, NULL, NULL, ctx.cancellable, manager_ready, &ctx);
    }
    g_main_loop_run(ctx.loop);

    g_source_remove(sigint);
    g_source_remove(sigterm);
    g_object_unref(ctx.cancellable);
    g_main_loop_unref(ctx.loop);
    g_bytes_unref(ctx.rand);
    g_bytes_unref(ctx.autn);
    return ctx.status;
}
