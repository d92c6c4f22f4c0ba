#include "volumes/task_volumes.h"

#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/common/replace_file.h"

namespace ecs::volumes {

namespace fs = std::filesystem;
namespace json = boost::json;
using engine::ContainerDefinition;
using engine::TaskDefinition;
using engine::Volume;

namespace {

// mkdir -p with `mode` on the directories it creates (umask does not apply).
Result<void> makeDirectories(const fs::path& path, mode_t mode) {
  fs::path current;
  for (const auto& part : path) {
    current /= part;
    if (::mkdir(current.c_str(), mode) == 0) {
      ::chmod(current.c_str(), mode);
      continue;
    }
    if (errno != EEXIST) {
      return fail(ErrorCode::kFailedPrecondition, "create {}: {}", current.string(),
                  std::strerror(errno));
    }
  }
  if (!fs::is_directory(path)) {
    return fail(ErrorCode::kFailedPrecondition, "{} exists and is not a directory", path.string());
  }
  return {};
}

json::object toJsonObject(const std::map<std::string, std::string>& map) {
  json::object out;
  for (const auto& [k, v] : map) out[k] = v;
  return out;
}

// A shared volume's description, kept beside its data as Docker keeps its volume metadata.
std::string describeVolume(const engine::DockerVolumeConfiguration& c) {
  return json::serialize(json::object{{"driver", c.driver},
                                      {"driverOpts", toJsonObject(c.driver_opts)},
                                      {"labels", toJsonObject(c.labels)}});
}

Result<engine::DockerVolumeConfiguration> readVolumeDescription(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  boost::system::error_code ec;
  auto value = json::parse(text.str(), ec);
  if (ec || !value.is_object()) {
    return fail(ErrorCode::kDataLoss, "malformed {}", path.string());
  }
  engine::DockerVolumeConfiguration c;
  c.scope = "shared";
  try {
    c.driver = json::value_to<std::string>(value.at("driver"));
    for (const auto& [k, v] : value.at("driverOpts").as_object()) {
      c.driver_opts[k] = json::value_to<std::string>(v);
    }
    for (const auto& [k, v] : value.at("labels").as_object()) {
      c.labels[k] = json::value_to<std::string>(v);
    }
  } catch (const std::exception& e) {
    return fail(ErrorCode::kDataLoss, "malformed {}: {}", path.string(), e.what());
  }
  return c;
}

Result<void> collectMounts(const TaskDefinition& definition, const ContainerDefinition& container,
                           bool force_read_only, std::vector<std::string>& path,
                           std::vector<ResolvedMount>& out) {
  if (std::ranges::find(path, container.name) != path.end()) {
    return fail(ErrorCode::kInvalidArgument, "volumesFrom cycle through container {:?}",
                container.name);
  }
  path.push_back(container.name);
  auto add = [&](ResolvedMount m) {
    if (std::ranges::find(out, m.container_path, &ResolvedMount::container_path) != out.end()) {
      return;
    }
    out.push_back(std::move(m));
  };
  for (const auto& mp : container.mount_points) {
    add({mp.source_volume, mp.container_path, mp.read_only || force_read_only});
  }
  for (const auto& vf : container.volumes_from) {
    const auto* source = definition.container(vf.source_container);
    if (source == nullptr) {
      return fail(ErrorCode::kInvalidArgument, "volumesFrom: unknown container {:?}",
                  vf.source_container);
    }
    auto r = collectMounts(definition, *source, force_read_only || vf.read_only, path, out);
    if (!r) return r;
  }
  path.pop_back();
  return {};
}

}  // namespace

Result<std::vector<ResolvedMount>> resolveContainerMounts(const TaskDefinition& definition,
                                                          const ContainerDefinition& container) {
  std::vector<ResolvedMount> out;
  std::vector<std::string> path;
  auto r = collectMounts(definition, container, false, path, out);
  if (!r) return fail(r.error().wrap(fmt::format("container {}", container.name)));
  return out;
}

Result<LocalVolumePlan> planLocalVolume(const engine::DockerVolumeConfiguration& config) {
  if (config.driver != "local" && !config.driver.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "driver {:?} is not supported (this agent has no Docker volume plugins; only "
                "\"local\")",
                config.driver);
  }
  for (const auto& [key, value] : config.driver_opts) {
    if (key != "type" && key != "device" && key != "o") {
      return fail(ErrorCode::kInvalidArgument,
                  "driverOpts: invalid option {:?} for the local driver (type, device, o)", key);
    }
  }
  auto get = [&](const char* key) {
    auto it = config.driver_opts.find(key);
    return it == config.driver_opts.end() ? std::string() : it->second;
  };
  LocalVolumePlan plan;
  const std::string type = get("type");
  const std::string device = get("device");
  const std::string o = get("o");
  if (type.empty() && device.empty() && o.empty()) return plan;

