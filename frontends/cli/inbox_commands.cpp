// SPDX-License-Identifier: MIT
// `claudemesh inbox` and its subcommands. The inbox lives in the daemon (inbox.db), so every one of them goes
// through the daemon — never a fresh broker connection, which would see nothing (reference bug 13a).
#include "cli.hpp"
#include "daemon_access.hpp"

#include <ctime>
#include <iostream>
#include <memory>

namespace claudemesh::cli {
namespace {

using Json = nlohmann::json;

std::string format_ms(const Json& value) {
  if (!value.is_number_integer()) return "-";
  const std::int64_t ms = value.get<std::int64_t>();
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm local{};
  ::localtime_r(&seconds, &local);
  char buffer[32];
  if (std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S", &local) == 0) return std::to_string(ms);
  return buffer;
}

void print_message_line(const Json& m) {
  const bool unread = !m.contains("seen_at") || m["seen_at"].is_null();
  std::string from = text_of(m, "sender_name");
  if (from.empty()) from = text_of(m, "sender_pubkey").substr(0, 8);
  std::cout << (unread ? "* " : "  ") << format_ms(m.value("received_at", Json(nullptr))) << "  " << text_of(m, "mesh") << "  "
            << from << " (" << text_of(m, "sender_pubkey").substr(0, 8) << ")";
  if (const auto target = text_of(m, "target_spec"); !target.empty() && (target[0] == '@' || target[0] == '*' || target[0] == '#')) {
    std::cout << " → " << target;
  }
  std::cout << "  [" << text_of(m, "id") << "]\n    " << text_of(m, "body") << "\n";
}

void print_message_full(const Json& m) {
  std::cout << "id           " << text_of(m, "id") << "\n"
            << "mesh         " << text_of(m, "mesh") << "\n"
            << "from         " << text_of(m, "sender_name") << " (" << text_of(m, "sender_pubkey") << ")\n";
  if (const auto member = text_of(m, "sender_member_pubkey"); !member.empty() && member != text_of(m, "sender_pubkey")) {
    std::cout << "from member  " << member << "\n";
  }
  std::cout << "to           " << text_of(m, "target_spec") << "\n"
            << "priority     " << text_of(m, "priority") << "\n"
            << "sent at      " << format_ms(m.value("created_at", Json(nullptr))) << "\n"
            << "received at  " << format_ms(m.value("received_at", Json(nullptr))) << "\n"
            << "seen at      " << format_ms(m.value("seen_at", Json(nullptr))) << "\n"
            << "message id   " << text_of(m, "client_message_id") << "\n";
  if (const auto reply = text_of(m, "reply_to_id"); !reply.empty()) std::cout << "reply to     " << reply << "\n";
  std::cout << "\n" << text_of(m, "body") << "\n";
}

// Call the daemon for an inbox verb. @returns the parsed answer, or the exit status already reported.
std::variant<Json, int> inbox_call(const GlobalOptions& options, std::string_view method, const std::string& target,
                                   const std::string& body, std::string_view what) {
  auto daemon = require_daemon(options, true);
  if (auto* failure = std::get_if<Failure>(&daemon)) return report(options, *failure);
  auto& client = std::get<DaemonClient>(daemon);
  auto reply = client.call(method, target, body);
  if (!reply) return report_error(options, reply.error());
  if (!reply->ok()) return report(options, failure_from_reply(*reply, what));
  Failure failure;
  auto doc = parse_reply(*reply, failure);
  if (!doc) return report(options, failure);
  return std::move(*doc);
}

struct ListArgs {
  int limit = 50;
  bool unread = false;
  bool mark_seen = false;
};

int print_list(const GlobalOptions& options, const Json& doc) {
  const Json messages = doc.value("messages", Json::array());
  if (options.json) {
    Json out{{"messages", messages}};
    if (doc.contains("next")) out["next"] = doc["next"];
    return print_ok(out);
  }
  if (messages.empty()) std::cout << "(empty)\n";
  for (const auto& m : messages) print_message_line(m);
  return exit_ok;
}

int run_list(const GlobalOptions& options, const ListArgs& args) {
  std::string target = "/v1/inbox?limit=" + std::to_string(args.limit);
  if (!options.mesh.empty()) target += "&mesh=" + url_encode(options.mesh);
  if (args.unread) target += "&unread_only=true";
  if (args.mark_seen) target += "&mark_seen=true";
  auto answer = inbox_call(options, "GET", target, {}, "inbox");
  if (auto* code = std::get_if<int>(&answer)) return *code;
  return print_list(options, std::get<Json>(answer));
}

int run_show(const GlobalOptions& options, const std::string& id) {
  auto answer = inbox_call(options, "GET", "/v1/inbox/" + url_encode(id), {}, "inbox show " + id);
  if (auto* code = std::get_if<int>(&answer)) return *code;
  const Json message = std::get<Json>(answer).value("message", Json::object());
  if (options.json) return print_ok({{"message", message}});
  print_message_full(message);
  return exit_ok;
}

int run_seen(const GlobalOptions& options, const std::vector<std::string>& ids) {
  const Json body{{"ids", ids}};
  auto answer = inbox_call(options, "POST", "/v1/inbox/seen", body.dump(), "inbox seen");
  if (auto* code = std::get_if<int>(&answer)) return *code;
  const auto marked = std::get<Json>(answer).value("marked", 0);
  if (options.json) return print_ok({{"marked", marked}});
  std::cout << "marked " << marked << (marked == 1 ? " message" : " messages") << " seen\n";
  return exit_ok;
}

int run_delete(const GlobalOptions& options, const std::string& id) {
  auto answer = inbox_call(options, "DELETE", "/v1/inbox/" + url_encode(id), {}, "inbox delete " + id);
  if (auto* code = std::get_if<int>(&answer)) return *code;
  if (options.json) return print_ok({{"removed", true}, {"id", id}});
  std::cout << "deleted " << id << "\n";
  return exit_ok;
}

struct FlushArgs {
  bool all = false;
  std::int64_t before = -1;  // -1: whenever
};

int run_flush(const GlobalOptions& options, const FlushArgs& args) {
  if (options.mesh.empty() && !args.all) {
    return report(options, Failure{.code = "missing_field",
                                   .message = "inbox flush deletes messages: name a mesh (--mesh <slug>) or pass --all",
                                   .exit_code = exit_usage});
  }
  Json body = Json::object();
  if (!options.mesh.empty()) {
    body["mesh"] = options.mesh;
  } else {
    body["all"] = true;
  }
  if (args.before >= 0) body["before"] = args.before;
  auto answer = inbox_call(options, "POST", "/v1/inbox/flush", body.dump(), "inbox flush");
  if (auto* code = std::get_if<int>(&answer)) return *code;
  const auto removed = std::get<Json>(answer).value("removed", 0);
  if (options.json) return print_ok({{"removed", removed}});
  std::cout << "deleted " << removed << (removed == 1 ? " message" : " messages") << "\n";
  return exit_ok;
}

struct SearchArgs {
  std::vector<std::string> words;
  int limit = 50;
};

int run_search(const GlobalOptions& options, const SearchArgs& args) {
  std::string text;
  for (const auto& word : args.words) text += (text.empty() ? "" : " ") + word;
  std::string target = "/v1/inbox/search?q=" + url_encode(text) + "&limit=" + std::to_string(args.limit);
  if (!options.mesh.empty()) target += "&mesh=" + url_encode(options.mesh);
  auto answer = inbox_call(options, "GET", target, {}, "inbox search");
  if (auto* code = std::get_if<int>(&answer)) return *code;
  return print_list(options, std::get<Json>(answer));
}

}  // namespace

void register_inbox_commands(CLI::App& app, GlobalOptions& options, int& exit_code) {
  auto* inbox = app.add_subcommand("inbox", "Messages you received (kept by the daemon)");
  auto list_args = std::make_shared<ListArgs>();
  add_mesh_option(*inbox, options);
  inbox->add_option("--limit", list_args->limit, "At most this many, newest first")->check(CLI::Range(1, 1000))->capture_default_str();
  inbox->add_flag("--unread", list_args->unread, "Only messages not yet seen");
  inbox->add_flag("--mark-seen", list_args->mark_seen, "Mark the listed messages seen");
  inbox->callback([inbox, &options, &exit_code, list_args] {
    if (inbox->get_subcommands().empty()) exit_code = run_list(options, *list_args);
  });

  auto show_id = std::make_shared<std::string>();
  auto* show = inbox->add_subcommand("show", "Show one message in full");
  show->add_option("id", *show_id, "Message id (row, client or broker id)")->required();
  show->callback([&options, &exit_code, show_id] { exit_code = run_show(options, *show_id); });

  auto seen_ids = std::make_shared<std::vector<std::string>>();
  auto* seen = inbox->add_subcommand("seen", "Mark messages seen");
  seen->add_option("ids", *seen_ids, "Message ids")->required();
  seen->callback([&options, &exit_code, seen_ids] { exit_code = run_seen(options, *seen_ids); });

  auto delete_id = std::make_shared<std::string>();
  auto* remove = inbox->add_subcommand("delete", "Delete one message");
  remove->alias("rm");
  remove->add_option("id", *delete_id, "Message id")->required();
  remove->callback([&options, &exit_code, delete_id] { exit_code = run_delete(options, *delete_id); });

  auto flush_args = std::make_shared<FlushArgs>();
  auto* flush = inbox->add_subcommand("flush", "Delete the messages of a mesh (--mesh) or of every mesh (--all)");
  add_mesh_option(*flush, options);
  flush->add_flag("--all", flush_args->all, "Every mesh");
  flush->add_option("--before", flush_args->before, "Only messages received before this time (unix ms)")->check(CLI::NonNegativeNumber);
  flush->callback([&options, &exit_code, flush_args] { exit_code = run_flush(options, *flush_args); });

  auto search_args = std::make_shared<SearchArgs>();
  auto* search = inbox->add_subcommand("search", "Full-text search of your messages");
  search->add_option("text", search_args->words, "Words to find")->required();
  add_mesh_option(*search, options);
  search->add_option("--limit", search_args->limit, "At most this many")->check(CLI::Range(1, 1000))->capture_default_str();
  search->callback([&options, &exit_code, search_args] { exit_code = run_search(options, *search_args); });
}

}  // namespace claudemesh::cli
