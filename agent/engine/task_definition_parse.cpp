// Reading a task definition's JSON (register-task-definition input, or describe-task-definition
// output) into the typed structs.
#include <boost/json.hpp>
#include <utility>

#include "agent/common/json_reader.h"
#include "agent/common/text.h"
#include "agent/engine/task_definition.h"
#include "agent/engine/task_definition_json.h"

namespace ecs::engine {
namespace {

bool readDevice(json::Reader& reader, const json::Value& value, const std::string& path,
                Device& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("hostPath", out.host_path);
    f.read("containerPath", out.container_path);
    f.read("permissions", out.permissions);
  });
}

bool readTmpfs(json::Reader& reader, const json::Value& value, const std::string& path,
               Tmpfs& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("containerPath", out.container_path);
    f.require("size", out.size_mib);
    f.read("mountOptions", out.mount_options);
  });
}

// "ENABLED" | "DISABLED" members of the EFS configuration.
void readEnabled(const json::Fields& f, std::string_view key, bool& out) {
  std::string setting;
  f.read(key, setting);
  if (!f.find(key) || !f.find(key)->is_string()) return;
  if (setting == "ENABLED") {
    out = true;
  } else if (setting == "DISABLED") {
    out = false;
  } else {
    f.reader().error(f.path(key), fmt::format("unknown value \"{}\" (expected ENABLED or DISABLED)",
                                              text::clip(setting)));
  }
}

}  // namespace

bool readPortMapping(json::Reader& reader, const json::Value& value, const std::string& path,
                     PortMapping& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("containerPort", out.container_port);
    f.read("hostPort", out.host_port);
    if (f.find("protocol")) {
      f.read("protocol", out.protocol);
      out.protocol = text::lowercase(out.protocol);
    }
    f.read("containerPortRange", out.container_port_range);
    f.read("name", out.name);
    f.read("appProtocol", out.app_protocol);
  });
}

bool readMountPoint(json::Reader& reader, const json::Value& value, const std::string& path,
                    MountPoint& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("sourceVolume", out.source_volume);
    f.read("containerPath", out.container_path);
    f.read("readOnly", out.read_only);
  });
}

bool readVolumeFrom(json::Reader& reader, const json::Value& value, const std::string& path,
                    VolumeFrom& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("sourceContainer", out.source_container);
    f.read("readOnly", out.read_only);
  });
}

bool readLinuxParameters(json::Reader& reader, const json::Value& value, const std::string& path,
                         LinuxParameters& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.object("capabilities", [&](const json::Fields& caps) {
      caps.read("add", out.capabilities_add);
      caps.read("drop", out.capabilities_drop);
    });
    f.read("devices", out.devices, readDevice);
    f.read("initProcessEnabled", out.init_process_enabled);
    f.read("sharedMemorySize", out.shared_memory_size_mib);
    f.read("tmpfs", out.tmpfs, readTmpfs);
    f.read("maxSwap", out.max_swap_mib);
    f.read("swappiness", out.swappiness);
  });
}

bool readContainerDependency(json::Reader& reader, const json::Value& value,
                             const std::string& path, ContainerDependency& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("containerName", out.container_name);
    std::string condition;
    f.require("condition", condition);
    if (!f.find("condition") || !f.find("condition")->is_string()) return;
    if (condition == "START") {
      out.condition = ContainerDependency::Condition::kStart;
    } else if (condition == "COMPLETE") {
      out.condition = ContainerDependency::Condition::kComplete;
    } else if (condition == "SUCCESS") {
      out.condition = ContainerDependency::Condition::kSuccess;
    } else if (condition == "HEALTHY") {
      out.condition = ContainerDependency::Condition::kHealthy;
    } else {
      f.reader().error(f.path("condition"),
                       fmt::format("unknown condition \"{}\" (expected START, COMPLETE, SUCCESS "
                                   "or HEALTHY)",
                                   text::clip(condition)));
    }
  });
}

bool readEnvironmentFile(json::Reader& reader, const json::Value& value, const std::string& path,
                         EnvironmentFile& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("value", out.value);
    f.read("type", out.type);
  });
}

bool readRestartPolicy(json::Reader& reader, const json::Value& value, const std::string& path,
                       RestartPolicy& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("enabled", out.enabled);
    f.read("ignoredExitCodes", out.ignored_exit_codes);
    f.read("restartAttemptPeriod", out.restart_attempt_period_seconds);
  });
}

bool readHostVolume(json::Reader& reader, const json::Value& value, const std::string& path,
                    HostVolume& out) {
  return json::readObject(reader, value, path,
                          [&](const json::Fields& f) { f.read("sourcePath", out.source_path); });
}

bool readDockerVolumeConfiguration(json::Reader& reader, const json::Value& value,
                                   const std::string& path, DockerVolumeConfiguration& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("scope", out.scope);
    f.read("autoprovision", out.autoprovision);
    f.read("driver", out.driver);
    f.read("driverOpts", out.driver_opts);
    f.read("labels", out.labels);
  });
}

