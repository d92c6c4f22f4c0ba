// Readers for the parts of a task definition whose JSON shape other wire formats share: an ACS
// task carries portMappings, mountPoints, volume configurations, ... exactly as a task definition
// does. Each reads one JSON value into its struct (see agent/common/json_reader.h), reporting
// problems with `path`; unknown members are ignored.
#pragma once

#include <string>

#include "agent/common/json_reader.h"
#include "agent/engine/task_definition.h"

namespace ecs::engine {

bool readPortMapping(json::Reader& reader, const json::Value& value, const std::string& path,
                     PortMapping& out);
bool readMountPoint(json::Reader& reader, const json::Value& value, const std::string& path,
                    MountPoint& out);
bool readVolumeFrom(json::Reader& reader, const json::Value& value, const std::string& path,
                    VolumeFrom& out);
bool readLinuxParameters(json::Reader& reader, const json::Value& value, const std::string& path,
                         LinuxParameters& out);
bool readContainerDependency(json::Reader& reader, const json::Value& value,
                             const std::string& path, ContainerDependency& out);
bool readEnvironmentFile(json::Reader& reader, const json::Value& value, const std::string& path,
                         EnvironmentFile& out);
bool readRestartPolicy(json::Reader& reader, const json::Value& value, const std::string& path,
                       RestartPolicy& out);
bool readHostVolume(json::Reader& reader, const json::Value& value, const std::string& path,
                    HostVolume& out);
bool readDockerVolumeConfiguration(json::Reader& reader, const json::Value& value,
                                   const std::string& path, DockerVolumeConfiguration& out);
bool readEfsVolumeConfiguration(json::Reader& reader, const json::Value& value,
                                const std::string& path, EfsVolumeConfiguration& out);

}  // namespace ecs::engine
