#include "agent/state/state_store.h"

#include <fcntl.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <expected>
#include <iterator>
#include <mutex>

#include "agent/state/sqlite.h"

namespace ecs::state {
namespace {

using sqlite::Db;
using sqlite::Statement;

// The schema, one entry per version: entry i takes a store from user_version i to i + 1. Entries
// are never edited once released; a change is a new entry.
const char* const kMigrations[] = {
    // v1
    R"sql(
CREATE TABLE named_values (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE tasks (
  arn TEXT PRIMARY KEY,
  payload_json TEXT NOT NULL,
  desired_status TEXT NOT NULL,
  known_status TEXT NOT NULL,
  sent_status TEXT NOT NULL DEFAULT '',
  role_credentials_id TEXT NOT NULL DEFAULT '',
  execution_role_credentials_id TEXT NOT NULL DEFAULT '',
  stopped_reason TEXT NOT NULL DEFAULT '',
  added_seq INTEGER NOT NULL
);
CREATE INDEX tasks_added_seq ON tasks(added_seq);
CREATE TABLE containers_sent (
  task_arn TEXT NOT NULL REFERENCES tasks(arn) ON DELETE CASCADE,
  name TEXT NOT NULL,
  sent_status TEXT NOT NULL,
  PRIMARY KEY (task_arn, name)
);
CREATE TABLE credentials (
  id TEXT PRIMARY KEY,
  task_arn TEXT NOT NULL,
  role_type TEXT NOT NULL,
  json TEXT NOT NULL
);
CREATE INDEX credentials_task_arn ON credentials(task_arn);
CREATE TABLE outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  task_arn TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('task', 'container')),
  container_name TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL,
  body TEXT NOT NULL
);
CREATE INDEX outbox_task_arn ON outbox(task_arn);
)sql",
    // v2: when each image the agent pulled was last used, for the image cleaner's
    // least-recently-used order across restarts.
    R"sql(
CREATE TABLE images (
  name TEXT PRIMARY KEY,
  last_used_ms INTEGER NOT NULL
);
)sql",
    // v3: the tasks that finished (stopped, reported and cleaned up), so that a redelivered
    // payload does not run one again after its record is gone.
    R"sql(
CREATE TABLE finished_tasks (
  arn TEXT PRIMARY KEY,
  finished_ms INTEGER NOT NULL
);
CREATE INDEX finished_tasks_finished_ms ON finished_tasks(finished_ms);
)sql",
};
constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

constexpr int kBusyTimeoutMs = 5000;

// Sets the process umask for the lifetime of the object: files SQLite creates while the store is
// opened (the database, its -wal and -shm) are then never group- or world-readable.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t old_;
};

Error errnoError(int err, std::string_view what, const std::string& file) {
  ErrorCode code = ErrorCode::kInternal;
  if (err == ENOENT) code = ErrorCode::kNotFound;
  if (err == EACCES || err == EPERM || err == EROFS) code = ErrorCode::kFailedPrecondition;
  return Error{code, fmt::format("{} {}: {}", what, file, std::strerror(err))};
}

// Creates `path` with mode 0600 if it does not exist, and brings an existing file (and its -wal
// and -shm) to 0600. By path, never by an fd: closing an fd of a file SQLite has open in this
// process would drop SQLite's locks on it.
Result<void> ensurePrivateFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return fail(errnoError(errno, "stat", path));
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) return fail(errnoError(errno, "create", path));
    if (fd >= 0) ::close(fd);
  }
  for (const std::string& file : {path, path + "-wal", path + "-shm"}) {
    if (::stat(file.c_str(), &st) != 0) continue;
    if ((st.st_mode & 07777) != 0600 && ::chmod(file.c_str(), 0600) != 0) {
      return fail(errnoError(errno, "chmod", file));
    }
  }
  return {};
}

// Result codes that say the file is fine but the machine is not (or another process holds it):
// moving the store aside would lose it for nothing.
bool environmental(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_NOMEM:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return true;
    default:
      return false;
  }
}

// Why an attempt to open failed: `unusable` when the file itself is the problem.
struct OpenFailure {
  bool unusable = false;
  std::string reason;
  Error error;
};