  auto flags = parseMountOptions(o);
  const bool bind = (flags.flags & MS_BIND) != 0;
  if (type.empty() && !bind) {
    return fail(ErrorCode::kInvalidArgument, "driverOpts: \"type\" is required with {}",
                device.empty() ? "\"o\"" : "\"device\"");
  }
  if (type == "tmpfs") {
    plan.kind = LocalVolumePlan::Kind::kSyscall;
    plan.source = device.empty() ? "tmpfs" : device;
    plan.fstype = "tmpfs";
    plan.flags = flags.flags;
    plan.data = flags.data;
    return plan;
  }
  if (device.empty()) {
    return fail(ErrorCode::kInvalidArgument, "driverOpts: \"device\" is required for type {:?}",
                type.empty() ? "bind" : type);
  }
  if (bind) {
    if (device.front() != '/') {
      return fail(ErrorCode::kInvalidArgument,
                  "driverOpts: bind device {:?} is not an absolute path", device);
    }
    plan.kind = LocalVolumePlan::Kind::kSyscall;
    plan.source = device;
    plan.fstype = type.empty() ? "none" : type;
    plan.flags = flags.flags;
    plan.data = flags.data;
    return plan;
  }
  plan.kind = LocalVolumePlan::Kind::kCommand;
  plan.source = device;
  plan.fstype = type;
  plan.options = o;
  return plan;
}

// --- the per-task resource ----------------------------------------------------------------------

class TaskVolumes final : public engine::TaskResource {
 public:
  TaskVolumes(TaskVolumesFactory& factory, engine::TaskInfo task)
      : factory_(factory), task_(std::move(task)) {}

  std::string_view name() const override { return "volumes"; }

  Result<void> create() override {
    // Recorded before anything is made, so that what a crash leaves has an owner to sweep by.
    factory_.recordOwner(task_.id);
    for (const auto& volume : task_.definition->volumes) {
      auto r = createVolume(volume);
      if (!r) {
        cleanup();
        return fail(r.error().wrap(fmt::format("volume '{}'", volume.name)));
      }
    }
    return {};
  }

  // Finds again what create() made in an agent process that is gone — the task's record, its
  // directories, and its mounts both in the state and in the mount table — and makes this
  // process answer for the task. Makes, mounts and changes nothing else.
  Result<void> recover() override {
    if (!factory_.ownerOf(task_.id)) {
      return fail(ErrorCode::kNotFound,
                  "recover the volumes of task {}: nothing of it is recorded in {}/state.json",
                  task_.id, factory_.options_.root);
    }
    const auto mounted = factory_.mounter_->mountPoints();
    for (const auto& volume : task_.definition->volumes) {
      auto path = recoverVolume(volume, mounted);
      if (!path) {
        host_paths_.clear();
        return fail(path.error().wrap(
            fmt::format("recover the volumes of task {}: volume '{}'", task_.id, volume.name)));
      }
      host_paths_[volume.name] = *path;
    }
    factory_.recordOwner(task_.id);
    spdlog::info("volumes: task {} recovered", task_.id);
    return {};
  }