bool readEfsVolumeConfiguration(json::Reader& reader, const json::Value& value,
                                const std::string& path, EfsVolumeConfiguration& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("fileSystemId", out.file_system_id);
    f.read("rootDirectory", out.root_directory);
    readEnabled(f, "transitEncryption", out.transit_encryption);
    f.read("transitEncryptionPort", out.transit_encryption_port);
    f.object("authorizationConfig", [&](const json::Fields& a) {
      a.read("accessPointId", out.access_point_id);
      readEnabled(a, "iam", out.iam);
    });
  });
}

namespace {

bool readKeyValuePair(json::Reader& reader, const json::Value& value, const std::string& path,
                      KeyValuePair& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("name", out.name);
    f.read("value", out.value);
  });
}

bool readSecret(json::Reader& reader, const json::Value& value, const std::string& path,
                Secret& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("name", out.name);
    f.read("valueFrom", out.value_from);
  });
}

bool readHealthCheck(json::Reader& reader, const json::Value& value, const std::string& path,
                     HealthCheck& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("command", out.command);
    f.read("interval", out.interval_seconds);
    f.read("timeout", out.timeout_seconds);
    f.read("retries", out.retries);
    f.read("startPeriod", out.start_period_seconds);
  });
}

bool readUlimit(json::Reader& reader, const json::Value& value, const std::string& path,
                Ulimit& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("name", out.name);
    f.require("softLimit", out.soft_limit);
    f.require("hardLimit", out.hard_limit);
  });
}

bool readHostEntry(json::Reader& reader, const json::Value& value, const std::string& path,
                   HostEntry& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("hostname", out.hostname);
    f.read("ipAddress", out.ip_address);
  });
}

bool readLogConfiguration(json::Reader& reader, const json::Value& value, const std::string& path,
                          LogConfiguration& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("logDriver", out.log_driver);
    f.read("options", out.options);
    f.read("secretOptions", out.secret_options, readSecret);
  });
}

// systemControls [{namespace, value}] become KeyValuePair{name = namespace}.
void readSystemControls(const json::Fields& f, std::vector<KeyValuePair>& out) {
  const json::Value* controls = f.find("systemControls");
  if (!controls) return;
  const json::Array* array = controls->if_array();
  if (!array) {
    f.reader().typeError(f.path("systemControls"), "an array", *controls);
    return;
  }
  for (size_t i = 0; i < array->size(); ++i) {
    KeyValuePair control;
    json::readObject(f.reader(), (*array)[i], json::indexPath(f.path("systemControls"), i),
                     [&](const json::Fields& c) {
                       c.read("namespace", control.name);
                       c.read("value", control.value);
                     });
    out.push_back(std::move(control));
  }
}

bool readContainerDefinition(json::Reader& reader, const json::Value& value,
                             const std::string& path, ContainerDefinition& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("name", out.name);
    f.read("image", out.image);
    f.object("repositoryCredentials", [&](const json::Fields& c) {
      c.read("credentialsParameter", out.repository_credentials_parameter);
    });
    f.read("cpu", out.cpu);
    f.read("memory", out.memory_mib);
    f.read("memoryReservation", out.memory_reservation_mib);
    f.read("links", out.links);
    f.read("portMappings", out.port_mappings, readPortMapping);
    f.read("essential", out.essential);
    f.read("entryPoint", out.entry_point);
    f.read("command", out.command);
    f.read("environment", out.environment, readKeyValuePair);
    f.read("environmentFiles", out.environment_files, readEnvironmentFile);
    f.read("mountPoints", out.mount_points, readMountPoint);
    f.read("volumesFrom", out.volumes_from, readVolumeFrom);
    f.read("linuxParameters", out.linux_parameters, readLinuxParameters);
    f.read("secrets", out.secrets, readSecret);
    f.read("dependsOn", out.depends_on, readContainerDependency);
    f.read("startTimeout", out.start_timeout_seconds);
    f.read("stopTimeout", out.stop_timeout_seconds);
    f.read("hostname", out.hostname);
    f.read("user", out.user);
    f.read("workingDirectory", out.working_directory);
    f.read("disableNetworking", out.disable_networking);
    f.read("privileged", out.privileged);
    f.read("readonlyRootFilesystem", out.readonly_root_filesystem);
    f.read("dnsServers", out.dns_servers);
    f.read("dnsSearchDomains", out.dns_search_domains);
    f.read("extraHosts", out.extra_hosts, readHostEntry);
    f.read("dockerSecurityOptions", out.docker_security_options);
    f.read("interactive", out.interactive);
    f.read("pseudoTerminal", out.pseudo_terminal);
    f.read("dockerLabels", out.docker_labels);
    f.read("ulimits", out.ulimits, readUlimit);
    f.read("logConfiguration", out.log_configuration, readLogConfiguration);
    f.read("healthCheck", out.health_check, readHealthCheck);
    readSystemControls(f, out.system_controls);
    f.read("restartPolicy", out.restart_policy, readRestartPolicy);
    f.unsupported("resourceRequirements");
    f.unsupported("firelensConfiguration");
    f.unsupported("credentialSpecs");
  });
}