OpenFailure sqliteFailure(const Db& db, int rc, std::string_view what) {
  Error error = db ? db.error(rc, what)
                   : Error{sqlite::errorCode(rc),
                           fmt::format("{}: {} (sqlite code {})", what, sqlite3_errstr(rc), rc)};
  return OpenFailure{!environmental(rc), error.message, error};
}

OpenFailure unusableFile(std::string reason) {
  return OpenFailure{true, reason, Error{ErrorCode::kDataLoss, reason}};
}

// The single text value of a one-row PRAGMA.
Result<std::string> pragmaText(const Db& db, std::string_view sql, int* rc) {
  auto statement = Statement::prepare(db, sql);
  if (!statement) {
    *rc = sqlite3_extended_errcode(db.handle());
    return fail(statement.error());
  }
  auto row = statement->step();
  if (!row) {
    *rc = sqlite3_extended_errcode(db.handle());
    return fail(row.error());
  }
  return *row ? statement->text(0) : std::string();
}

// Runs every migration after `from`, each in its own transaction with its user_version.
std::optional<OpenFailure> migrate(Db& db, int from) {
  for (int version = from; version < kSchemaVersion; ++version) {
    int rc = SQLITE_OK;
    std::string step = fmt::format("BEGIN IMMEDIATE;\n{}\nPRAGMA user_version = {};\nCOMMIT;",
                                   kMigrations[version], version + 1);
    if (auto done = db.exec(step, &rc); !done) {
      OpenFailure failure =
          sqliteFailure(db, rc, fmt::format("schema migration to version {}", version + 1));
      (void)db.exec("ROLLBACK");  // may already be rolled back; nothing else to do about it
      return failure;
    }
  }
  return std::nullopt;
}

}  // namespace

struct StateStore::Impl {
  std::string path;
  std::mutex mutex;
  Db db;

  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT; rolls back when it fails.
  template <typename T, typename F>
  Result<T> transaction(F&& body) {
    if (auto begin = db.exec("BEGIN IMMEDIATE"); !begin) return fail(begin.error());
    Result<T> result = body();
    if (!result) {
      (void)db.exec("ROLLBACK");  // the error being returned is the one that matters
      return result;
    }
    if (auto commit = db.exec("COMMIT"); !commit) {
      (void)db.exec("ROLLBACK");
      return fail(commit.error());
    }
    return result;
  }

  Result<void> putTaskLocked(const TaskRecord& task);
  Result<bool> taskExists(std::string_view arn);
  Result<void> removeTaskLocked(std::string_view arn);
};

