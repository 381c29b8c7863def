#pragma once

// The Redis store on an executor of the caller's (for embedders with an Asio loop of their
// own). Apart from redis_store.hpp so that users of the plain factory need no Boost headers.

#include <boost/asio/any_io_executor.hpp>
#include <memory>

#include "idem/redis_store.hpp"

namespace idem {

/// Like make_redis_store(options), but every handler and callback runs on `executor`
/// (through a strand of it) instead of a thread of the store's own. The executor must stay
/// usable until the store is destroyed and its handlers have run, or until close() has
/// called back. The factory never blocks (wait_for_connection is ignored): operations
/// called before the first connection attempt ends wait for it. Destroying the store does
/// not wait.
Result<std::shared_ptr<RedisStore>> make_redis_store(RedisStoreOptions options,
                                                     boost::asio::any_io_executor executor);

}  // namespace idem