  Result<void> contribute(const engine::ContainerInfo& container,
                          engine::ContainerResources& out) override {
    auto mounts = resolveContainerMounts(*task_.definition, *container.definition);
    if (!mounts) return fail(mounts.error());
    for (const auto& m : *mounts) {
      auto it = host_paths_.find(m.volume);
      if (it == host_paths_.end()) {
        return fail(ErrorCode::kFailedPrecondition,
                    "container {}: mountPoint {}: volume '{}' was not created",
                    container.definition->name, m.container_path, m.volume);
      }
      // rbind: a host path with mounts below it is seen whole; rprivate: nothing the container
      // mounts there propagates back to the host.
      out.mounts.push_back(runtime::SpecMount{
          m.container_path, "bind", it->second, {"rbind", "rprivate", m.read_only ? "ro" : "rw"}});
    }
    return {};
  }

  void cleanup() override {
    factory_.releaseTask(task_.id);
    const fs::path root(factory_.options_.root);
    factory_.removeUnmounted((root / "task" / task_.id).string());
    factory_.removeUnmounted((root / "efs" / task_.id).string());
    host_paths_.clear();
  }

 private:
  fs::path taskDir(const std::string& kind, const std::string& volume) const {
    return fs::path(factory_.options_.root) / kind / task_.id / volume;
  }

  Result<void> createVolume(const Volume& volume) {
    if (volume.efs_volume_configuration) return createEfs(volume);
    if (volume.docker_volume_configuration) {
      const auto& docker = *volume.docker_volume_configuration;
      if (docker.scope == "shared") return createShared(volume.name, docker);
      auto dir = taskDir("task", volume.name);
      if (auto r = makeDirectories(dir, 0755); !r) return r;
      host_paths_[volume.name] = dir.string();
      return mountLocal(volume.name, docker, dir.string(), "local");
    }
    if (volume.host && !volume.host->source_path.empty()) {
      const auto& source = volume.host->source_path;
      if (source.front() != '/') {
        return fail(ErrorCode::kInvalidArgument, "host.sourcePath {:?} is not absolute", source);
      }
      // As the ECS agent (through Docker's bind) does: a missing host path is created.
      if (auto r = makeDirectories(source, 0755); !r) return r;
      host_paths_[volume.name] = source;
      return {};
    }
    auto dir = taskDir("task", volume.name);
    if (auto r = makeDirectories(dir, 0755); !r) return r;
    host_paths_[volume.name] = dir.string();
    return {};
  }

  // Mounts what `config`'s driverOpts describe on `target` (a directory that exists).
  Result<void> mountLocal(const std::string& volume,
                          const engine::DockerVolumeConfiguration& config,
                          const std::string& target, const std::string& kind) {
    auto plan = planLocalVolume(config);
    if (!plan) return fail(plan.error());
    if (plan->kind == LocalVolumePlan::Kind::kDirectory) return {};
    TrackedMount record{target, volume, kind, {task_.id}};
    auto& mounter = *factory_.mounter_;
    auto r = factory_.mountTracked(record, [&]() -> Result<void> {
      if (plan->kind == LocalVolumePlan::Kind::kSyscall) {
        if ((plan->flags & MS_BIND) == 0) {
          return mounter.mount(plan->source, target, plan->fstype, plan->flags, plan->data);
        }
        // A bind ignores MS_RDONLY on the first call: read-only takes a remount, as mount(8)
        // does for `-o bind,ro`. rprivate: nothing mounted below leaks back to the device path.
        auto m = mounter.mount(plan->source, target, plan->fstype, plan->flags & ~MS_RDONLY, "");
        if (!m) return m;
        auto p = mounter.mount("", target, "", MS_REC | MS_PRIVATE, "");
        if (p && (plan->flags & MS_RDONLY) != 0) {
          p = mounter.mount("", target, "", MS_REMOUNT | MS_BIND | MS_RDONLY, "");
        }
        if (!p) {
          (void)mounter.unmount(target, true);
          return p;
        }
        return {};
      }
      std::vector<std::string> argv = factory_.options_.mount_command;
      argv.insert(argv.end(), {"-t", plan->fstype});
      if (!plan->options.empty()) argv.insert(argv.end(), {"-o", plan->options});
      argv.insert(argv.end(), {plan->source, target});
      return mounter.run(argv, factory_.options_.mount_timeout);
    });
    if (!r) return fail(r.error().wrap(fmt::format("{} mount of {}", plan->fstype, plan->source)));
    return {};
  }

