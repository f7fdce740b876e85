// SPDX-License-Identifier: MIT
// Daemon: lifecycle. open() takes the lock, checks the host, ensures the token and opens the stores;
// run() listens, starts one MeshLink per mesh and the housekeeping loops, and waits for stop().
#include "daemon/daemon_impl.hpp"

#include <claudemesh/version.hpp>

#include "core/secure_file.hpp"
#include "daemon/service_unit.hpp"
#include "store/sqlite_database.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/redirect_error.hpp>
#include <asio/use_awaitable.hpp>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <utility>

namespace claudemesh {

namespace {

using daemon::Json;

std::string dump(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

const std::vector<std::filesystem::path>& machine_id_files() {
  static const std::vector<std::filesystem::path> files{"/etc/machine-id", "/var/lib/dbus/machine-id"};
  return files;
}

daemon::HostIdentity this_host() { return daemon::read_host_identity(machine_id_files(), "/sys/class/net"); }

// The broker's event names, as the IPC's event stream calls them.
std::string event_kind_for(std::string_view broker_event) {
  if (broker_event == "peer_joined" || broker_event == "peer_returned") return "peer_join";
  if (broker_event == "peer_left") return "peer_leave";
  return "system";
}

}  // namespace

Daemon::Impl::Impl(asio::any_io_executor ex, DaemonConfig cfg, daemon::SingletonLock held, std::string local_token,
                   Outbox out, Inbox in)
    : executor(std::move(ex)),
      config(std::move(cfg)),
      files{config.dir},
      lock(std::move(held)),
      token(std::move(local_token)),
      outbox(std::move(out)),
      inbox(std::move(in)),
      bus(static_cast<std::uint64_t>(now_ms()) * 1000,
          daemon::EventBus::Limits{.history = 1024, .max_subscribers = config.max_event_streams, .max_queue = 4096}),
      started_at_ms(now_ms()),
      stopped(executor),
      reap_timer(executor),
      prune_timer(executor) {}

daemon::MeshState* Daemon::Impl::find_mesh(std::string_view slug_or_id) {
  for (auto& mesh : meshes) {
    if (mesh.slug == slug_or_id || mesh.mesh_id == slug_or_id) return &mesh;
  }
  return nullptr;
}

std::string Daemon::Impl::slug_of(std::string_view mesh_id) const {
  for (const auto& mesh : meshes) {
    if (mesh.mesh_id == mesh_id) return mesh.slug;
  }
  return std::string(mesh_id);
}

void Daemon::Impl::log(std::string_view event, Json fields) const {
  if (!config.log) return;
  Json line = fields.is_object() ? std::move(fields) : Json::object();
  line["event"] = event;
  line["ts"] = now_ms();
  config.log(dump(line));
}

void Daemon::Impl::publish(std::string kind, std::string mesh, Json data, std::string recipient_pubkey,
                           std::string recipient_kind) {
  data["ts"] = now_ms();
  daemon::DaemonEvent event;
  event.kind = std::move(kind);
  event.mesh = std::move(mesh);
  event.data_json = dump(data);
  event.recipient_pubkey = std::move(recipient_pubkey);
  event.recipient_kind = std::move(recipient_kind);
  bus.publish(std::move(event));
  ++counters.events_published;
}

void Daemon::Impl::attach_handlers(daemon::MeshState& mesh) {
  // The handlers hold the Impl weakly: a link's last callbacks may run while the daemon is going away.
  std::weak_ptr<Impl> weak = shared_from_this();
  const std::string slug = mesh.slug;
  mesh.link->on_message([weak, slug](const InboxMessage& message) {
    auto self = weak.lock();
    if (!self) return;
    ++self->counters.messages_received;
    self->publish("message", slug, daemon::message_json(message, slug), message.recipient_pubkey,
                  message.recipient_kind);
  });
  mesh.link->on_event([weak, slug](std::string_view event, std::string_view data_json) {
    auto self = weak.lock();
    if (!self) return;
    Json data = Json::parse(data_json, nullptr, false);
    if (!data.is_object()) data = Json::object();
    data["mesh"] = slug;
    data["event"] = event;
    self->publish(event_kind_for(event), slug, std::move(data));
  });
  mesh.link->on_state([weak, slug](TransportState state) {
    auto self = weak.lock();
    if (!self) return;
    auto* found = self->find_mesh(slug);
    if (!found) return;
    found->state = state;
    self->publish("broker_status", slug, Json{{"mesh", slug}, {"status", std::string(to_string(state))}});
    if (state == TransportState::open) self->apply_profile(*found);
  });
}

namespace {

// "@name:role" or "name" (as sessions register them) → a presence group.
std::vector<PeerInfo::Group> presence_groups(const std::vector<std::string>& registered) {
  std::vector<PeerInfo::Group> groups;
  for (std::string_view text : registered) {
    if (text.starts_with('@')) text.remove_prefix(1);
    const auto colon = text.find(':');
    PeerInfo::Group group;
    group.name = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) group.role = std::string(text.substr(colon + 1));
    if (!group.name.empty()) groups.push_back(std::move(group));
  }
  return groups;
}

constexpr std::int64_t attestation_ttl_ms = std::int64_t{12} * 60 * 60 * 1000;  // the reference's 12 h

}  // namespace

Result<void> Daemon::Impl::start_session_link(daemon::MeshState& mesh, const daemon::SessionInfo& info,
                                              Identity session, SessionAttestation attestation) {
  const std::string pubkey = session.public_key().hex();
  stop_session_link(pubkey);
  peer::LinkConfig link_config;
  link_config.mesh_id = mesh.mesh_id;
  link_config.member_id = mesh.link->config().member_id;
  link_config.broker_url = mesh.link->config().broker_url;
  link_config.display_name = info.display_name;
  link_config.ca_file = mesh.link->config().ca_file;
  link_config.client = config.client;
  link_config.client.session_id = info.session_id;
  link_config.client.pid = info.pid;
  link_config.client.cwd = info.cwd;
  link_config.client.role = info.role;
  link_config.client.groups = presence_groups(info.groups);
  link_config.log = config.log;
  // The daemon holds the member key, so it renews the session's attestation itself.
  auto parent = std::make_shared<Identity>(mesh.link->identity().clone());
  const PublicKey session_key = session.public_key();
  AttestationSource renew = [parent, session_key](std::int64_t now) {
    return attest_session(*parent, session_key, now + attestation_ttl_ms);
  };
  session_keys.insert_or_assign(pubkey, daemon::SessionKey{session.clone(), attestation.expires_at_ms});
  auto link = peer::MeshLink::create_session(executor, mesh.link->identity().clone(), std::move(session),
                                             std::move(attestation), std::move(renew), std::move(link_config), outbox,
                                             inbox);
  if (!link) return fail(link.error());
  std::weak_ptr<Impl> weak = shared_from_this();
  const std::string slug = mesh.slug;
  (*link)->on_message([weak, slug](const InboxMessage& message) {
    auto self = weak.lock();
    if (!self) return;
    ++self->counters.messages_received;
    self->publish("message", slug, daemon::message_json(message, slug), message.recipient_pubkey,
                  message.recipient_kind);
  });
  session_links.insert_or_assign(pubkey, daemon::SessionLinkState{info.token, slug, *link});
  ++counters.session_links_started;
  log("session_link_started", Json{{"session_id", info.session_id}, {"mesh", slug}, {"session_pubkey", pubkey}});
  asio::co_spawn(executor, (*link)->run(), asio::detached);
  return {};
}

void Daemon::Impl::stop_session_link(std::string_view session_pubkey) {
  if (session_pubkey.empty()) return;
  const auto found = session_links.find(session_pubkey);
  if (found == session_links.end()) return;
  found->second.link->stop();
  log("session_link_stopped", Json{{"session_pubkey", found->first}, {"mesh", found->second.mesh_slug}});
  session_links.erase(found);
}

std::shared_ptr<peer::MeshLink> Daemon::Impl::session_link(std::string_view session_pubkey) const {
  if (session_pubkey.empty()) return nullptr;
  const auto found = session_links.find(session_pubkey);
  return found == session_links.end() ? nullptr : found->second.link;
}

void Daemon::Impl::apply_profile(daemon::MeshState& mesh) {
  if (!mesh.wanted_status && !mesh.wanted_summary && !mesh.wanted_visible) return;
  auto link = mesh.link;
  auto status = mesh.wanted_status;
  auto summary = mesh.wanted_summary;
  auto visible = mesh.wanted_visible;
  auto apply = [link, status, summary, visible]() -> asio::awaitable<void> {
    if (status) co_await link->client().set_status(*status);
    if (summary) co_await link->client().set_summary(*summary);
    if (visible) co_await link->client().set_visible(*visible);
  };
  asio::co_spawn(executor, apply(), asio::detached);
}

asio::awaitable<void> Daemon::Impl::reap_loop() {
  auto keep = shared_from_this();
  auto& timer = reap_timer;
  const daemon::LinuxProcessProbe probe;
  while (!stopping) {
    timer.expires_after(config.reaper_interval);
    std::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopping) break;
    for (const auto& gone : sessions.sweep(now_ms(), probe)) {
      ++counters.sessions_reaped;
      stop_session_link(gone.session_pubkey);
      log("session_reaped", Json{{"session_id", gone.session_id}, {"pid", gone.pid}});
    }
  }
}

