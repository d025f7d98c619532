#pragma once
// RAII for ESYS_TR handles: a transient object or session is flushed from the
// TPM when its owner goes away; a persistent object's ESYS_TR is closed (the
// object stays in the TPM).

#include <utility>

#include <tss2/tss2_esys.h>

#include "context.hpp"

namespace tresim::tpm {

class Handle {
public:
    enum class Kind { Transient, Persistent, Session };

    Handle() = default;
    Handle(ESYS_CONTEXT* esys, ESYS_TR tr, Kind kind) noexcept
        : esys_(esys), tr_(tr), kind_(kind) {}
    Handle(Handle&& o) noexcept
        : esys_(o.esys_), tr_(std::exchange(o.tr_, ESYS_TR_NONE)), kind_(o.kind_) {}
    Handle& operator=(Handle&& o) noexcept {
        if (this != &o) {
            reset();
            esys_ = o.esys_;
            tr_ = std::exchange(o.tr_, ESYS_TR_NONE);
            kind_ = o.kind_;
        }
        return *this;
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle() { reset(); }

    static Handle transient(ESYS_CONTEXT* esys, ESYS_TR tr) noexcept {
        return {esys, tr, Kind::Transient};
    }
    static Handle persistent(ESYS_CONTEXT* esys, ESYS_TR tr) noexcept {
        return {esys, tr, Kind::Persistent};
    }
    static Handle session(ESYS_CONTEXT* esys, ESYS_TR tr) noexcept {
        return {esys, tr, Kind::Session};
    }

    ESYS_TR get() const noexcept { return tr_; }
    operator ESYS_TR() const noexcept { return tr_; }
    explicit operator bool() const noexcept { return tr_ != ESYS_TR_NONE; }
    Kind kind() const noexcept { return kind_; }

    // Gives up ownership without flushing (after EvictControl, or when the TPM
    // already flushed a session that was not continued).
    ESYS_TR release() noexcept { return std::exchange(tr_, ESYS_TR_NONE); }

    void reset() noexcept {
        if (tr_ == ESYS_TR_NONE || esys_ == nullptr) {
            return;
        }
        if (kind_ == Kind::Persistent) {
            Esys_TR_Close(esys_, &tr_);
        } else {
            Esys_FlushContext(esys_, tr_);
        }
        tr_ = ESYS_TR_NONE;
    }

private:
    ESYS_CONTEXT* esys_ = nullptr;
    ESYS_TR tr_ = ESYS_TR_NONE;
    Kind kind_ = Kind::Transient;
};

} // namespace tresim::tpm