  Result<void> createShared(const std::string& name,
                            const engine::DockerVolumeConfiguration& requested) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
      return fail(ErrorCode::kInvalidArgument, "invalid shared volume name");
    }
    const fs::path dir = fs::path(factory_.options_.root) / "shared" / name;
    const fs::path data = dir / "data";
    const fs::path description = dir / "volume.json";
    engine::DockerVolumeConfiguration config = requested;
    // One task at a time makes, finds or mounts a shared volume.
    std::lock_guard shared_lock(factory_.shared_mu_);
    {
      std::lock_guard lock(factory_.mu_);
      if (!fs::exists(description)) {
        if (!requested.autoprovision.value_or(false)) {
          return fail(ErrorCode::kNotFound,
                      "shared volume '{}' does not exist and autoprovision is false", name);
        }
        if (auto plan = planLocalVolume(requested); !plan) return fail(plan.error());
        if (auto r = makeDirectories(data, 0755); !r) return r;
        if (auto written = replaceFile(description.string(), describeVolume(requested)); !written)
          return fail(written.error().wrap(fmt::format("shared volume '{}'", name)));
        spdlog::info("volumes: created shared volume {}", name);
      } else {
        auto existing = readVolumeDescription(description);
        if (!existing) return fail(existing.error());
        if (factory_.options_.shared_volume_match_full_config &&
            (existing->driver != requested.driver ||
             existing->driver_opts != requested.driver_opts ||
             existing->labels != requested.labels)) {
          return fail(ErrorCode::kFailedPrecondition,
                      "shared volume '{}' exists with a different configuration ({}) and "
                      "ECS_SHARED_VOLUME_MATCH_FULL_CONFIG is set",
                      name, describeVolume(*existing));
        }
        // As Docker: an existing volume is used as it was created.
        config = *existing;
      }
      auto plan = planLocalVolume(config);
      if (!plan) return fail(plan.error());
      if (plan->kind != LocalVolumePlan::Kind::kDirectory) {
        if (auto* record = factory_.state_.find(data.string()); record != nullptr) {
          if (std::ranges::find(record->tasks, task_.id) == record->tasks.end()) {
            record->tasks.push_back(task_.id);
            factory_.saveLocked();
          }
          host_paths_[name] = data.string();
          return {};
        }
      }
    }
    // Not mounted yet: mount it, with this task as its first user.
    host_paths_[name] = data.string();
    return mountLocal(name, config, data.string(), "shared");
  }

  Result<void> createEfs(const Volume& volume) {
    const auto& efs = *volume.efs_volume_configuration;
    const auto& options = factory_.options_;
    EfsMountContext context;
    context.efs_utils =
        options.efs_utils_installed ? options.efs_utils_installed() : efsUtilsInstalled();
    context.region = options.region;
    context.dns_suffix = options.dns_suffix;
    if (efs.iam && options.credentials_relative_uri) {
      context.credentials_uri = options.credentials_relative_uri(task_);
    }
    auto dir = taskDir("efs", volume.name);
    auto args = efsMountArguments(efs, context, dir.string());
    if (!args) return fail(args.error());
    if (auto r = makeDirectories(dir, 0755); !r) return r;
    std::vector<std::string> argv = options.efs_mount_command;
    argv.insert(argv.end(), args->begin(), args->end());
    auto& mounter = *factory_.mounter_;
    auto r = factory_.mountTracked({dir.string(), volume.name, "efs", {task_.id}}, [&] {
      auto run = mounter.run(argv, options.mount_timeout);
      if (!run) return run;
      // A helper that exits 0 without mounting would leave containers writing to the host disk.
      if (!hasExactMount(mounter.mountPoints(), dir.string())) {
        return Result<void>(fail(ErrorCode::kFailedPrecondition,
                                 "{} exited 0 but nothing is mounted on {}", argv.front(),
                                 dir.string()));
      }
      return Result<void>();
    });
    if (!r) {
      return fail(r.error().wrap(fmt::format("efs mount of {} failed", efs.file_system_id)));
    }
    host_paths_[volume.name] = dir.string();
    spdlog::info("volumes: task {} mounted {} on {}", task_.id, efs.file_system_id, dir.string());
    return {};
  }

  // The host path create() gave `volume`, checked against the state and the mount table.
  Result<std::string> recoverVolume(const Volume& volume, const std::vector<std::string>& mounted) {
    auto directory = [](const fs::path& path) -> Result<void> {
      std::error_code ec;
      if (!fs::is_directory(path, ec)) {
        return fail(ErrorCode::kNotFound, "{} is gone", path.string());
      }
      return {};
    };
    if (volume.efs_volume_configuration) {
      auto dir = taskDir("efs", volume.name);
      if (auto r = expectMount(dir.string(), mounted); !r) return fail(r.error());
      return dir.string();
    }
    if (volume.docker_volume_configuration) {
      const auto& docker = *volume.docker_volume_configuration;
      fs::path dir = taskDir("task", volume.name);
      auto config = docker;
      if (docker.scope == "shared") {
        const fs::path shared = fs::path(factory_.options_.root) / "shared" / volume.name;
        dir = shared / "data";
        if (auto r = directory(dir); !r) return fail(r.error());
        auto existing = readVolumeDescription(shared / "volume.json");
        if (!existing) return fail(existing.error());
        config = *existing;  // create() mounted it as it was first described
      }
      if (auto r = directory(dir); !r) return fail(r.error());
      auto plan = planLocalVolume(config);
      if (!plan) return fail(plan.error());
      if (plan->kind != LocalVolumePlan::Kind::kDirectory) {
        if (auto r = expectMount(dir.string(), mounted); !r) return fail(r.error());
      }
      return dir.string();
    }
    if (volume.host && !volume.host->source_path.empty()) {
      if (auto r = directory(volume.host->source_path); !r) return fail(r.error());
      return volume.host->source_path;
    }
    auto dir = taskDir("task", volume.name);
    if (auto r = directory(dir); !r) return fail(r.error());
    return dir.string();
  }

  // `target` is recorded as mounted for this task, and is mounted.
  Result<void> expectMount(const std::string& target, const std::vector<std::string>& mounted) {
    if (!factory_.tracksMountFor(target, task_.id)) {
      return fail(ErrorCode::kNotFound, "no mount of the task on {} is recorded", target);
    }
    if (!hasExactMount(mounted, target)) {
      return fail(ErrorCode::kNotFound, "{} is no longer mounted", target);
    }
    return {};
  }

  static bool hasExactMount(const std::vector<std::string>& mounts, const std::string& path) {
    return std::ranges::find(mounts, path) != mounts.end();
  }

  TaskVolumesFactory& factory_;
  engine::TaskInfo task_;
  std::map<std::string, std::string> host_paths_;  // volume name -> host path to bind
};