bool readVolume(json::Reader& reader, const json::Value& value, const std::string& path,
                Volume& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("name", out.name);
    f.read("host", out.host, readHostVolume);
    f.read("dockerVolumeConfiguration", out.docker_volume_configuration,
           readDockerVolumeConfiguration);
    f.read("efsVolumeConfiguration", out.efs_volume_configuration, readEfsVolumeConfiguration);
    f.unsupported("fsxWindowsFileServerVolumeConfiguration");
    f.unsupported("configuredAtLaunch");  // EBS volumes attached by the control plane
    if (!f.find("host") && !f.find("dockerVolumeConfiguration") &&
        !f.find("efsVolumeConfiguration") && !f.find("fsxWindowsFileServerVolumeConfiguration")) {
      out.host = HostVolume{};
    }
  });
}

bool readRuntimePlatform(json::Reader& reader, const json::Value& value, const std::string& path,
                         RuntimePlatform& out) {
  return json::readObject(reader, value, path, [&](const json::Fields& f) {
    f.read("cpuArchitecture", out.cpu_architecture);
    f.read("operatingSystemFamily", out.operating_system_family);
  });
}

// Task-level cpu/memory: strings in the API; plain integers are accepted too.
void readTaskSize(const json::Fields& f, std::string_view key, std::optional<int>& out,
                  Result<int> (*parse)(std::string_view)) {
  const json::Value* value = f.find(key);
  if (!value) return;
  std::string size;
  if (value->is_int64() || value->is_uint64() || value->is_double()) {
    size = boost::json::serialize(*value);
  } else if (!json::readString(f.reader(), *value, f.path(key), size)) {
    return;
  }
  if (auto parsed = parse(size)) {
    out = *parsed;
  } else {
    f.reader().error(f.path(key), parsed.error().message);
  }
}

void readTaskDefinition(const json::Fields& f, TaskDefinition& out) {
  f.read("family", out.family);
  f.read("revision", out.revision);
  f.read("taskDefinitionArn", out.task_definition_arn);
  f.read("taskRoleArn", out.task_role_arn);
  f.read("executionRoleArn", out.execution_role_arn);
  f.read("networkMode", out.network_mode);
  f.read("containerDefinitions", out.container_definitions, readContainerDefinition);
  f.read("volumes", out.volumes, readVolume);
  readTaskSize(f, "cpu", out.cpu_units, parseTaskCpu);
  readTaskSize(f, "memory", out.memory_mib, parseTaskMemory);
  f.read("pidMode", out.pid_mode);
  f.read("ipcMode", out.ipc_mode);
  f.read("requiresCompatibilities", out.requires_compatibilities);
  f.read("runtimePlatform", out.runtime_platform, readRuntimePlatform);
  f.unsupported("proxyConfiguration");
  f.unsupported("inferenceAccelerators");
}

// Tags are a list of {key, value}.
void readTags(const json::Fields& f, std::map<std::string, std::string>& out) {
  const json::Value* tags = f.find("tags");
  if (!tags) return;
  const json::Array* array = tags->if_array();
  if (!array) {
    f.reader().typeError(f.path("tags"), "an array", *tags);
    return;
  }
  for (size_t i = 0; i < array->size(); ++i) {
    std::string key;
    std::string value;
    json::readObject(f.reader(), (*array)[i], json::indexPath(f.path("tags"), i),
                     [&](const json::Fields& tag) {
                       tag.read("key", key);
                       tag.read("value", value);
                     });
    out[key] = value;
  }
}

}  // namespace

Result<TaskDefinition> parseTaskDefinition(std::string_view json_text) {
  auto document = json::parse(json_text);
  if (!document) return fail(document.error());
  const json::Object* top = document->if_object();
  if (!top) {
    return fail(ErrorCode::kInvalidArgument, "expected a JSON object at the top level, got {}",
                json::describe(*document));
  }
  json::Reader reader;
  json::refuseNul(reader, *document, "");
  TaskDefinition definition;
  json::Fields top_fields(reader, *top, "");
  // describe-task-definition output: {"taskDefinition": {...}, "tags": [...]}.
  if (const json::Value* wrapped = top_fields.find("taskDefinition")) {
    json::readObject(reader, *wrapped, "taskDefinition",
                     [&](const json::Fields& f) { readTaskDefinition(f, definition); });
  } else {
    readTaskDefinition(top_fields, definition);
  }
  readTags(top_fields, definition.tags);
  if (!reader.ok()) {
    return fail(ErrorCode::kInvalidArgument, "{}", json::joinProblems(reader.errors()));
  }
  definition.unsupported_fields = reader.unsupportedFields();
  return definition;
}

}  // namespace ecs::engine