namespace {

// One attempt at opening `path` as a usable store of the current schema; fills `report`'s created
// and migrated_from when it succeeds.
std::expected<Db, OpenFailure> tryOpen(const std::string& path, OpenReport& report) {
  int rc = SQLITE_OK;
  std::string message;
  Db db = Db::open(path, /*create=*/true, &rc, &message);
  if (!db) {
    Error error{sqlite::errorCode(rc), fmt::format("open {}: {}", path, message)};
    return std::unexpected(OpenFailure{!environmental(rc), error.message, error});
  }
  sqlite3_busy_timeout(db.handle(), kBusyTimeoutMs);

  auto mode = pragmaText(db, "PRAGMA journal_mode = WAL", &rc);
  if (!mode) return std::unexpected(sqliteFailure(db, rc, "set WAL mode"));
  if (mode->size() != 3 || strncasecmp(mode->c_str(), "wal", 3) != 0) {
    return std::unexpected(unusableFile(fmt::format("cannot use WAL mode (got \"{}\")", *mode)));
  }
  if (auto set = db.exec("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON", &rc); !set) {
    return std::unexpected(sqliteFailure(db, rc, "set pragmas"));
  }

  auto check = Statement::prepare(db, "PRAGMA quick_check");
  if (!check) {
    return std::unexpected(
        sqliteFailure(db, sqlite3_extended_errcode(db.handle()), "integrity check failed"));
  }
  std::string problems;
  for (;;) {
    auto row = check->step();
    if (!row) {
      return std::unexpected(
          sqliteFailure(db, sqlite3_extended_errcode(db.handle()), "integrity check failed"));
    }
    if (!*row) break;
    std::string line = check->text(0);
    if (line == "ok") continue;
    if (!problems.empty()) problems += "; ";
    problems += line;
    if (problems.size() > 200) break;  // enough for a log line
  }
  if (!problems.empty()) {
    return std::unexpected(unusableFile(fmt::format("integrity check failed: {}", problems)));
  }

  auto version_text = pragmaText(db, "PRAGMA user_version", &rc);
  if (!version_text) return std::unexpected(sqliteFailure(db, rc, "read schema version"));
  const int version = std::atoi(version_text->c_str());
  if (version > kSchemaVersion) {
    return std::unexpected(unusableFile(
        fmt::format("schema version {} is newer than this agent's ({})", version, kSchemaVersion)));
  }
  if (version < 0) {
    return std::unexpected(unusableFile(fmt::format("invalid schema version {}", version)));
  }
  if (auto failure = migrate(db, version)) return std::unexpected(std::move(*failure));
  report.created = version == 0;
  report.migrated_from = version == kSchemaVersion ? 0 : version;
  return db;
}

// `<path>.corrupt-<unix seconds>`, with a counter when that name is taken.
std::string asideName(const std::string& path) {
  std::string base = fmt::format("{}.corrupt-{}", path, static_cast<long long>(::time(nullptr)));
  std::string name = base;
  struct stat st {};
  for (int n = 1; ::lstat(name.c_str(), &st) == 0; ++n) name = fmt::format("{}-{}", base, n);
  return name;
}

// Moves the store and its -wal and -shm aside; returns the new name of the store.
Result<std::string> moveAside(const std::string& path) {
  std::string aside = asideName(path);
  if (::rename(path.c_str(), aside.c_str()) != 0 && errno != ENOENT) {
    return fail(errnoError(errno, "move aside", path));
  }
  for (const char* suffix : {"-wal", "-shm"}) {
    std::string from = path + suffix;
    std::string to = aside + suffix;
    if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
      return fail(errnoError(errno, "move aside", from));
    }
  }
  return aside;
}

}  // namespace

Result<std::unique_ptr<StateStore>> StateStore::open(const std::string& path, OpenReport* report) {
  OpenReport local;
  OpenReport& out = report ? *report : local;
  out = OpenReport{};
  ScopedUmask private_files(077);

  auto context = [&](const Error& error) {
    return error.wrap(fmt::format("state store {}", path));
  };
  if (auto file = ensurePrivateFile(path); !file) return fail(context(file.error()));
  auto db = tryOpen(path, out);
  if (!db) {
    if (!db.error().unusable) return fail(context(db.error().error));
    auto aside = moveAside(path);
    if (!aside) return fail(context(aside.error()));
    out.moved_aside = *aside;
    out.reason = db.error().reason;
    if (auto file = ensurePrivateFile(path); !file) return fail(context(file.error()));
    db = tryOpen(path, out);
    if (!db) return fail(context(db.error().error.wrap("new store after moving the old aside")));
  }
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->db = std::move(*db);
  return std::unique_ptr<StateStore>(new StateStore(std::move(impl)));
}

StateStore::StateStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StateStore::~StateStore() = default;

const std::string& StateStore::path() const {
  return impl_->path;
}

// --- named values ----------------------------------------------------------------------------

Result<std::optional<std::string>> StateStore::value(std::string_view key) {
  std::lock_guard lock(impl_->mutex);
  auto statement = Statement::prepare(impl_->db, "SELECT value FROM named_values WHERE key = ?1");
  if (!statement) return fail(statement.error());
  statement->bind(1, key);
  auto row = statement->step();
  if (!row) return fail(row.error());
  if (!*row) return std::optional<std::string>();
  return std::optional<std::string>(statement->text(0));
}