// --- the factory --------------------------------------------------------------------------------

TaskVolumesFactory::TaskVolumesFactory(VolumesOptions options, std::unique_ptr<Mounter> mounter,
                                       VolumeState state)
    : options_(std::move(options)), mounter_(std::move(mounter)), state_(std::move(state)) {}

Result<std::unique_ptr<TaskVolumesFactory>> TaskVolumesFactory::create(
    VolumesOptions options, std::unique_ptr<Mounter> mounter) {
  if (options.root.empty() || options.root.front() != '/') {
    return fail(ErrorCode::kInvalidArgument, "volumes root {:?} is not absolute", options.root);
  }
  if (options.efs_mount_command.empty() || options.mount_command.empty()) {
    return fail(ErrorCode::kInvalidArgument, "empty mount command");
  }
  if (auto r = makeDirectories(options.root, 0700); !r) {
    return fail(r.error().wrap("volumes root"));
  }
  // Mount points are compared with /proc/self/mountinfo, which shows resolved paths.
  std::error_code ec;
  auto canonical = fs::canonical(options.root, ec);
  if (ec) return fail(ErrorCode::kInternal, "resolve {}: {}", options.root, ec.message());
  options.root = canonical.string();
  const std::string state_path = (canonical / "state.json").string();
  auto state = VolumeState::load(state_path);
  if (!state) {
    spdlog::warn("volumes: {}; starting from the mount table alone", state.error().message);
    state = VolumeState(state_path);
  }
  if (!mounter) mounter = makeSystemMounter();
  return std::unique_ptr<TaskVolumesFactory>(
      new TaskVolumesFactory(std::move(options), std::move(mounter), std::move(*state)));
}

