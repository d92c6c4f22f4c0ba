// Content digests as OCI writes them ("sha256:<64 lowercase hex>"), computed with OpenSSL.
// Used to check manifests against the digest they were asked for and blobs as they stream in.
#pragma once

#include <memory>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header

namespace ecs::images {

// A streaming SHA-256: update() with each chunk, then digest() once.
class Sha256 {
 public:
  Sha256();
  void update(std::string_view data);
  // "sha256:<hex>" of everything passed to update(). Ends the hash: call once.
  std::string digest();

 private:
  struct Free {
    void operator()(evp_md_ctx_st* ctx) const;
  };
  std::unique_ptr<evp_md_ctx_st, Free> ctx_;
};

// True for "sha256:" followed by exactly 64 lowercase hex characters.
bool isSha256Digest(std::string_view digest);

// "sha256:<hex>" of `data`.
std::string sha256Digest(std::string_view data);

// Digest of `data` with the algorithm named by `like`'s "algorithm:" prefix (sha256, sha384 or
// sha512), in the same "algorithm:hex" form; empty for an unknown algorithm. For checking data
// against a digest someone else chose.
std::string digestLike(std::string_view like, std::string_view data);

}  // namespace ecs::images