asio::awaitable<void> Daemon::Impl::prune_loop() {
  auto keep = shared_from_this();
  auto& timer = prune_timer;
  bool first = true;  // prune at start too: a daemon restarted every hour would otherwise never prune
  while (!stopping) {
    if (!first) {
      timer.expires_after(config.prune_interval);
      std::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (stopping) break;
    }
    first = false;
    const std::int64_t now = now_ms();
    std::erase_if(session_keys, [this, now](const auto& entry) {
      return entry.second.expires_at_ms < now && !session_links.contains(entry.first);
    });
    if (auto removed = inbox.prune(); removed) {
      if (*removed > 0) log("inbox_prune_completed", Json{{"removed", *removed}});
    } else {
      log("inbox_prune_failed", Json{{"message", removed.error().message}});
    }
  }
}

// ---- Daemon ----

Daemon::Daemon(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Daemon::~Daemon() {
  try {
    if (!impl_) return;
    stop();
    std::error_code ignored;
    std::filesystem::remove(impl_->files.socket(), ignored);
    std::filesystem::remove(impl_->files.tcp_port(), ignored);
    // Coroutines still unwinding may keep the state a moment longer; the directory is free now.
    const daemon::SingletonLock released = std::move(impl_->lock);
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor must not throw; the lock goes with the process
  }
}

Result<std::unique_ptr<Daemon>> Daemon::open(const asio::any_io_executor& executor, DaemonConfig config) {
  if (config.dir.empty()) return fail(Errc::invalid_value, "the daemon needs a directory");
  if (config.meshes.empty()) {
    return fail(Errc::invalid_value, "no mesh joined; run `claudemesh join <invite-url>` first");
  }
  std::set<std::string> slugs;
  for (const auto& mesh : config.meshes) {
    if (mesh.slug.empty() || !slugs.insert(mesh.slug).second) {
      return fail(Errc::invalid_value, "mesh slugs must be unique and non-empty (\"" + mesh.slug + "\")");
    }
  }
  const DaemonFiles files{config.dir};
  auto lock = daemon::SingletonLock::acquire(files.lock());
  if (!lock) return fail(lock.error());

  const auto host = this_host();
  auto check = daemon::check_host(files.host_fingerprint(), host, now_ms());
  if (!check) return fail(check.error());
  if (check->outcome == daemon::HostCheck::Outcome::mismatch && config.clone_policy != ClonePolicy::allow) {
    const std::string message = "this daemon directory (" + config.dir.string() +
                                ") was created on another machine or its identity changed (stored host \"" +
                                check->stored_host_id + "\", this host \"" + host.host_id + "\"" +
                                (check->detail.empty() ? "" : ", " + check->detail) +
                                "); if this is the same machine, run: claudemesh daemon accept-host";
    if (config.clone_policy == ClonePolicy::refuse) return fail(Errc::forbidden, message);
    if (config.log) config.log(dump(Json{{"event", "host_fingerprint_mismatch"}, {"level", "warn"}, {"message", message}}));
  }

  auto token = daemon::ensure_local_token(files.token());
  if (!token) return fail(token.error());
  auto outbox = Outbox::open(files.outbox(), config.outbox);
  if (!outbox) return fail(outbox.error());
  auto inbox = Inbox::open(files.inbox(), config.inbox);
  if (!inbox) return fail(inbox.error());

  auto meshes = std::move(config.meshes);
  config.meshes.clear();
  auto impl = std::make_shared<Impl>(executor, std::move(config), std::move(*lock), std::move(*token),
                                     std::move(*outbox), std::move(*inbox));
  if (check->outcome == daemon::HostCheck::Outcome::first_run) {
    impl->log("host_fingerprint_written", Json{{"fingerprint_prefix", host.fingerprint().substr(0, 16)}});
  }
  if (const auto recovered = impl->outbox.recovered_on_open(); recovered > 0) {
    impl->log("outbox_recovered", Json{{"rows", recovered}});
  }
  for (auto& mesh : meshes) {
    peer::LinkConfig link_config;
    link_config.mesh_id = mesh.mesh_id;
    link_config.member_id = mesh.member_id;
    link_config.broker_url = mesh.broker_url;
    link_config.display_name = mesh.display_name;
    link_config.ca_file = mesh.ca_file;
    link_config.client = impl->config.client;
    link_config.client.pid = static_cast<std::int64_t>(::getpid());
    link_config.log = impl->config.log;
    daemon::MeshState state;
    state.slug = mesh.slug;
    state.mesh_id = mesh.mesh_id;
    state.member_pubkey = mesh.member.public_key().hex();
    auto link = peer::MeshLink::create(executor, std::move(mesh.member), std::move(link_config), impl->outbox,
                                       impl->inbox);
    if (!link) return fail(link.error(), "mesh " + state.slug);
    state.link = std::move(*link);
    impl->meshes.push_back(std::move(state));
  }
  for (auto& mesh : impl->meshes) {
    impl->attach_handlers(mesh);
    std::weak_ptr<Impl> weak = impl;
    mesh.link->key_for([weak](std::string_view session_pubkey) -> const Identity* {
      auto self = weak.lock();
      if (!self) return nullptr;
      const auto found = self->session_keys.find(session_pubkey);
      return found == self->session_keys.end() ? nullptr : &found->second.key;
    });
  }
  impl->router = daemon::make_ipc_router(*impl);
  return std::unique_ptr<Daemon>(new Daemon(std::move(impl)));
}

asio::awaitable<void> Daemon::run() {
  auto impl = impl_;
  namespace http = transport::http;
  http::ServerConfig server_config;
  server_config.limits.max_body_bytes = impl->config.max_body_bytes;
  server_config.max_in_flight = impl->config.max_in_flight;
  impl->server = std::make_unique<http::Server>(impl->executor, std::move(*impl->router), server_config);
  impl->router.reset();

  // listen_unix replaces a dead daemon's socket file and never steals a live one; the socket is 0600.
  auto unix_listener = transport::Listener::listen_unix(impl->executor, impl->files.socket());
  if (!unix_listener) {
    impl->started = fail(unix_listener.error(), "cannot listen on " + impl->files.socket().string());
    co_return;
  }
  impl->server->serve(std::move(*unix_listener));
  std::error_code ignored;
  std::filesystem::remove(impl->files.tcp_port(), ignored);
  if (impl->config.tcp_port) {
    auto tcp = transport::Listener::listen_tcp(impl->executor, "127.0.0.1", *impl->config.tcp_port);
    if (!tcp) {
      impl->started = fail(tcp.error(), "cannot listen on 127.0.0.1:" + std::to_string(*impl->config.tcp_port));
      impl->server->stop();
      co_return;
    }
    impl->bound_tcp_port = tcp->port();
    impl->server->serve(std::move(*tcp));
    const std::string port_text = std::to_string(impl->bound_tcp_port) + "\n";
    if (auto written = core::write_secret_file(impl->files.tcp_port(), port_text, true); !written) {
      impl->log("tcp_port_file_failed", Json{{"message", written.error().message}});
    }
  }
  impl->started = Result<void>{};
  Json meshes = Json::array();
  for (const auto& mesh : impl->meshes) meshes.push_back(mesh.slug);
  impl->log("daemon_started", Json{{"version", version_string},
                                   {"pid", ::getpid()},
                                   {"sock", impl->files.socket().string()},
                                   {"tcp", impl->bound_tcp_port ? Json("127.0.0.1:" + std::to_string(impl->bound_tcp_port))
                                                                : Json(nullptr)},
                                   {"meshes", meshes}});

  for (auto& mesh : impl->meshes) asio::co_spawn(impl->executor, mesh.link->run(), asio::detached);
  asio::co_spawn(impl->executor, impl->reap_loop(), asio::detached);
  asio::co_spawn(impl->executor, impl->prune_loop(), asio::detached);

  if (!impl->stopping) {
    impl->stopped.expires_at(asio::steady_timer::time_point::max());
    std::error_code ec;
    co_await impl->stopped.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  impl->log("daemon_shutdown", Json::object());
}

void Daemon::stop() {
  auto& impl = *impl_;
  if (impl.stopping) return;
  impl.stopping = true;
  if (impl.server) impl.server->stop();
  for (auto& mesh : impl.meshes) mesh.link->stop();
  for (auto& [pubkey, session] : impl.session_links) session.link->stop();
  impl.session_links.clear();
  impl.bus.close();
  impl.reap_timer.cancel();
  impl.prune_timer.cancel();
  impl.stopped.cancel();
}

std::optional<Result<void>> Daemon::started() const { return impl_->started; }
std::uint16_t Daemon::tcp_port() const noexcept { return impl_->bound_tcp_port; }
const DaemonFiles& Daemon::files() const noexcept { return impl_->files; }
Outbox& Daemon::outbox() noexcept { return impl_->outbox; }

std::vector<std::string> Daemon::routes() const {
  const auto& router = impl_->server ? impl_->server->router() : *impl_->router;
  std::vector<std::string> out;
  for (const auto& route : router.routes()) {
    if (route.method == "OPTIONS") continue;
    std::string path;
    for (const auto& segment : route.segments) {
      path += "/";
      path += segment.starts_with(':') ? "{" + segment.substr(1) + "}" : segment;
    }
    out.push_back(route.method + " " + path);
  }
  return out;
}
Inbox& Daemon::inbox() noexcept { return impl_->inbox; }

std::optional<long> running_daemon_pid(const std::filesystem::path& dir) {
  return daemon::SingletonLock::holder(DaemonFiles{dir}.lock());
}

Result<std::string> daemon_accept_host(const std::filesystem::path& dir) {
  if (auto made = store::create_private_directories(dir); !made) return fail(made.error());
  const auto host = this_host();
  if (auto accepted = daemon::accept_host(DaemonFiles{dir}.host_fingerprint(), host, now_ms()); !accepted) {
    return fail(accepted.error());
  }
  return host.fingerprint().substr(0, 16);
}

std::string_view daemon_version() noexcept { return version_string; }

DaemonServiceUnit render_daemon_service(const std::filesystem::path& executable, const std::vector<std::string>& args,
                                        const std::filesystem::path& home, const std::filesystem::path& log_file) {
#ifdef __APPLE__
  constexpr auto platform = daemon::ServicePlatform::launchd;
#else
  constexpr auto platform = daemon::ServicePlatform::systemd;
#endif
  std::error_code ec;
  auto absolute = std::filesystem::absolute(executable, ec);
  const daemon::ServiceSpec spec{.executable = ec ? executable : absolute.lexically_normal(),
                                 .args = args,
                                 .home = home,
                                 .log_file = log_file};
  auto unit = daemon::render_service_unit(platform, spec);
  return DaemonServiceUnit{std::move(unit.path), std::move(unit.contents), std::move(unit.start_command),
                           std::move(unit.stop_command)};
}

Result<void> write_daemon_service(const DaemonServiceUnit& unit) {
  return daemon::write_service_unit(
      daemon::ServiceUnit{.path = unit.path, .contents = unit.contents, .start_command = unit.start_command,
                          .stop_command = unit.stop_command});
}

bool running_in_ci_environment() {
  return daemon::running_in_ci([](const char* name) { return std::getenv(name); });  // NOLINT(concurrency-mt-unsafe)
}

}  // namespace claudemesh