Result<std::unique_ptr<engine::TaskResource>> TaskVolumesFactory::resourceFor(
    const engine::TaskInfo& task) {
  const auto& definition = *task.definition;
  if (definition.volumes.empty()) return std::unique_ptr<engine::TaskResource>();
  if (task.id.empty() || task.id.find('/') != std::string::npos) {
    return fail(ErrorCode::kInvalidArgument, "invalid task ID {:?}", task.id);
  }
  // What this host cannot honour fails the task now, before anything is pulled.
  for (const auto& volume : definition.volumes) {
    if (volume.docker_volume_configuration) {
      auto plan = planLocalVolume(*volume.docker_volume_configuration);
      if (!plan) return fail(plan.error().wrap(fmt::format("volume '{}'", volume.name)));
    }
  }
  for (const auto& container : definition.container_definitions) {
    auto mounts = resolveContainerMounts(definition, container);
    if (!mounts) return fail(mounts.error());
    for (const auto& m : *mounts) {
      if (std::ranges::find(definition.volumes, m.volume, &Volume::name) ==
          definition.volumes.end()) {
        return fail(ErrorCode::kInvalidArgument,
                    "container {}: mountPoint {} names unknown volume '{}'", container.name,
                    m.container_path, m.volume);
      }
    }
  }
  return std::unique_ptr<engine::TaskResource>(new TaskVolumes(*this, task));
}

Result<void> TaskVolumesFactory::mountTracked(const TrackedMount& record,
                                              const std::function<Result<void>()>& make) {
  {
    std::lock_guard lock(mu_);
    if (auto* existing = state_.find(record.target); existing != nullptr) {
      // Another task mounted this shared volume meanwhile: join it.
      for (const auto& t : record.tasks) {
        if (std::ranges::find(existing->tasks, t) == existing->tasks.end()) {
          existing->tasks.push_back(t);
        }
      }
      saveLocked();
      return {};
    }
    state_.add(record);
    saveLocked();
  }
  auto result = make();
  if (!result) {
    std::lock_guard lock(mu_);
    // Whatever the command half-did is undone; it must not outlive the record.
    if (unmountAll(record.target)) state_.remove(record.target);
    saveLocked();
  }
  return result;
}

void TaskVolumesFactory::recordOwner(const std::string& task_id) {
  std::lock_guard lock(mu_);
  state_.setOwner(task_id, currentProcess());
  saveLocked();
}

bool TaskVolumesFactory::ownerOf(const std::string& task_id) {
  std::lock_guard lock(mu_);
  return state_.owners().contains(task_id);
}

bool TaskVolumesFactory::tracksMountFor(const std::string& target, const std::string& task_id) {
  std::lock_guard lock(mu_);
  const auto* record = state_.find(target);
  return record != nullptr && std::ranges::find(record->tasks, task_id) != record->tasks.end();
}

std::vector<std::string> TaskVolumesFactory::deadOwners() {
  std::lock_guard lock(mu_);
  std::vector<std::string> dead;
  for (const auto& [task, process] : state_.owners()) {
    if (!isAlive(process)) dead.push_back(task);
  }
  return dead;
}

std::vector<std::string> TaskVolumesFactory::recordedTasks() {
  std::lock_guard lock(mu_);
  std::vector<std::string> tasks;
  for (const auto& [task, process] : state_.owners()) tasks.push_back(task);
  return tasks;
}

