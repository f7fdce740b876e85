// SPDX-License-Identifier: MIT
// `claudemesh send` and `claudemesh msg-status` (also `message status`): sending, and following a message.
#include "cli.hpp"
#include "cold_path.hpp"
#include "daemon_access.hpp"

#include <claudemesh/target.hpp>

#include <ctime>
#include <iostream>
#include <memory>

namespace claudemesh::cli {
namespace {

using Json = nlohmann::json;

std::string format_ms(std::int64_t ms) {
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm local{};
  ::localtime_r(&seconds, &local);
  char buffer[32];
  if (std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S", &local) == 0) return std::to_string(ms);
  return buffer;
}

// ---- send ----

struct SendArgs {
  std::string target;
  std::vector<std::string> words;
  std::string priority = "next";
  std::string reply_to;
  std::string client_id;
};

// Reference bug 39: a DM "looped back to my own inbox" — a full key that is our own member key is refused.
std::optional<Failure> refuse_self(const std::vector<JoinedMesh>& meshes, const std::string& slug, const Target& target) {
  if (target.kind != TargetKind::pubkey) return std::nullopt;
  for (const auto& mesh : meshes) {
    if (!slug.empty() && mesh.slug != slug) continue;
    auto member = load_member_identity(mesh);
    if (member && member->public_key().hex() == target.value) {
      return Failure{.code = "invalid_target",
                     .message = "that is you: " + target.value.substr(0, 16) + "… is your own member key in mesh " + mesh.slug +
                                "; name another peer",
                     .exit_code = exit_usage};
    }
  }
  return std::nullopt;
}

int print_sent(const GlobalOptions& options, const Json& result, const std::string& target) {
  if (options.json) return print_ok(result);
  std::cout << "sent to " << target << " (" << result["client_message_id"].get<std::string>() << ", via "
            << result["via"].get<std::string>() << ")";
  if (result.value("duplicate", false)) std::cout << " — a duplicate of the one already sent";
  std::cout << "\n";
  return exit_ok;
}

int send_via_daemon(const GlobalOptions& options, DaemonClient& daemon, const SendArgs& args, const std::string& body) {
  Json request{{"to", args.target}, {"message", body}, {"priority", args.priority}};
  if (!options.mesh.empty()) request["mesh"] = options.mesh;
  if (!args.reply_to.empty()) request["reply_to_id"] = args.reply_to;
  if (!args.client_id.empty()) request["client_message_id"] = args.client_id;
  auto reply = daemon.call("POST", "/v1/send", request.dump());
  // The daemon answered: its answer is final, also a refusal (no second try on the direct path).
  if (!reply) return report(options, Failure{.code = std::string(reply.error().wire_code()),
                                             .message = "send (daemon): " + reply.error().message});
  if (!reply->ok()) return report(options, failure_from_reply(*reply, "send"));
  Failure failure;
  auto doc = parse_reply(*reply, failure);
  if (!doc) return report(options, failure);
  const Json result{{"client_message_id", text_of(*doc, "client_message_id")},
                    {"status", text_of(*doc, "status")},
                    {"duplicate", doc->value("duplicate", false)},
                    {"target", args.target},
                    {"target_spec", text_of(*doc, "target_spec")},
                    {"mesh", text_of(*doc, "mesh")},
                    {"via", "daemon"}};
  return print_sent(options, result, args.target);
}

int send_direct(const GlobalOptions& options, const std::vector<JoinedMesh>& meshes, const SendArgs& args, std::string body) {
  auto mesh = select_mesh(meshes, options.mesh);
  if (!mesh) {
    auto failure = failure_from(mesh.error());
    if (mesh.error() == Errc::invalid_value) failure.exit_code = exit_usage;
    return report(options, failure);
  }
  auto member = load_member_identity(*mesh);
  if (!member) return report_error(options, member.error());
  SendOptions send_options;
  send_options.priority = args.priority;
  send_options.reply_to_id = args.reply_to;
  send_options.client_message_id = args.client_id;
  auto sent = cold_send(options.home_dir(), *mesh, std::move(*member), args.target, std::move(body), std::move(send_options),
                        cold_send_wait);
  if (!sent) return report_error(options, sent.error());
  const auto& row = sent->row;
  if (row.status == OutboxStatus::dead) {
    return report(options, Failure{.code = "send_failed",
                                   .message = "the broker did not take message " + row.client_message_id + ": " + row.last_error});
  }
  if (!sent->handed_over) {
    return report(options, Failure{.code = "still_queued",
                                   .message = "message " + row.client_message_id + " is queued in " +
                                              cold_dir(options.home_dir(), *mesh).string() +
                                              " but the broker has not taken it within 10 s" +
                                              (row.last_error.empty() ? std::string() : " (" + row.last_error + ")") +
                                              "; it goes out with the next direct send on " + mesh->slug +
                                              " — or start the daemon (claudemesh daemon up) and resend with --client-id " +
                                              row.client_message_id});
  }
  const Json result{{"client_message_id", row.client_message_id},
                    {"status", std::string(to_string(row.status))},
                    {"duplicate", sent->duplicate},
                    {"target", args.target},
                    {"target_spec", sent->target_spec},
                    {"mesh", mesh->slug},
                    {"broker_message_id", row.broker_message_id},
                    {"via", "direct"}};
  return print_sent(options, result, args.target);
}

int run_send(const GlobalOptions& options, const SendArgs& args) {
  std::string body;
  for (const auto& word : args.words) body += (body.empty() ? "" : " ") + word;
  auto target = parse_target(args.target);
  if (!target) return report(options, Failure{.code = "invalid_target", .message = target.error().message, .exit_code = exit_usage});
  auto meshes = joined_meshes(options);
  if (!meshes) return report_error(options, meshes.error());
  if (meshes->empty()) return report_error(options, Error(Errc::not_found, "no mesh joined; run `claudemesh join <invite-url>` first"));
  if (!options.mesh.empty()) {
    if (auto mesh = select_mesh(*meshes, options.mesh); !mesh) return report_error(options, mesh.error());
  }
  if (auto self = refuse_self(*meshes, options.mesh, *target)) return report(options, *self);

  auto choice = choose_daemon(options);
  if (choice.failure) return report(options, *choice.failure);
  if (choice.client) return send_via_daemon(options, *choice.client, args, body);
  return send_direct(options, *meshes, args, std::move(body));
}

// ---- msg-status ----

Json row_json(const OutboxRow& r, const std::string& slug) {
  auto optional_ms = [](const std::optional<std::int64_t>& ms) { return ms ? Json(*ms) : Json(nullptr); };
  return {{"id", r.id},
          {"client_message_id", r.client_message_id},
          {"mesh", slug},
          {"target_spec", r.target_spec},
          {"priority", r.priority},
          {"status", std::string(to_string(r.status))},
          {"attempts", r.attempts},
          {"enqueued_at", r.enqueued_at_ms},
          {"next_attempt_at", r.next_attempt_at_ms},
          {"delivered_at", optional_ms(r.delivered_at_ms)},
          {"broker_message_id", r.broker_message_id},
          {"last_error", r.last_error},
          {"aborted_at", optional_ms(r.aborted_at_ms)},
          {"aborted_by", r.aborted_by},
          {"superseded_by", r.superseded_by},
          {"payload_bytes", r.payload_bytes}};
}

void print_status(const Json& item, const Json& delivery, const std::string& delivery_error) {
  auto number = [&item](const char* field) -> std::string {
    const auto it = item.find(field);
    return it != item.end() && it->is_number_integer() ? std::to_string(it->get<std::int64_t>()) : std::string();
  };
  std::cout << "message " << text_of(item, "client_message_id") << "\n"
            << "  status      " << text_of(item, "status") << "\n"
            << "  mesh        " << text_of(item, "mesh") << "\n"
            << "  target      " << text_of(item, "target_spec") << "\n"
            << "  attempts    " << number("attempts") << "\n"
            << "  row         " << text_of(item, "id") << "\n";
  if (const auto at = item.find("enqueued_at"); at != item.end() && at->is_number_integer()) {
    std::cout << "  queued at   " << format_ms(at->get<std::int64_t>()) << "\n";
  }
  if (const auto id = text_of(item, "broker_message_id"); !id.empty()) std::cout << "  broker id   " << id << "\n";
  if (const auto error = text_of(item, "last_error"); !error.empty()) std::cout << "  last error  " << error << "\n";
  if (const auto by = text_of(item, "superseded_by"); !by.empty()) std::cout << "  replaced by " << by << "\n";
  const auto recipients = delivery.is_object() ? delivery.find("recipients") : delivery.end();
  if (delivery.is_object() && recipients != delivery.end() && recipients->is_array()) {
    std::cout << "  delivery\n";
    if (recipients->empty()) std::cout << "    (no recipients)\n";
    for (const auto& r : *recipients) {
      const bool delivered = r.value("delivered", false);
      std::cout << "    " << text_of(r, "pubkey").substr(0, 16) << "  "
                << (delivered ? "delivered " + text_of(r, "delivered_at") : std::string("not yet delivered")) << " ("
                << r.value("attempts", 0) << " attempts)\n";
    }
  } else if (!delivery_error.empty()) {
    std::cout << "  delivery    unknown (" << delivery_error << ")\n";
  }
}

int status_via_daemon(const GlobalOptions& options, DaemonClient& daemon, const std::string& id) {
  auto reply = daemon.call("GET", "/v1/outbox/" + url_encode(id));
  if (!reply) return report_error(options, reply.error());
  if (!reply->ok()) return report(options, failure_from_reply(*reply, "msg-status " + id));
  Failure failure;
  auto doc = parse_reply(*reply, failure);
  if (!doc) return report(options, failure);
  const Json item = doc->value("item", Json::object());
  const Json delivery = doc->value("delivery", Json(nullptr));
  std::string delivery_error;
  if (const auto it = doc->find("delivery_error"); it != doc->end() && it->is_object()) delivery_error = text_of(*it, "message");
  if (options.json) {
    Json out{{"via", "daemon"}, {"item", item}, {"delivery", delivery}};
    if (!delivery_error.empty()) out["delivery_error"] = delivery_error;
    return print_ok(out);
  }
  print_status(item, delivery, delivery_error);
  return exit_ok;
}

int status_direct(const GlobalOptions& options, const std::string& id) {
  auto meshes = joined_meshes(options);
  if (!meshes) return report_error(options, meshes.error());
  std::vector<JoinedMesh> scope;
  if (!options.mesh.empty()) {
    auto mesh = select_mesh(*meshes, options.mesh);
    if (!mesh) return report_error(options, mesh.error());
    scope.push_back(*mesh);
  } else {
    scope = *meshes;
  }
  auto found = cold_message_status(options.home_dir(), scope, id);
  if (!found) return report_error(options, found.error());
  if (!*found) {
    return report(options, Failure{.code = "not_found",
                                   .message = "no message " + id + " in the direct outboxes (" +
                                              (options.home_dir() / "cold").string() +
                                              "); messages sent through the daemon are known to it only",
                                   .exit_code = exit_not_found});
  }
  const auto& status = **found;
  const Json item = row_json(status.row, status.mesh_slug);
  Json delivery = nullptr;
  if (status.delivery) {
    Json recipients = Json::array();
    for (const auto& r : status.delivery->recipients) {
      recipients.push_back({{"pubkey", r.pubkey}, {"delivered", r.delivered}, {"delivered_at", r.delivered_at}, {"attempts", r.attempts}});
    }
    delivery = {{"recipients", recipients}};
  }
  if (options.json) {
    Json out{{"via", "direct"}, {"item", item}, {"delivery", delivery}};
    if (!status.delivery_error.empty()) out["delivery_error"] = status.delivery_error;
    return print_ok(out);
  }
  print_status(item, delivery, status.delivery_error);
  return exit_ok;
}

int run_status(const GlobalOptions& options, const std::string& id) {
  auto choice = choose_daemon(options);
  if (choice.failure) return report(options, *choice.failure);
  if (choice.client) return status_via_daemon(options, *choice.client, id);
  return status_direct(options, id);
}

}  // namespace

void register_message_commands(CLI::App& app, GlobalOptions& options, int& exit_code) {
  auto args = std::make_shared<SendArgs>();
  auto* send = app.add_subcommand("send", "Send a message: to a name, a key or key prefix (4-63 hex), @group or *");
  send->add_option("target", args->target, "name | hex key prefix | 64-hex key | @group | *")->required();
  send->add_option("message", args->words, "The message (the remaining words)")->required();
  add_mesh_option(*send, options);
  send->add_option("--priority", args->priority, "now, next or low")
      ->check(CLI::IsMember({"now", "next", "low"}))
      ->capture_default_str();
  send->add_option("--reply-to", args->reply_to, "The message id this one answers");
  send->add_option("--client-id", args->client_id, "Idempotency key: the same id and content is sent once");
  send->callback([&options, &exit_code, args] { exit_code = run_send(options, *args); });

  auto id = std::make_shared<std::string>();
  auto add_status = [&](CLI::App& verb) {
    verb.add_option("id", *id, "The client message id (or outbox row id) that send printed")->required();
    add_mesh_option(verb, options);
    verb.callback([&options, &exit_code, id] { exit_code = run_status(options, *id); });
  };
  add_status(*app.add_subcommand("msg-status", "Where a sent message is: queued, sent, delivered to whom"));
  auto* message = app.add_subcommand("message", "Messages you sent");
  message->require_subcommand(1);
  add_status(*message->add_subcommand("status", "Same as `msg-status`"));
}

}  // namespace claudemesh::cli
