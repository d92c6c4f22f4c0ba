#include "agent/aws/tls_context.h"

#include <openssl/ssl.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace ecs::aws {

std::shared_ptr<boost::asio::ssl::context> sharedTlsClientContext() {
  static std::mutex mutex;
  static std::map<std::pair<std::string, std::string>, std::weak_ptr<boost::asio::ssl::context>>
      live;
  auto variable = [](const char* name) {
    const char* value = std::getenv(name);
    return std::string(value ? value : "");
  };
  const auto store = std::pair(variable("SSL_CERT_FILE"), variable("SSL_CERT_DIR"));
  std::lock_guard lock(mutex);
  if (auto context = live[store].lock()) return context;
  auto context = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
  context->set_default_verify_paths();
  context->set_verify_mode(boost::asio::ssl::verify_peer);
  context->set_options(boost::asio::ssl::context::default_workarounds |
                       boost::asio::ssl::context::no_compression);
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
  live[store] = context;
  return context;
}

}  // namespace ecs::aws
