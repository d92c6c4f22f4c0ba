// The TLS client context every connection of the process shares: the HTTP client's and the ACS
// and TCS websockets'. Its trust store (the system's, or SSL_CERT_FILE / SSL_CERT_DIR) is read
// once — about 0.9 MB of parsed certificates each time it is read — and certificates are verified
// against it; TLS 1.2 is the least accepted.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>

namespace ecs::aws {

// The live context for the trust store the environment names now; a new one when none is live
// (or the environment names another store, as tests do).
std::shared_ptr<boost::asio::ssl::context> sharedTlsClientContext();

}  // namespace ecs::aws