void TaskVolumesFactory::releaseTask(const std::string& task_id) {
  std::lock_guard lock(mu_);
  bool changed = state_.owners().contains(task_id);
  state_.removeOwner(task_id);
  const std::vector<TrackedMount> mounts = state_.mounts();
  for (auto m : mounts) {
    if (std::ranges::find(m.tasks, task_id) == m.tasks.end()) continue;
    changed = true;
    std::erase(m.tasks, task_id);
    if (!m.tasks.empty()) {
      state_.add(std::move(m));
      continue;
    }
    // Kept in the state when it cannot be unmounted, so a later sweep tries again.
    if (unmountAll(m.target)) state_.remove(m.target);
  }
  if (changed) saveLocked();
}

bool TaskVolumesFactory::unmountAll(const std::string& target) {
  // Deepest first; lazy, as the ECS volume plugin unmounts EFS (`umount -l`): the containers
  // are gone, and a hung NFS server must not hang the agent. Bounded: a mount that will not go
  // is reported, not retried forever.
  for (int attempt = 0; attempt < 64; ++attempt) {
    auto mounts = mounter_->mountPoints();
    std::string deepest;
    for (const auto& m : mounts) {
      if (hasMountAtOrBelow({m}, target) && m.size() >= deepest.size()) deepest = m;
    }
    if (deepest.empty()) return true;
    if (auto r = mounter_->unmount(deepest, true); !r) {
      spdlog::error("volumes: {}", r.error().message);
      return false;
    }
  }
  spdlog::error("volumes: {} is still mounted after 64 unmounts", target);
  return false;
}

bool TaskVolumesFactory::removeUnmounted(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return true;
  if (hasMountAtOrBelow(mounter_->mountPoints(), path)) {
    spdlog::error("volumes: not removing {}: something is still mounted there", path);
    return false;
  }
  fs::remove_all(path, ec);
  if (ec) {
    spdlog::error("volumes: remove {}: {}", path, ec.message());
    return false;
  }
  // The parent (<root>/task or <root>/efs) stays.
  return true;
}

void TaskVolumesFactory::saveLocked() {
  if (auto r = state_.save(); !r) spdlog::error("volumes: {}", r.error().message);
}

int TaskVolumesFactory::sweep(const std::set<std::string>& live_task_ids) {
  int released = 0;
  std::lock_guard lock(mu_);
  for (const auto& [task, process] : TaskOwners(state_.owners())) {
    if (!live_task_ids.contains(task)) state_.removeOwner(task);
  }
  const std::vector<TrackedMount> mounts = state_.mounts();
  for (auto m : mounts) {
    std::erase_if(m.tasks, [&](const std::string& t) { return !live_task_ids.contains(t); });
    if (!m.tasks.empty()) {
      state_.add(std::move(m));
      continue;
    }
    bool mounted = hasMountAtOrBelow(mounter_->mountPoints(), m.target);
    if (unmountAll(m.target)) {
      state_.remove(m.target);
      if (mounted) ++released;
    }
  }
  saveLocked();

  // Mounts the state does not know (a lost or stale state file): anything under task/<id> or
  // efs/<id> of a dead task, and shared volume mounts no record claims.
  const fs::path root(options_.root);
  std::set<std::string> stray;
  for (const auto& mount : mounter_->mountPoints()) {
    for (const char* kind : {"task", "efs"}) {
      const std::string prefix = (root / kind).string() + "/";
      if (mount.compare(0, prefix.size(), prefix) != 0) continue;
      auto rest = mount.substr(prefix.size());
      auto task = rest.substr(0, rest.find('/'));
      if (!live_task_ids.contains(task)) stray.insert(prefix + task);
    }
    const std::string shared = (root / "shared").string() + "/";
    if (mount.compare(0, shared.size(), shared) == 0 && state_.find(mount) == nullptr) {
      stray.insert(mount);
    }
  }
  for (const auto& path : stray) {
    spdlog::warn("volumes: sweep: unmounting untracked {}", path);
    if (unmountAll(path)) ++released;
  }

  for (const char* kind : {"task", "efs"}) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root / kind, ec)) {
      if (!live_task_ids.contains(entry.path().filename().string())) {
        removeUnmounted(entry.path().string());
      }
    }
  }
  return released;
}

std::vector<TrackedMount> TaskVolumesFactory::trackedMounts() {
  std::lock_guard lock(mu_);
  return state_.mounts();
}

}  // namespace ecs::volumes