Result<void> StateStore::setValue(std::string_view key, std::string_view value) {
  std::lock_guard lock(impl_->mutex);
  auto statement = Statement::prepare(impl_->db,
                                      "INSERT INTO named_values (key, value) VALUES (?1, ?2) "
                                      "ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  if (!statement) return fail(statement.error());
  statement->bind(1, key).bind(2, value);
  return statement->run();
}

// --- tasks -----------------------------------------------------------------------------------

namespace {

constexpr std::string_view kTaskColumns =
    "arn, payload_json, desired_status, known_status, sent_status, role_credentials_id, "
    "execution_role_credentials_id, stopped_reason, added_seq";

TaskRecord readTask(const Statement& statement) {
  TaskRecord task;
  task.arn = statement.text(0);
  task.payload_json = statement.text(1);
  task.desired_status = statement.text(2);
  task.known_status = statement.text(3);
  task.sent_status = statement.text(4);
  task.role_credentials_id = statement.text(5);
  task.execution_role_credentials_id = statement.text(6);
  task.stopped_reason = statement.text(7);
  task.added_seq = statement.integer(8);
  return task;
}

}  // namespace

// An existing task keeps its added_seq, and its sent_status when the record has none: the
// cluster's acceptance is recorded by accepted() and is not undone by a re-sent task.
Result<void> StateStore::Impl::putTaskLocked(const TaskRecord& task) {
  if (task.arn.empty()) return fail(ErrorCode::kInvalidArgument, "task without an ARN");
  auto statement = Statement::prepare(
      db,
      "INSERT INTO tasks (arn, payload_json, desired_status, known_status, sent_status, "
      "role_credentials_id, execution_role_credentials_id, stopped_reason, added_seq) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
      "(SELECT COALESCE(MAX(added_seq), 0) + 1 FROM tasks)) "
      "ON CONFLICT (arn) DO UPDATE SET payload_json = excluded.payload_json, "
      "desired_status = excluded.desired_status, known_status = excluded.known_status, "
      "sent_status = CASE WHEN excluded.sent_status = '' THEN tasks.sent_status "
      "ELSE excluded.sent_status END, "
      "role_credentials_id = excluded.role_credentials_id, "
      "execution_role_credentials_id = excluded.execution_role_credentials_id, "
      "stopped_reason = excluded.stopped_reason");
  if (!statement) return fail(statement.error());
  statement->bind(1, task.arn)
      .bind(2, task.payload_json)
      .bind(3, task.desired_status)
      .bind(4, task.known_status)
      .bind(5, task.sent_status)
      .bind(6, task.role_credentials_id)
      .bind(7, task.execution_role_credentials_id)
      .bind(8, task.stopped_reason);
  if (auto done = statement->run(); !done) return fail(done.error().wrap("put task " + task.arn));
  return {};
}

Result<bool> StateStore::Impl::taskExists(std::string_view arn) {
  auto statement = Statement::prepare(db, "SELECT 1 FROM tasks WHERE arn = ?1");
  if (!statement) return fail(statement.error());
  statement->bind(1, arn);
  return statement->step();
}

Result<void> StateStore::putTask(const TaskRecord& task) {
  std::lock_guard lock(impl_->mutex);
  return impl_->putTaskLocked(task);
}

Result<void> StateStore::putTasks(const std::vector<TaskRecord>& tasks) {
  std::lock_guard lock(impl_->mutex);
  return impl_->transaction<void>([&]() -> Result<void> {
    for (const TaskRecord& task : tasks) {
      if (auto done = impl_->putTaskLocked(task); !done) return done;
    }
    return {};
  });
}

Result<std::optional<TaskRecord>> StateStore::task(std::string_view arn) {
  std::lock_guard lock(impl_->mutex);
  auto statement = Statement::prepare(
      impl_->db, fmt::format("SELECT {} FROM tasks WHERE arn = ?1", kTaskColumns));
  if (!statement) return fail(statement.error());
  statement->bind(1, arn);
  auto row = statement->step();
  if (!row) return fail(row.error());
  if (!*row) return std::optional<TaskRecord>();
  return std::optional<TaskRecord>(readTask(*statement));
}

Result<std::vector<TaskRecord>> StateStore::tasks() {
  std::lock_guard lock(impl_->mutex);
  auto statement = Statement::prepare(
      impl_->db, fmt::format("SELECT {} FROM tasks ORDER BY added_seq, arn", kTaskColumns));
  if (!statement) return fail(statement.error());
  std::vector<TaskRecord> out;
  for (;;) {
    auto row = statement->step();
    if (!row) return fail(row.error());
    if (!*row) return out;
    out.push_back(readTask(*statement));
  }
}

Result<void> StateStore::setDesiredStatus(std::string_view arn, std::string_view status,
                                          std::string_view reason) {
  std::lock_guard lock(impl_->mutex);
  auto statement = Statement::prepare(
      impl_->db,
      "UPDATE tasks SET desired_status = ?2, "
      "stopped_reason = CASE WHEN ?3 = '' THEN stopped_reason ELSE ?3 END WHERE arn = ?1");
  if (!statement) return fail(statement.error());
  statement->bind(1, arn).bind(2, status).bind(3, reason);
  if (auto done = statement->run(); !done) return done;
  if (impl_->db.changes() == 0) return fail(ErrorCode::kNotFound, "no stored task {}", arn);
  return {};
}

Result<void> StateStore::setKnownStatus(std::string_view arn, std::string_view status) {
  std::lock_guard lock(impl_->mutex);
  auto statement =
      Statement::prepare(impl_->db, "UPDATE tasks SET known_status = ?2 WHERE arn = ?1");
  if (!statement) return fail(statement.error());
  statement->bind(1, arn).bind(2, status);
  if (auto done = statement->run(); !done) return done;
  if (impl_->db.changes() == 0) return fail(ErrorCode::kNotFound, "no stored task {}", arn);
  return {};
}

Result<void> StateStore::Impl::removeTaskLocked(std::string_view arn) {
  // containers_sent rows go with the task (ON DELETE CASCADE).
  for (const char* sql :
       {"DELETE FROM outbox WHERE task_arn = ?1", "DELETE FROM credentials WHERE task_arn = ?1",
        "DELETE FROM tasks WHERE arn = ?1"}) {
    auto statement = Statement::prepare(db, sql);
    if (!statement) return fail(statement.error());
    statement->bind(1, arn);
    if (auto done = statement->run(); !done) return done;
  }
  return {};
}

Result<void> StateStore::removeTask(std::string_view arn) {
  std::lock_guard lock(impl_->mutex);
  return impl_->transaction<void>([&]() -> Result<void> { return impl_->removeTaskLocked(arn); });
}

Result<void> StateStore::finishTask(std::string_view arn, int64_t finished_ms, int keep) {
  std::lock_guard lock(impl_->mutex);
  return impl_->transaction<void>([&]() -> Result<void> {
    if (auto removed = impl_->removeTaskLocked(arn); !removed) return removed;
    auto insert =
        Statement::prepare(impl_->db,
                           "INSERT INTO finished_tasks (arn, finished_ms) VALUES (?1, ?2) "
                           "ON CONFLICT (arn) DO UPDATE SET finished_ms = excluded.finished_ms");
    if (!insert) return fail(insert.error());
    insert->bind(1, arn).bind(2, finished_ms);
    if (auto done = insert->run(); !done) return done;
    auto prune = Statement::prepare(
        impl_->db,
        "DELETE FROM finished_tasks WHERE arn NOT IN "
        "(SELECT arn FROM finished_tasks ORDER BY finished_ms DESC, arn LIMIT ?1)");
    if (!prune) return fail(prune.error());
    prune->bind(1, static_cast<int64_t>(std::max(keep, 1)));
    return prune->run();
  });
}

Result<bool> StateStore::hasFinished(std::string_view arn) {
  std::lock_guard lock(impl_->mutex);
  auto statement = Statement::prepare(impl_->db, "SELECT 1 FROM finished_tasks WHERE arn = ?1");
  if (!statement) return fail(statement.error());
  statement->bind(1, arn);
  auto row = statement->step();
  if (!row) return fail(row.error());
  return *row;
}

// --- credentials -----------------------------------------------------------------------------

Result<void> StateStore::putCredentials(const CredentialsRecord& credentials) {
  std::lock_guard lock(impl_->mutex);
  if (credentials.id.empty()) {
    return fail(ErrorCode::kInvalidArgument, "credentials without an id");
  }
  auto statement = Statement::prepare(
      impl_->db,
      "INSERT INTO credentials (id, task_arn, role_type, json) VALUES (?1, ?2, ?3, ?4) "
      "ON CONFLICT (id) DO UPDATE SET task_arn = excluded.task_arn, "
      "role_type = excluded.role_type, json = excluded.json");
  if (!statement) return fail(statement.error());
  statement->bind(1, credentials.id)
      .bind(2, credentials.task_arn)
      .bind(3, credentials.role_type)
      .bind(4, credentials.json);
  return statement->run();
}

Result<std::vector<CredentialsRecord>> StateStore::credentials() {
  std::lock_guard lock(impl_->mutex);
  auto statement = Statement::prepare(
      impl_->db, "SELECT id, task_arn, role_type, json FROM credentials ORDER BY rowid");
  if (!statement) return fail(statement.error());
  std::vector<CredentialsRecord> out;
  for (;;) {
    auto row = statement->step();
    if (!row) return fail(row.error());
    if (!*row) return out;
    out.push_back(CredentialsRecord{statement->text(0), statement->text(1), statement->text(2),
                                    statement->text(3)});
  }
}

Result<void> StateStore::removeCredentials(std::string_view id) {
  std::lock_guard lock(impl_->mutex);
  auto statement = Statement::prepare(impl_->db, "DELETE FROM credentials WHERE id = ?1");
  if (!statement) return fail(statement.error());
  statement->bind(1, id);
  return statement->run();
}

// --- outbox ----------------------------------------------------------------------------------

Result<int64_t> StateStore::enqueue(const OutboxEntry& entry) {
  if (entry.kind != "task" && entry.kind != "container") {
    return fail(ErrorCode::kInvalidArgument, "outbox entry of unknown kind \"{}\"", entry.kind);
  }
  std::lock_guard lock(impl_->mutex);
  auto statement =
      Statement::prepare(impl_->db,
                         "INSERT INTO outbox (task_arn, kind, container_name, status, body) "
                         "VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!statement) return fail(statement.error());
  statement->bind(1, entry.task_arn)
      .bind(2, entry.kind)
      .bind(3, entry.container_name)
      .bind(4, entry.status)
      .bind(5, entry.body);
  if (auto done = statement->run(); !done) return fail(done.error());
  return impl_->db.lastInsertRowid();
}

Result<void> StateStore::accepted(int64_t seq) {
  std::lock_guard lock(impl_->mutex);
  Db& db = impl_->db;
  return impl_->transaction<void>([&]() -> Result<void> {
    auto entry = Statement::prepare(
        db, "SELECT task_arn, kind, container_name, status FROM outbox WHERE seq = ?1");
    if (!entry) return fail(entry.error());
    entry->bind(1, seq);
    auto row = entry->step();
    if (!row) return fail(row.error());
    if (!*row) return {};  // already accepted or dropped
    const std::string task_arn = entry->text(0);
    const std::string kind = entry->text(1);
    const std::string container_name = entry->text(2);
    const std::string status = entry->text(3);

    auto remove = Statement::prepare(db, "DELETE FROM outbox WHERE seq = ?1");
    if (!remove) return fail(remove.error());
    remove->bind(1, seq);
    if (auto done = remove->run(); !done) return done;

    // A change for a task the store does not hold records nothing more.
    auto record = Statement::prepare(
        db, kind == "task"
                ? "UPDATE tasks SET sent_status = ?3 WHERE arn = ?1"
                : "INSERT INTO containers_sent (task_arn, name, sent_status) "
                  "SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM tasks WHERE arn = ?1) "
                  "ON CONFLICT (task_arn, name) DO UPDATE SET sent_status = excluded.sent_status");
    if (!record) return fail(record.error());
    record->bind(1, task_arn).bind(2, container_name).bind(3, status);
    return record->run();
  });
}

Result<void> StateStore::drop(int64_t seq) {
  std::lock_guard lock(impl_->mutex);
  auto statement = Statement::prepare(impl_->db, "DELETE FROM outbox WHERE seq = ?1");
  if (!statement) return fail(statement.error());
  statement->bind(1, seq);
  return statement->run();
}

Result<std::vector<OutboxEntry>> StateStore::outbox() {
  std::lock_guard lock(impl_->mutex);
  auto statement = Statement::prepare(
      impl_->db,
      "SELECT seq, task_arn, kind, container_name, status, body FROM outbox ORDER BY seq");
  if (!statement) return fail(statement.error());
  std::vector<OutboxEntry> out;
  for (;;) {
    auto row = statement->step();
    if (!row) return fail(row.error());
    if (!*row) return out;
    out.push_back(OutboxEntry{statement->integer(0), statement->text(1), statement->text(2),
                              statement->text(3), statement->text(4), statement->text(5)});
  }
}

Result<std::vector<ContainerSentRecord>> StateStore::containerSentStatuses(
    std::string_view task_arn) {
  std::lock_guard lock(impl_->mutex);
  auto statement = Statement::prepare(
      impl_->db,
      "SELECT task_arn, name, sent_status FROM containers_sent WHERE task_arn = ?1 ORDER BY name");
  if (!statement) return fail(statement.error());
  statement->bind(1, task_arn);
  std::vector<ContainerSentRecord> out;
  for (;;) {
    auto row = statement->step();
    if (!row) return fail(row.error());
    if (!*row) return out;
    out.push_back(ContainerSentRecord{statement->text(0), statement->text(1), statement->text(2)});
  }
}

Result<void> StateStore::setContainerSentStatus(std::string_view task_arn, std::string_view name,
                                                std::string_view status) {
  std::lock_guard lock(impl_->mutex);
  return impl_->transaction<void>([&]() -> Result<void> {
    auto exists = impl_->taskExists(task_arn);
    if (!exists) return fail(exists.error());
    if (!*exists) return fail(ErrorCode::kNotFound, "no stored task {}", task_arn);
    auto statement = Statement::prepare(
        impl_->db,
        "INSERT INTO containers_sent (task_arn, name, sent_status) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (task_arn, name) DO UPDATE SET sent_status = excluded.sent_status");
    if (!statement) return fail(statement.error());
    statement->bind(1, task_arn).bind(2, name).bind(3, status);
    return statement->run();
  });
}

// --- images ----------------------------------------------------------------------------------

Result<void> StateStore::recordImagesUsed(const std::vector<ImageUsageRecord>& images) {
  if (images.empty()) return {};
  for (const ImageUsageRecord& image : images) {
    if (image.name.empty()) return fail(ErrorCode::kInvalidArgument, "image record without a name");
  }
  std::lock_guard lock(impl_->mutex);
  return impl_->transaction<void>([&]() -> Result<void> {
    for (const ImageUsageRecord& image : images) {
      auto statement = Statement::prepare(
          impl_->db,
          "INSERT INTO images (name, last_used_ms) VALUES (?1, ?2) "
          "ON CONFLICT (name) DO UPDATE SET last_used_ms = excluded.last_used_ms");
      if (!statement) return fail(statement.error());
      statement->bind(1, image.name).bind(2, image.last_used_ms);
      if (auto done = statement->run(); !done) {
        return fail(done.error().wrap("record image " + image.name));
      }
    }
    return {};
  });
}

Result<void> StateStore::forgetImages(const std::vector<std::string>& names) {
  if (names.empty()) return {};
  std::lock_guard lock(impl_->mutex);
  return impl_->transaction<void>([&]() -> Result<void> {
    for (const std::string& name : names) {
      auto statement = Statement::prepare(impl_->db, "DELETE FROM images WHERE name = ?1");
      if (!statement) return fail(statement.error());
      statement->bind(1, name);
      if (auto done = statement->run(); !done) return done;
    }
    return {};
  });
}

Result<std::vector<ImageUsageRecord>> StateStore::imagesUsed() {
  std::lock_guard lock(impl_->mutex);
  auto statement =
      Statement::prepare(impl_->db, "SELECT name, last_used_ms FROM images ORDER BY name");
  if (!statement) return fail(statement.error());
  std::vector<ImageUsageRecord> out;
  for (;;) {
    auto row = statement->step();
    if (!row) return fail(row.error());
    if (!*row) return out;
    out.push_back(ImageUsageRecord{statement->text(0), statement->integer(1)});
  }
}

}  // namespace ecs::state
