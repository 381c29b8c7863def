#pragma once

#include <memory>

#include "core/engine_impl.hpp"

namespace idem {

/// `concurrency = "wait"`: parks a duplicate until its record completes or is removed
/// (Store::watch), re-claiming then; a fallback timer re-checks at least every second in
/// case a notification is lost, and the deadline answers 409.
void start_wait(std::shared_ptr<Engine> engine, PendingClaim pending,
                Engine::DecisionCallback done);

}  // namespace idem
