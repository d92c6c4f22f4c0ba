// Iptables: the agent's packet-filter and NAT rules, applied as batches through
// `iptables-restore -w --noflush` (one process per batch, atomic on the nft backend) and found
// again through `iptables-save`. Every rule the agent adds carries a comment tag
// (`-m comment --comment ecs-task:<taskId>`, `ecs-bridge:<name>`, `ecs-base`) and every chain it
// makes starts with `ECS-`, so rules are removed by tag — whatever their text became after the
// kernel normalised it — and leftovers of dead tasks are recognisable at agent start.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "agent/common/result.h"

namespace ecs::netns {

inline constexpr std::string_view kChainPrefix = "ECS-";

struct IptablesRule {
  std::string table;  // "nat" | "filter"
  std::string chain;
  std::string spec;           // what follows "-A <chain> " (matches, the tag, the target)
  bool insert_first = false;  // "-I <chain> 1" (FORWARD must see ours before Docker's DROP)
};

// "-m comment --comment <tag>", the way every rule of ours starts its spec.
std::string tagMatch(std::string_view tag);

// The comment of an iptables-save rule line ("" when it has none); quoted or bare.
std::string ruleComment(std::string_view line);

// iptables-save output, parsed just enough: which chains exist and which "-A" lines carry which
// comment, per table.
struct IptablesSnapshot {
  struct Line {
    std::string table;
    std::string text;  // "-A CHAIN ..."
    std::string comment;
  };
  std::vector<std::pair<std::string, std::string>> chains;  // (table, chain)
  std::vector<Line> rules;

  static IptablesSnapshot parse(std::string_view save_output);
  bool hasChain(std::string_view table, std::string_view chain) const;
  // Rules whose comment equals `tag` exactly.
  std::vector<Line> tagged(std::string_view tag) const;
  // Distinct comments starting with `prefix`, without it ("ecs-task:" -> task IDs).
  std::vector<std::string> tagsWithPrefix(std::string_view prefix) const;
};

// One iptables-restore input: chain declarations, deletions and additions, grouped by table.
class IptablesBatch {
 public:
  void declareChain(const std::string& table, const std::string& chain);
  void deleteChain(const std::string& table, const std::string& chain);
  void add(const IptablesRule& rule);
  // A line of iptables-save ("-A CHAIN ...") turned into its "-D CHAIN ..." twin.
  void deleteSaved(const std::string& table, std::string_view save_line);
  bool empty() const { return lines_.empty(); }
  // "*nat\n:ECS-X - [0:0]\n-D ...\n-A ...\nCOMMIT\n*filter\n...". Within a table: declarations,
  // then deletions, then additions, then chain deletions, whatever order they were given in.
  std::string render() const;

 private:
  enum class Kind { kDeclare, kDelete, kAdd, kDeleteChain };
  struct Entry {
    std::string table;
    Kind kind;
    std::string text;
  };
  std::vector<Entry> lines_;
};

// Runs the iptables tools. Every method blocks on one child process.
class Iptables {
 public:
  // The whole ruleset as iptables-save prints it.
  static Result<std::string> save();
  static Result<IptablesSnapshot> snapshot();
  // iptables-restore -w --noflush; an error carries the tool's complaint and the input line.
  static Result<void> apply(const IptablesBatch& batch);
  // Removes every rule tagged `tag` (one save, one restore). Idempotent.
  static Result<void> deleteTagged(std::string_view tag);
  // Makes the rules tagged `tag` exactly `rules` (each spec must carry tagMatch(tag)), creating
  // any missing ECS- chain they live in or jump to, in one atomic restore. Idempotent: when the
  // tagged rules already are `rules` (insert_first ones still first), nothing is touched.
  static Result<void> replaceTagged(std::string_view tag, const std::vector<IptablesRule>& rules);
  // Deletes every ECS- chain and the rules tagged `base_tag` (the jumps into them) when no other
  // rule of ours is left; otherwise does nothing. For removing a bridge the last user leaves.
  static Result<void> removeChainsIfUnused(std::string_view base_tag);
};

}  // namespace ecs::netns
