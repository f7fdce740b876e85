// SPDX-License-Identifier: MIT
// The outbox: the idempotency table row by row, validation, the send state machine (claim, mark_sent,
// mark_failed, backoff, leases, crash recovery, max age), requeue, listings, and what the file on disk does.
// Time is an injected clock; nothing sleeps.
#include <claudemesh/outbox.hpp>

#include "store/outbox_rules.hpp"
#include "core/backoff.hpp"

#include "../core/test_support.hpp"

#include <claudemesh/ids.hpp>

#include <SQLiteCpp/Database.h>
#include <doctest/doctest.h>

#include "support/files.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>
#include <sys/stat.h>

using namespace claudemesh;
using claudemesh::testing::mode_of;
using claudemesh::testing::read_all;
using claudemesh::testing::write_all;
using namespace std::chrono_literals;
using claudemesh::test::TempDir;
using Outcome = OutboxAccept::Outcome;

namespace {

constexpr std::int64_t t0 = 1'750'000'000'000;
const std::string fingerprint_a = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string fingerprint_b = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

// A scratch directory and a clock the test moves by hand.
struct Harness {
  TempDir dir;
  std::shared_ptr<std::int64_t> now_ms = std::make_shared<std::int64_t>(t0);

  [[nodiscard]] std::filesystem::path path() const { return dir.path() / "outbox.db"; }
  [[nodiscard]] std::int64_t now() const { return *now_ms; }
  void advance(std::chrono::milliseconds by) const { *now_ms += by.count(); }

  [[nodiscard]] OutboxConfig config() const {
    OutboxConfig config;
    config.fsync = false;  // tests need no power-loss durability; one test checks the default
    config.clock = [clock = now_ms] { return *clock; };
    return config;
  }

  [[nodiscard]] Outbox open() const { return open(config()); }
  [[nodiscard]] Outbox open(OutboxConfig config) const {
    auto opened = Outbox::open(path(), std::move(config));
    if (!opened) FAIL("cannot open " << path().string() << ": " << opened.error().describe());
    return std::move(*opened);
  }
};

// The session every make_send() row leaves from (so its rows are claimed on that session's lane).
const std::string sender_lane(64, 'c');

// A send with every routing column set, so a copy that drops one shows.
OutboxSend make_send(std::string client_message_id, std::string fingerprint = fingerprint_a,
                     std::string mesh = "mesh-a") {
  return {.client_message_id = std::move(client_message_id),
          .request_fingerprint = std::move(fingerprint),
          .mesh = std::move(mesh),
          .target_spec = std::string(64, 'b'),
          .priority = "now",
          .reply_to_id = "01J0000000000000000000REPLY",
          .sender_session_pubkey = sender_lane,
          .sealed = R"({"nonce":"bm9uY2U=","ciphertext":"Y2lwaGVydGV4dA=="})",
          .payload_bytes = 42};
}

template <class T>
T value_of(Result<T> result) {
  if (!result) FAIL("unexpected error: " << result.error().describe());
  return std::move(*result);
}

template <class T>
Error error_of(const Result<T>& result) {
  REQUIRE_FALSE(result.has_value());
  return result.error();
}

OutboxAccept accept_ok(Outbox& outbox, const OutboxSend& send) { return value_of(outbox.accept(send)); }

OutboxRow find_ok(Outbox& outbox, std::string_view key) {
  auto found = value_of(outbox.find(key));
  if (!found) FAIL("no outbox row " << std::string(key));
  return std::move(*found);
}

std::vector<OutboxRow> claim_ok(Outbox& outbox, std::string_view mesh, std::size_t limit = 32) {
  return value_of(outbox.claim(mesh, limit, sender_lane));
}

std::string optional_text(const std::optional<std::int64_t>& value) {
  return value ? std::to_string(*value) : std::string("-");
}

// Every field of a row, for "nothing changed" comparisons that print what did.
std::string dump(const OutboxRow& row) {
  return row.id + "|" + row.client_message_id + "|" + row.request_fingerprint + "|" + row.mesh + "|" +
         row.target_spec + "|" + row.priority + "|" + row.reply_to_id + "|" + row.sender_session_pubkey + "|" +
         row.sealed + "|" + std::to_string(row.payload_bytes) + "|" + std::string(to_string(row.status)) + "|" +
         std::to_string(row.attempts) + "|" + std::to_string(row.enqueued_at_ms) + "|" +
         std::to_string(row.next_attempt_at_ms) + "|" + optional_text(row.delivered_at_ms) + "|" +
         row.broker_message_id + "|" + row.last_error + "|" + optional_text(row.aborted_at_ms) + "|" +
         row.aborted_by + "|" + row.superseded_by;
}

std::string dump_all(Outbox& outbox) {
  std::string out;
  for (const auto& row : value_of(outbox.list(std::nullopt, 500))) out += dump(row) + "\n";
  return out;
}

std::vector<std::string> client_ids(const std::vector<OutboxRow>& rows) {
  std::vector<std::string> ids;
  for (const auto& row : rows) ids.push_back(row.client_message_id);
  return ids;
}

// Puts a row with client message id "cm-1" and fingerprint_a into `status`.
OutboxRow row_in(Outbox& outbox, OutboxStatus status) {
  const auto accepted = accept_ok(outbox, make_send("cm-1"));
  REQUIRE(accepted.inserted);
  if (status == OutboxStatus::aborted) REQUIRE(outbox.requeue("cm-1", "cm-1-again"));
  if (status == OutboxStatus::inflight || status == OutboxStatus::done || status == OutboxStatus::dead) {
    REQUIRE(claim_ok(outbox, "mesh-a").size() == 1);
  }
  if (status == OutboxStatus::done) REQUIRE(outbox.mark_sent(accepted.row.id, "broker-msg-1"));
  if (status == OutboxStatus::dead) {
    REQUIRE(outbox.mark_failed(accepted.row.id, Error(Errc::forbidden, "not allowed"), true));
  }
  auto row = find_ok(outbox, "cm-1");
  REQUIRE(row.status == status);
  return row;
}

// Re-sends "cm-1" over a row in `existing` and checks the table's answer and that nothing was written.
void check_reuse(OutboxStatus existing, bool same_fingerprint, Outcome outcome, int http_status,
                 std::string_view conflict) {
  const Harness h;
  auto outbox = h.open();
  const OutboxRow before = row_in(outbox, existing);
  const std::string table_before = dump_all(outbox);
  h.advance(1s);
  const auto decision = accept_ok(outbox, make_send("cm-1", same_fingerprint ? fingerprint_a : fingerprint_b));
  CHECK(decision.outcome == outcome);
  CHECK(decision.http_status == http_status);
  CHECK(decision.conflict == conflict);
  CHECK_FALSE(decision.inserted);
  CHECK(decision.row.fingerprint_prefix() == "0123456789abcdef");
  CHECK(dump(decision.row) == dump(before));
  CHECK(dump_all(outbox) == table_before);
}

}  // namespace

TEST_SUITE("outbox") {
  // ---- the idempotency table (reference §4.5.1), one case per row ----

  TEST_CASE("outbox idempotency: no row → 202 queued, a pending row is inserted") {
    const Harness h;
    auto outbox = h.open();
    const auto decision = accept_ok(outbox, make_send("cm-1"));
    CHECK(decision.outcome == Outcome::queued);
    CHECK(decision.http_status == 202);
    CHECK(decision.inserted);
    CHECK(decision.conflict.empty());
    CHECK(decision.row.fingerprint_prefix() == "0123456789abcdef");
    CHECK(decision.row.status == OutboxStatus::pending);
    CHECK(decision.row.attempts == 0);
    CHECK(decision.row.enqueued_at_ms == t0);
    CHECK(decision.row.next_attempt_at_ms == t0);
    CHECK(dump(find_ok(outbox, "cm-1")) == dump(decision.row));
  }

  TEST_CASE("outbox idempotency: pending, same fingerprint → 202 queued, nothing written") {
    check_reuse(OutboxStatus::pending, true, Outcome::queued, 202, "");
  }
  TEST_CASE("outbox idempotency: pending, different fingerprint → 409 outbox_pending_fingerprint_mismatch") {
    check_reuse(OutboxStatus::pending, false, Outcome::conflict, 409, "outbox_pending_fingerprint_mismatch");
  }
  TEST_CASE("outbox idempotency: inflight, same fingerprint → 202 inflight, nothing written") {
    check_reuse(OutboxStatus::inflight, true, Outcome::inflight, 202, "");
  }
  TEST_CASE("outbox idempotency: inflight, different fingerprint → 409 outbox_inflight_fingerprint_mismatch") {
    check_reuse(OutboxStatus::inflight, false, Outcome::conflict, 409, "outbox_inflight_fingerprint_mismatch");
  }
  TEST_CASE("outbox idempotency: done, same fingerprint → 200 duplicate with the broker id, nothing written") {
    check_reuse(OutboxStatus::done, true, Outcome::duplicate, 200, "");
    const Harness h;
    auto outbox = h.open();
    row_in(outbox, OutboxStatus::done);
    CHECK(accept_ok(outbox, make_send("cm-1")).row.broker_message_id == "broker-msg-1");
  }
  TEST_CASE("outbox idempotency: done, different fingerprint → 409 outbox_done_fingerprint_mismatch") {
    check_reuse(OutboxStatus::done, false, Outcome::conflict, 409, "outbox_done_fingerprint_mismatch");
  }
  TEST_CASE("outbox idempotency: dead, same fingerprint → 409 outbox_dead_fingerprint_match") {
    check_reuse(OutboxStatus::dead, true, Outcome::conflict, 409, "outbox_dead_fingerprint_match");
  }
  TEST_CASE("outbox idempotency: dead, different fingerprint → 409 outbox_dead_fingerprint_mismatch") {
    check_reuse(OutboxStatus::dead, false, Outcome::conflict, 409, "outbox_dead_fingerprint_mismatch");
  }
  TEST_CASE("outbox idempotency: aborted, same fingerprint → 409 outbox_aborted_fingerprint_match") {
    check_reuse(OutboxStatus::aborted, true, Outcome::conflict, 409, "outbox_aborted_fingerprint_match");
  }
  TEST_CASE("outbox idempotency: aborted, different fingerprint → 409 outbox_aborted_fingerprint_mismatch") {
    check_reuse(OutboxStatus::aborted, false, Outcome::conflict, 409, "outbox_aborted_fingerprint_mismatch");
  }

  TEST_CASE("outbox idempotency: the decision rule alone, for every status and both fingerprints") {
    const std::vector<std::tuple<OutboxStatus, bool, Outcome, int, std::string>> table = {
        {OutboxStatus::pending, true, Outcome::queued, 202, ""},
        {OutboxStatus::pending, false, Outcome::conflict, 409, "outbox_pending_fingerprint_mismatch"},
        {OutboxStatus::inflight, true, Outcome::inflight, 202, ""},
        {OutboxStatus::inflight, false, Outcome::conflict, 409, "outbox_inflight_fingerprint_mismatch"},
        {OutboxStatus::done, true, Outcome::duplicate, 200, ""},
        {OutboxStatus::done, false, Outcome::conflict, 409, "outbox_done_fingerprint_mismatch"},
        {OutboxStatus::dead, true, Outcome::conflict, 409, "outbox_dead_fingerprint_match"},
        {OutboxStatus::dead, false, Outcome::conflict, 409, "outbox_dead_fingerprint_mismatch"},
        {OutboxStatus::aborted, true, Outcome::conflict, 409, "outbox_aborted_fingerprint_match"},
        {OutboxStatus::aborted, false, Outcome::conflict, 409, "outbox_aborted_fingerprint_mismatch"},
    };
    for (const auto& [status, same, outcome, http_status, conflict] : table) {
      CAPTURE(to_string(status));
      CAPTURE(same);
      OutboxRow existing;
      existing.id = "row-1";
      existing.status = status;
      const auto decision = store::decide_existing(existing, same);
      CHECK(decision.outcome == outcome);
      CHECK(decision.http_status == http_status);
      CHECK(decision.conflict == conflict);
      CHECK_FALSE(decision.inserted);
      CHECK(decision.row.id == "row-1");
    }
    CHECK(store::same_fingerprint(fingerprint_a, fingerprint_a));
    CHECK_FALSE(store::same_fingerprint(fingerprint_a, fingerprint_b));
    CHECK_FALSE(store::same_fingerprint(fingerprint_a, fingerprint_a.substr(0, 63)));
  }

  // ---- validation ----

  TEST_CASE("outbox accept: hostile inputs are invalid_value and leave the client message id unused") {
    const Harness h;
    auto outbox = h.open();
    const std::vector<std::pair<std::string, std::function<void(OutboxSend&)>>> hostile = {
        {"63-char fingerprint", [](OutboxSend& s) { s.request_fingerprint.pop_back(); }},
        {"65-char fingerprint", [](OutboxSend& s) { s.request_fingerprint += "a"; }},
        {"uppercase fingerprint", [](OutboxSend& s) { s.request_fingerprint[0] = 'A'; }},
        {"non-hex fingerprint", [](OutboxSend& s) { s.request_fingerprint[5] = 'g'; }},
        {"NUL in fingerprint", [](OutboxSend& s) { s.request_fingerprint[7] = '\0'; }},
        {"empty fingerprint", [](OutboxSend& s) { s.request_fingerprint.clear(); }},
        {"NUL in client id", [](OutboxSend& s) { s.client_message_id = std::string("cm\0x", 4); }},
        {"129-char client id", [](OutboxSend& s) { s.client_message_id = std::string(129, 'x'); }},
        {"space in client id", [](OutboxSend& s) { s.client_message_id = "cm x"; }},
        {"newline in client id", [](OutboxSend& s) { s.client_message_id = "cm-x\n"; }},
        {"DEL in client id", [](OutboxSend& s) { s.client_message_id = "cm-x\x7f"; }},
        {"non-ASCII client id", [](OutboxSend& s) { s.client_message_id = "cm-\xc3\xa9"; }},
        {"sealed []", [](OutboxSend& s) { s.sealed = "[]"; }},
        {"sealed not json", [](OutboxSend& s) { s.sealed = "not json"; }},
        {"sealed empty", [](OutboxSend& s) { s.sealed.clear(); }},
        {"sealed truncated", [](OutboxSend& s) { s.sealed = R"({"nonce":"bm9u)"; }},
        {"sealed with trailing text", [](OutboxSend& s) { s.sealed = R"({"a":1} {"b":2})"; }},
        {"sealed a string", [](OutboxSend& s) { s.sealed = R"("{}")"; }},
        {"sealed null", [](OutboxSend& s) { s.sealed = "null"; }},
        {"sealed invalid UTF-8", [](OutboxSend& s) { s.sealed = "{\"a\":\"\xff\"}"; }},
        {"priority urgent", [](OutboxSend& s) { s.priority = "urgent"; }},
        {"priority NOW", [](OutboxSend& s) { s.priority = "NOW"; }},
        {"priority empty", [](OutboxSend& s) { s.priority.clear(); }},
        {"empty mesh", [](OutboxSend& s) { s.mesh.clear(); }},
        {"empty target", [](OutboxSend& s) { s.target_spec.clear(); }},
        {"negative payload_bytes", [](OutboxSend& s) { s.payload_bytes = -1; }},
    };
    for (const auto& [label, spoil] : hostile) {
      CAPTURE(label);
      OutboxSend send = make_send("cm-x");
      spoil(send);
      const auto refused = outbox.accept(send);
      CHECK(error_of(refused) == Errc::invalid_value);
    }
    CHECK(value_of(outbox.list(std::nullopt, 500)).empty());
    const auto later = accept_ok(outbox, make_send("cm-x"));
    CHECK(later.inserted);
    CHECK(later.http_status == 202);
  }

  TEST_CASE("outbox accept: edge values that are valid are accepted") {
    const Harness h;
    auto outbox = h.open();
    CHECK(accept_ok(outbox, make_send(std::string(128, '~'))).inserted);
    CHECK(accept_ok(outbox, make_send("!")).inserted);
    OutboxSend send = make_send("cm-edge");
    send.sealed = " \n{\"bodies\":[{\"to\":\"x\"}]}\t";
    send.priority = "low";
    send.reply_to_id.clear();
    send.sender_session_pubkey.clear();
    send.payload_bytes = 0;
    const auto accepted = accept_ok(outbox, send);
    CHECK(accepted.inserted);
    const auto row = find_ok(outbox, "cm-edge");
    CHECK(row.sealed == send.sealed);
    CHECK(row.reply_to_id.empty());
    CHECK(row.sender_session_pubkey.empty());
  }

  TEST_CASE("outbox accept: without a client message id the outbox mints a ULID") {
    const Harness h;
    auto outbox = h.open();
    const auto first = accept_ok(outbox, make_send(""));
    const auto second = accept_ok(outbox, make_send(""));
    CHECK(first.inserted);
    CHECK(second.inserted);
    CHECK(is_valid_id(first.row.client_message_id));
    CHECK(is_valid_id(first.row.id));
    CHECK(id_timestamp_ms(first.row.client_message_id) == t0);
    CHECK(first.row.client_message_id != second.row.client_message_id);
    CHECK(first.row.client_message_id != first.row.id);
    CHECK(find_ok(outbox, first.row.client_message_id).id == first.row.id);
  }

  TEST_CASE("outbox accept: every column is stored as given and found by row id or client message id") {
    const Harness h;
    auto outbox = h.open();
    const OutboxSend send = make_send("cm-1");
    const auto row = accept_ok(outbox, send).row;
    const auto by_id = find_ok(outbox, row.id);
    CHECK(dump(by_id) == dump(find_ok(outbox, "cm-1")));
    CHECK(by_id.client_message_id == "cm-1");
    CHECK(by_id.request_fingerprint == send.request_fingerprint);
    CHECK(by_id.mesh == send.mesh);
    CHECK(by_id.target_spec == send.target_spec);
    CHECK(by_id.priority == send.priority);
    CHECK(by_id.reply_to_id == send.reply_to_id);
    CHECK(by_id.sender_session_pubkey == send.sender_session_pubkey);
    CHECK(by_id.sealed == send.sealed);
    CHECK(by_id.payload_bytes == send.payload_bytes);
    CHECK_FALSE(by_id.delivered_at_ms);
    CHECK_FALSE(by_id.aborted_at_ms);
    CHECK(by_id.last_error.empty());
    CHECK_FALSE(value_of(outbox.find("no-such-row")));
  }

  // ---- the send state machine ----

  TEST_CASE("outbox: claim leases a row, mark_sent makes it done, and done is final") {
    const Harness h;
    auto outbox = h.open();
    const auto id = accept_ok(outbox, make_send("cm-1")).row.id;
    h.advance(10ms);
    const auto claimed = claim_ok(outbox, "mesh-a");
    REQUIRE(claimed.size() == 1);
    CHECK(claimed[0].id == id);
    CHECK(claimed[0].status == OutboxStatus::inflight);
    CHECK(claimed[0].attempts == 1);
    CHECK(claimed[0].next_attempt_at_ms == h.now() + 30'000);
    CHECK(dump(find_ok(outbox, id)) == dump(claimed[0]));
    CHECK(claim_ok(outbox, "mesh-a").empty());  // leased

    // A failure first, so mark_sent has a last_error to clear.
    REQUIRE(value_of(outbox.mark_failed(id, Error(Errc::timed_out, "ack timeout"), false)) == OutboxStatus::pending);
    CHECK(find_ok(outbox, id).last_error == "timed_out: ack timeout");
    h.advance(1s);
    REQUIRE(claim_ok(outbox, "mesh-a").size() == 1);
    h.advance(5ms);
    REQUIRE(outbox.mark_sent(id, "broker-msg-9"));
    const auto done = find_ok(outbox, id);
    CHECK(done.status == OutboxStatus::done);
    CHECK(done.delivered_at_ms == h.now());
    CHECK(done.broker_message_id == "broker-msg-9");
    CHECK(done.last_error.empty());
    CHECK(done.attempts == 2);

    CHECK(error_of(outbox.mark_sent(id, "broker-msg-10")) == Errc::not_found);
    CHECK(error_of(outbox.mark_failed(id, Error(Errc::timed_out, "late"), false)) == Errc::not_found);
    h.advance(1h);
    CHECK(claim_ok(outbox, "mesh-a").empty());
    CHECK(dump(find_ok(outbox, id)) == dump(done));
  }

  TEST_CASE("outbox: mark_sent and mark_failed need an inflight row") {
    const Harness h;
    auto outbox = h.open();
    const auto id = accept_ok(outbox, make_send("cm-1")).row.id;
    CHECK(error_of(outbox.mark_sent(id, "b")) == Errc::not_found);  // pending
    CHECK(error_of(outbox.mark_failed(id, Error(Errc::timed_out, "x"), false)) == Errc::not_found);
    CHECK(error_of(outbox.mark_sent("no-such-row", "b")) == Errc::not_found);
    CHECK(error_of(outbox.mark_failed("no-such-row", Error(Errc::timed_out, "x"), true)) == Errc::not_found);
    CHECK(error_of(outbox.mark_sent("cm-1", "b")) == Errc::not_found);  // a client id is not a row id here
    CHECK(find_ok(outbox, id).status == OutboxStatus::pending);
    CHECK(claim_ok(outbox, "mesh-a", 0).empty());  // a zero limit claims nothing
    CHECK(find_ok(outbox, id).status == OutboxStatus::pending);
  }

  TEST_CASE("outbox: a permanent failure makes the row dead at once") {
    const Harness h;
    auto outbox = h.open();
    const auto id = accept_ok(outbox, make_send("cm-1")).row.id;
    REQUIRE(claim_ok(outbox, "mesh-a").size() == 1);
    CHECK(value_of(outbox.mark_failed(id, Error(Errc::forbidden, "not a member"), true)) == OutboxStatus::dead);
    const auto dead = find_ok(outbox, id);
    CHECK(dead.status == OutboxStatus::dead);
    CHECK(dead.last_error == "forbidden: not a member");
    CHECK(dead.attempts == 1);
    h.advance(24h);
    CHECK(claim_ok(outbox, "mesh-a").empty());
    CHECK_FALSE(value_of(outbox.next_due_ms("mesh-a", sender_lane)));
  }

  TEST_CASE("outbox: retry delays double from 0.5 s and stop at 30 s") {
    const Harness h;
    OutboxConfig config = h.config();
    config.backoff_jitter = 0;
    auto outbox = h.open(config);
    const auto id = accept_ok(outbox, make_send("cm-1")).row.id;
    const std::vector<std::int64_t> expected = {500, 1'000, 2'000, 4'000, 8'000, 16'000, 30'000, 30'000, 30'000};
    for (std::size_t attempt = 1; attempt <= expected.size(); ++attempt) {
      CAPTURE(attempt);
      const auto claimed = claim_ok(outbox, "mesh-a");
      REQUIRE(claimed.size() == 1);
      CHECK(claimed[0].attempts == static_cast<int>(attempt));
      REQUIRE(value_of(outbox.mark_failed(id, Error(Errc::timed_out, "ack timeout"), false)) == OutboxStatus::pending);
      const auto row = find_ok(outbox, id);
      CHECK(row.next_attempt_at_ms - h.now() == expected[attempt - 1]);
      CHECK(value_of(outbox.next_due_ms("mesh-a", sender_lane)) == row.next_attempt_at_ms);
      h.advance(std::chrono::milliseconds(expected[attempt - 1] - 1));
      CHECK(claim_ok(outbox, "mesh-a").empty());  // not due a millisecond early
      h.advance(1ms);
    }
  }

  TEST_CASE("outbox: each retry delay is its nominal value scaled by a random factor in [0.75, 1.25]") {
    const Harness h;
    auto outbox = h.open();  // default jitter 0.25, system CSPRNG
    const auto id = accept_ok(outbox, make_send("cm-1")).row.id;
    for (int attempt = 1; attempt <= 12; ++attempt) {
      CAPTURE(attempt);
      REQUIRE(claim_ok(outbox, "mesh-a").size() == 1);
      REQUIRE(outbox.mark_failed(id, Error(Errc::timed_out, "ack timeout"), false));
      const auto delay = static_cast<double>(find_ok(outbox, id).next_attempt_at_ms - h.now());
      const double nominal = std::min(30'000.0, 500.0 * static_cast<double>(1 << (attempt - 1)));
      CHECK(delay >= nominal * 0.75 - 1);
      CHECK(delay <= nominal * 1.25 + 1);
      CHECK(delay <= 37'500);
      h.advance(40s);
    }
  }

  TEST_CASE("outbox: the jitter comes from the injected random source") {
    for (const std::uint8_t byte : {std::uint8_t{0x00}, std::uint8_t{0xff}}) {
      CAPTURE(int{byte});
      const Harness h;
      OutboxConfig config = h.config();
      config.rng = test::fixed_random({byte});
      auto outbox = h.open(config);
      const auto id = accept_ok(outbox, make_send("cm-1")).row.id;
      REQUIRE(claim_ok(outbox, "mesh-a").size() == 1);
      h.advance(1s);
      REQUIRE(claim_ok(outbox, "mesh-a").empty());
      h.advance(29s);  // the lease ends: the second claim is attempt 2 (nominal delay 1 s)
      REQUIRE(claim_ok(outbox, "mesh-a").size() == 1);
      REQUIRE(outbox.mark_failed(id, Error(Errc::timed_out, "ack timeout"), false));
      const auto delay = find_ok(outbox, id).next_attempt_at_ms - h.now();
      CHECK(delay == (byte == 0 ? 750 : 1'250));
    }
  }

  TEST_CASE("outbox backoff rule: bounds, doubling and cap for any attempt count and random draw") {
    const OutboxConfig config;
    CHECK(store::backoff_delay_ms(config, 1, 0.5) == 500);
    CHECK(store::backoff_delay_ms(config, 2, 0.5) == 1'000);
    CHECK(store::backoff_delay_ms(config, 6, 0.5) == 16'000);
    CHECK(store::backoff_delay_ms(config, 7, 0.5) == 30'000);
    CHECK(store::backoff_delay_ms(config, 1, 0.0) == 375);
    CHECK(store::backoff_delay_ms(config, 1, 0.999999) == 625);
    for (const int attempts : {0, 1, 7, 25, 62, 63, 1'000, std::numeric_limits<int>::max()}) {
      for (const double unit : {0.0, 0.5, 0.999999, 1.0}) {
        CAPTURE(attempts);
        CAPTURE(unit);
        const auto delay = store::backoff_delay_ms(config, attempts, unit);
        CHECK(delay >= 375);
        CHECK(delay <= 37'500);
      }
    }
    OutboxConfig odd;
    odd.backoff_jitter = std::numeric_limits<double>::quiet_NaN();
    CHECK(store::backoff_delay_ms(odd, 3, 0.0) == 2'000);
    odd.backoff_jitter = 7.0;  // clamped to 1: delays in [0, 2x]
    CHECK(store::backoff_delay_ms(odd, 3, 0.0) == 0);
    odd.backoff_base = -5ms;
    CHECK(store::backoff_delay_ms(odd, 3, 0.9) == 0);
    CHECK(core::random_unit(test::fixed_random({0x00})) == 0.0);
    const double high = core::random_unit(test::fixed_random({0xff}));
    CHECK(high < 1.0);
    CHECK(high > 0.9999);
  }

  TEST_CASE("outbox: the 25th failed attempt makes the row dead with max_attempts") {
    const Harness h;
    auto outbox = h.open();
    const auto id = accept_ok(outbox, make_send("cm-1")).row.id;
    for (int attempt = 1; attempt <= 24; ++attempt) {
      CAPTURE(attempt);
      REQUIRE(claim_ok(outbox, "mesh-a").size() == 1);
      REQUIRE(value_of(outbox.mark_failed(id, Error(Errc::timed_out, "ack timeout"), false)) == OutboxStatus::pending);
      h.advance(40s);
    }
    const auto last = claim_ok(outbox, "mesh-a");
    REQUIRE(last.size() == 1);
    CHECK(last[0].attempts == 25);
    CHECK(value_of(outbox.mark_failed(id, Error(Errc::timed_out, "ack timeout"), false)) == OutboxStatus::dead);
    const auto dead = find_ok(outbox, id);
    CHECK(dead.status == OutboxStatus::dead);
    CHECK(dead.last_error == "max_attempts: timed_out: ack timeout");
    h.advance(1h);
    CHECK(claim_ok(outbox, "mesh-a").empty());
  }

  TEST_CASE("outbox: an inflight row whose lease expired is claimable again") {
    const Harness h;
    auto outbox = h.open();
    const auto id = accept_ok(outbox, make_send("cm-1")).row.id;
    REQUIRE(claim_ok(outbox, "mesh-a").size() == 1);
    CHECK(value_of(outbox.next_due_ms("mesh-a", sender_lane)) == t0 + 30'000);
    h.advance(29'999ms);
    CHECK(claim_ok(outbox, "mesh-a").empty());
    h.advance(1ms);
    const auto again = claim_ok(outbox, "mesh-a");
    REQUIRE(again.size() == 1);
    CHECK(again[0].id == id);
    CHECK(again[0].attempts == 2);
    CHECK(again[0].next_attempt_at_ms == h.now() + 30'000);
  }

  TEST_CASE("outbox: inflight rows of a crashed owner are pending again when the outbox reopens") {
    const Harness h;
    std::vector<std::string> ids;
    {
      auto outbox = h.open();
      for (const char* client_id : {"cm-1", "cm-2", "cm-3", "cm-4"}) {
        ids.push_back(accept_ok(outbox, make_send(client_id)).row.id);
      }
      REQUIRE(claim_ok(outbox, "mesh-a", 3).size() == 3);
      CHECK(outbox.recovered_on_open() == 0);
    }  // the owner stops without acknowledging anything
    h.advance(2s);
    auto outbox = h.open();
    CHECK(outbox.recovered_on_open() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
      const auto row = find_ok(outbox, ids[i]);
      CHECK(row.status == OutboxStatus::pending);
      CHECK(row.next_attempt_at_ms == h.now());
      CHECK(row.attempts == 1);
    }
    const auto claimed = claim_ok(outbox, "mesh-a");
    REQUIRE(claimed.size() == 4);
    CHECK(client_ids(claimed) == std::vector<std::string>{"cm-1", "cm-2", "cm-3", "cm-4"});
    CHECK(claimed[0].attempts == 2);
    CHECK(claimed[3].attempts == 1);
    CHECK(h.open().recovered_on_open() == 4);  // each open recovers what is inflight at that moment
  }

  TEST_CASE("outbox: a row older than max_age goes dead as expired instead of being claimed") {
    const Harness h;
    OutboxConfig config = h.config();
    config.max_age = 1h;
    auto outbox = h.open(config);
    const auto old_id = accept_ok(outbox, make_send("cm-old")).row.id;
    h.advance(30min);
    const auto young_id = accept_ok(outbox, make_send("cm-young")).row.id;
    const auto other_mesh = accept_ok(outbox, make_send("cm-b", fingerprint_a, "mesh-b")).row.id;
    h.advance(30min);  // cm-old is exactly max_age old
    const auto claimed = claim_ok(outbox, "mesh-a");
    REQUIRE(claimed.size() == 1);
    CHECK(claimed[0].id == young_id);
    const auto expired = find_ok(outbox, old_id);
    CHECK(expired.status == OutboxStatus::dead);
    CHECK(expired.last_error.starts_with("expired"));
    CHECK(expired.attempts == 0);
    CHECK(find_ok(outbox, other_mesh).status == OutboxStatus::pending);  // only the claimed mesh is swept

    h.advance(30min);  // the inflight young row reaches max_age while leased and then expires too
    CHECK(claim_ok(outbox, "mesh-a").empty());
    CHECK(find_ok(outbox, young_id).status == OutboxStatus::dead);
    CHECK(find_ok(outbox, young_id).last_error.starts_with("expired"));
    CHECK(error_of(outbox.mark_sent(young_id, "late")) == Errc::not_found);
  }

  TEST_CASE("outbox: claim takes one mesh's rows, oldest first, and a backlog in one mesh does not hold back another") {
    const Harness h;
    auto outbox = h.open();
    for (int i = 0; i < 40; ++i) {
      accept_ok(outbox, make_send("a-" + std::to_string(100 + i)));
      h.advance(1ms);
    }
    const auto b_id = accept_ok(outbox, make_send("b-1", fingerprint_a, "mesh-b")).row.id;
    const auto b_rows = claim_ok(outbox, "mesh-b", 1);
    REQUIRE(b_rows.size() == 1);
    CHECK(b_rows[0].id == b_id);
    const auto a_rows = claim_ok(outbox, "mesh-a", 10);
    REQUIRE(a_rows.size() == 10);
    for (std::size_t i = 0; i < a_rows.size(); ++i) {
      CHECK(a_rows[i].client_message_id == "a-" + std::to_string(100 + i));
      CHECK(a_rows[i].mesh == "mesh-a");
    }
    CHECK(claim_ok(outbox, "mesh-a", 100).size() == 30);
    CHECK(claim_ok(outbox, "mesh-b").empty());
    CHECK(claim_ok(outbox, "mesh-c").empty());
  }

  TEST_CASE("outbox: a session's rows are their own lane: the member's claim skips them, the session's takes only them") {
    const Harness h;
    auto outbox = h.open();
    const std::string session_a(64, 'a');
    const std::string session_b(64, 'b');
    OutboxSend member_1 = make_send("member-1");
    member_1.sender_session_pubkey.clear();
    accept_ok(outbox, member_1);
    h.advance(1ms);
    OutboxSend from_a = make_send("session-a-1");
    from_a.sender_session_pubkey = session_a;
    const auto a_id = accept_ok(outbox, from_a).row.id;
    h.advance(1ms);
    OutboxSend member_2 = make_send("member-2");
    member_2.sender_session_pubkey.clear();
    accept_ok(outbox, member_2);
    CHECK(value_of(outbox.next_due_ms("mesh-a", session_a)) == h.now() - 1);
    CHECK_FALSE(value_of(outbox.next_due_ms("mesh-a", session_b)));
    const auto member_rows = value_of(outbox.claim("mesh-a", 10));
    REQUIRE(member_rows.size() == 2);
    CHECK(member_rows[0].client_message_id == "member-1");
    CHECK(member_rows[1].client_message_id == "member-2");
    CHECK(value_of(outbox.claim("mesh-a", 10, session_b)).empty());
    const auto session_rows = value_of(outbox.claim("mesh-a", 10, session_a));
    REQUIRE(session_rows.size() == 1);
    CHECK(session_rows[0].id == a_id);
    CHECK(session_rows[0].sender_session_pubkey == session_a);
    CHECK_FALSE(value_of(outbox.next_due_ms("mesh-a")) == std::nullopt);  // the member rows' leases
  }

  TEST_CASE("outbox accept_all: each send is decided in order as accept() would, in one transaction") {
    const Harness h;
    auto outbox = h.open();
    std::vector<OutboxSend> sends;
    sends.push_back(make_send("all-1"));
    sends.push_back(make_send("all-1"));                 // the same request again: 202, nothing new
    sends.push_back(make_send("all-1", fingerprint_b));  // the id reused for other content: 409
    OutboxSend broken = make_send("all-bad");
    broken.mesh.clear();
    sends.push_back(broken);
    sends.push_back(make_send("all-2"));
    const auto answers = outbox.accept_all(sends);
    REQUIRE(answers.size() == 5);
    REQUIRE(answers[0]);
    CHECK(answers[0]->inserted);
    CHECK(answers[0]->http_status == 202);
    REQUIRE(answers[1]);
    CHECK_FALSE(answers[1]->inserted);
    CHECK(answers[1]->http_status == 202);
    CHECK(answers[1]->row.id == answers[0]->row.id);
    REQUIRE(answers[2]);
    CHECK(answers[2]->http_status == 409);
    CHECK(answers[2]->conflict == "outbox_pending_fingerprint_mismatch");
    REQUIRE_FALSE(answers[3]);
    CHECK(answers[3].error() == Errc::invalid_value);
    REQUIRE(answers[4]);
    CHECK(answers[4]->inserted);
    CHECK(claim_ok(outbox, "mesh-a", 10).size() == 2);
    CHECK(outbox.accept_all({}).empty());
  }

  TEST_CASE("outbox: two Outbox objects on one file share rows and the idempotency table") {
    const Harness h;
    auto first = h.open();
    auto second = h.open();
    CHECK(accept_ok(first, make_send("cm-1")).inserted);
    const auto again = accept_ok(second, make_send("cm-1"));
    CHECK_FALSE(again.inserted);
    CHECK(again.outcome == Outcome::queued);
    REQUIRE(claim_ok(second, "mesh-a").size() == 1);
    CHECK(claim_ok(first, "mesh-a").empty());
    CHECK(accept_ok(first, make_send("cm-1")).outcome == Outcome::inflight);
  }

  // ---- requeue ----

  TEST_CASE("outbox requeue: a pending row is aborted and replaced by a row that copies every routing column") {
    const Harness h;
    auto outbox = h.open();
    const auto old = accept_ok(outbox, make_send("cm-1")).row;
    h.advance(5s);
    const auto requeued = value_of(outbox.requeue("cm-1", "cm-2", "operator"));
    CHECK(requeued.aborted_row_id == old.id);
    CHECK(requeued.new_client_message_id == "cm-2");
    CHECK(requeued.new_row_id != old.id);
    CHECK(is_valid_id(requeued.new_row_id));

    const auto aborted = find_ok(outbox, old.id);
    CHECK(aborted.status == OutboxStatus::aborted);
    CHECK(aborted.aborted_at_ms == h.now());
    CHECK(aborted.aborted_by == "operator");
    CHECK(aborted.superseded_by == requeued.new_row_id);

    const auto fresh = find_ok(outbox, "cm-2");
    CHECK(fresh.id == requeued.new_row_id);
    CHECK(fresh.status == OutboxStatus::pending);
    CHECK(fresh.request_fingerprint == old.request_fingerprint);
    CHECK(fresh.mesh == old.mesh);
    CHECK(fresh.target_spec == old.target_spec);
    CHECK(fresh.priority == old.priority);
    CHECK(fresh.reply_to_id == old.reply_to_id);
    CHECK(fresh.sender_session_pubkey == old.sender_session_pubkey);
    CHECK(fresh.sealed == old.sealed);
    CHECK(fresh.payload_bytes == old.payload_bytes);
    CHECK(fresh.attempts == 0);
    CHECK(fresh.enqueued_at_ms == h.now());
    CHECK(fresh.next_attempt_at_ms == h.now());
    CHECK(fresh.last_error.empty());
    CHECK_FALSE(fresh.aborted_at_ms);
    CHECK(fresh.superseded_by.empty());

    const auto claimed = claim_ok(outbox, "mesh-a");
    REQUIRE(claimed.size() == 1);
    CHECK(claimed[0].id == fresh.id);
  }

  TEST_CASE("outbox requeue: a dead row gets a fresh row whose max_age starts again") {
    const Harness h;
    OutboxConfig config = h.config();
    config.max_age = 1h;
    auto outbox = h.open(config);
    const auto old = accept_ok(outbox, make_send("cm-1")).row;
    REQUIRE(claim_ok(outbox, "mesh-a").size() == 1);
    REQUIRE(outbox.mark_failed(old.id, Error(Errc::forbidden, "no"), true));
    h.advance(50min);
    const auto requeued = value_of(outbox.requeue(old.id, "", "ops-bot"));
    CHECK(is_valid_id(requeued.new_client_message_id));
    CHECK(find_ok(outbox, old.id).aborted_by == "ops-bot");
    h.advance(30min);  // 80 minutes after the first accept, 30 after the requeue
    const auto claimed = claim_ok(outbox, "mesh-a");
    REQUIRE(claimed.size() == 1);
    CHECK(claimed[0].id == requeued.new_row_id);
    CHECK(claimed[0].target_spec == old.target_spec);
  }

  TEST_CASE("outbox requeue: done and aborted rows are forbidden - inflight needs force") {
    const Harness h;
    auto outbox = h.open();
    const auto done = accept_ok(outbox, make_send("cm-done")).row.id;
    REQUIRE(claim_ok(outbox, "mesh-a").size() == 1);
    REQUIRE(outbox.mark_sent(done, "broker-1"));
    CHECK(error_of(outbox.requeue("cm-done", "cm-new")) == Errc::forbidden);

    const auto inflight = accept_ok(outbox, make_send("cm-inflight")).row.id;
    REQUIRE(claim_ok(outbox, "mesh-a").size() == 1);
    const std::string before = dump_all(outbox);
    CHECK(error_of(outbox.requeue(inflight, "cm-new")) == Errc::forbidden);
    CHECK(dump_all(outbox) == before);
    const auto forced = value_of(outbox.requeue(inflight, "cm-new", "operator", true));
    CHECK(find_ok(outbox, inflight).status == OutboxStatus::aborted);
    CHECK(find_ok(outbox, forced.new_row_id).status == OutboxStatus::pending);
    CHECK(error_of(outbox.mark_sent(inflight, "late")) == Errc::not_found);  // its sender's ack is ignored

    CHECK(error_of(outbox.requeue(inflight, "cm-newer")) == Errc::forbidden);  // aborted
    CHECK(error_of(outbox.requeue("cm-inflight", "cm-newer", "operator", true)) == Errc::forbidden);
  }

  TEST_CASE("outbox requeue: the old client message id stays consumed (409 outbox_aborted_fingerprint_match)") {
    const Harness h;
    auto outbox = h.open();
    accept_ok(outbox, make_send("cm-1"));
    REQUIRE(outbox.requeue("cm-1", "cm-2"));
    const auto reused = accept_ok(outbox, make_send("cm-1"));
    CHECK(reused.http_status == 409);
    CHECK(reused.conflict == "outbox_aborted_fingerprint_match");
    CHECK_FALSE(reused.inserted);
    CHECK(accept_ok(outbox, make_send("cm-2")).outcome == Outcome::queued);  // the new id is the live row
  }

  TEST_CASE("outbox requeue: a new id that already has a row is idempotency_key_reused - unknown rows not_found") {
    const Harness h;
    auto outbox = h.open();
    accept_ok(outbox, make_send("cm-1"));
    accept_ok(outbox, make_send("cm-2", fingerprint_b));
    const std::string before = dump_all(outbox);
    CHECK(error_of(outbox.requeue("cm-1", "cm-2")) == Errc::idempotency_key_reused);
    CHECK(error_of(outbox.requeue("cm-1", "cm-1")) == Errc::idempotency_key_reused);
    CHECK(error_of(outbox.requeue("no-such-row", "cm-3")) == Errc::not_found);
    CHECK(error_of(outbox.requeue("cm-1", "bad id")) == Errc::invalid_value);
    CHECK(error_of(outbox.requeue("cm-1", std::string(129, 'x'))) == Errc::invalid_value);
    CHECK(error_of(outbox.requeue("cm-1", "cm-3", "")) == Errc::invalid_value);
    CHECK(dump_all(outbox) == before);
  }

  // ---- listings ----

  TEST_CASE("outbox list: newest first, filtered by status, limit clamped to 1..500") {
    const Harness h;
    auto outbox = h.open();
    for (const char* client_id : {"cm-1", "cm-2", "cm-3", "cm-4", "cm-5"}) {
      accept_ok(outbox, make_send(client_id));
      h.advance(1s);
    }
    REQUIRE(claim_ok(outbox, "mesh-a", 2).size() == 2);  // cm-1, cm-2 inflight
    CHECK(client_ids(value_of(outbox.list(std::nullopt))) ==
          std::vector<std::string>{"cm-5", "cm-4", "cm-3", "cm-2", "cm-1"});
    CHECK(client_ids(value_of(outbox.list(OutboxStatus::pending))) ==
          std::vector<std::string>{"cm-5", "cm-4", "cm-3"});
    CHECK(client_ids(value_of(outbox.list(OutboxStatus::inflight))) == std::vector<std::string>{"cm-2", "cm-1"});
    CHECK(value_of(outbox.list(OutboxStatus::done)).empty());
    CHECK(client_ids(value_of(outbox.list(OutboxStatus::pending, 2))) == std::vector<std::string>{"cm-5", "cm-4"});
    CHECK(client_ids(value_of(outbox.list(std::nullopt, 0))) == std::vector<std::string>{"cm-5"});

    for (int i = 0; i < 500; ++i) accept_ok(outbox, make_send("bulk-" + std::to_string(i)));
    CHECK(value_of(outbox.list(std::nullopt, 100'000)).size() == 500);
    CHECK(value_of(outbox.list(std::nullopt, std::numeric_limits<std::size_t>::max())).size() == 500);
    CHECK(value_of(outbox.list(OutboxStatus::pending, 501)).size() == 500);
  }

  TEST_CASE("outbox depths: row counts and the oldest row per mesh and status") {
    const Harness h;
    auto outbox = h.open();
    CHECK(value_of(outbox.depths()).empty());
    accept_ok(outbox, make_send("a-1"));
    h.advance(1s);
    accept_ok(outbox, make_send("a-2"));
    h.advance(1s);
    accept_ok(outbox, make_send("a-3"));
    REQUIRE(claim_ok(outbox, "mesh-a", 1).size() == 1);  // a-1 inflight
    h.advance(1s);
    const auto b = accept_ok(outbox, make_send("b-1", fingerprint_a, "mesh-b")).row.id;
    REQUIRE(claim_ok(outbox, "mesh-b").size() == 1);
    REQUIRE(outbox.mark_sent(b, "broker-1"));

    std::map<std::pair<std::string, std::string>, std::pair<std::int64_t, std::int64_t>> got;
    for (const auto& depth : value_of(outbox.depths())) {
      got[{depth.mesh, std::string(to_string(depth.status))}] = {depth.rows, depth.oldest_enqueued_at_ms};
    }
    const decltype(got) expected = {
        {{"mesh-a", "inflight"}, {1, t0}},
        {{"mesh-a", "pending"}, {2, t0 + 1'000}},
        {{"mesh-b", "done"}, {1, t0 + 3'000}},
    };
    CHECK(got == expected);
  }

  TEST_CASE("outbox next_due_ms: the earliest pending or lease end of one mesh") {
    const Harness h;
    OutboxConfig config = h.config();
    config.backoff_jitter = 0;
    auto outbox = h.open(config);
    CHECK_FALSE(value_of(outbox.next_due_ms("mesh-a", sender_lane)));
    const auto id = accept_ok(outbox, make_send("cm-1")).row.id;
    CHECK(value_of(outbox.next_due_ms("mesh-a", sender_lane)) == t0);
    CHECK_FALSE(value_of(outbox.next_due_ms("mesh-b", sender_lane)));
    REQUIRE(claim_ok(outbox, "mesh-a").size() == 1);
    CHECK(value_of(outbox.next_due_ms("mesh-a", sender_lane)) == t0 + 30'000);
    h.advance(1s);
    REQUIRE(outbox.mark_failed(id, Error(Errc::timed_out, "ack timeout"), false));
    CHECK(value_of(outbox.next_due_ms("mesh-a", sender_lane)) == h.now() + 500);
    h.advance(1s);
    REQUIRE(claim_ok(outbox, "mesh-a").size() == 1);
    REQUIRE(outbox.mark_sent(id, "broker-1"));
    CHECK_FALSE(value_of(outbox.next_due_ms("mesh-a", sender_lane)));
  }

  TEST_CASE("outbox status names round-trip") {
    for (const auto status : {OutboxStatus::pending, OutboxStatus::inflight, OutboxStatus::done, OutboxStatus::dead,
                              OutboxStatus::aborted}) {
      CHECK(parse_outbox_status(to_string(status)) == status);
    }
    CHECK(to_string(OutboxStatus::inflight) == "inflight");
    CHECK(to_string(static_cast<OutboxStatus>(99)).empty());
    CHECK_FALSE(parse_outbox_status("Pending"));
    CHECK_FALSE(parse_outbox_status(""));
    CHECK_FALSE(parse_outbox_status("in flight"));
  }

  TEST_CASE("outbox: a moved-from Outbox answers with an error, not a crash") {
    const Harness h;
    auto outbox = h.open();
    auto moved = std::move(outbox);
    CHECK(error_of(outbox.accept(make_send("cm-1"))) == Errc::internal);  // NOLINT(bugprone-use-after-move)
    CHECK(error_of(outbox.claim("mesh-a")) == Errc::internal);            // NOLINT(bugprone-use-after-move)
    CHECK(outbox.recovered_on_open() == 0);                               // NOLINT(bugprone-use-after-move)
    CHECK(accept_ok(moved, make_send("cm-1")).inserted);
  }

  // ---- the file ----

  TEST_CASE("outbox file: rows survive close and reopen with the default synchronous=FULL") {
    const Harness h;
    OutboxConfig config = h.config();
    config.fsync = true;
    {
      auto outbox = h.open(config);
      accept_ok(outbox, make_send("cm-1"));
    }
    {
      auto reopened = h.open(config);
      CHECK(find_ok(reopened, "cm-1").status == OutboxStatus::pending);
    }
    SQLite::Database raw(h.path().string(), SQLite::OPEN_READONLY);
    CHECK(raw.execAndGet("PRAGMA application_id").getInt64() == 0x636d6f62);
    CHECK(raw.execAndGet("PRAGMA user_version").getInt64() == 1);
    CHECK(raw.execAndGet("PRAGMA journal_mode").getString() == "wal");
  }

  TEST_CASE("outbox file: a new outbox is 0600 in a created 0700 directory") {
    const Harness h;
    const auto path = h.dir.path() / "state" / "outbox.db";
    auto opened = Outbox::open(path, h.config());
    REQUIRE(opened.has_value());
    accept_ok(*opened, make_send("cm-1"));
    CHECK(mode_of(path) == 0600);
    CHECK(mode_of(path.string() + "-wal") == 0600);
    CHECK(mode_of(path.parent_path()) == 0700);
  }

  TEST_CASE("outbox file: a file that is not SQLite is an io_error and left unchanged") {
    const Harness h;
    std::string text;
    for (int i = 0; i < 200; ++i) text += "this is not a database, just some notes\n";
    write_all(h.path(), text);
    const auto opened = Outbox::open(h.path(), h.config());
    CHECK(error_of(opened) == Errc::io_error);
    CHECK(read_all(h.path()) == text);
  }

  TEST_CASE("outbox file: another application's database and a newer schema are refused") {
    const Harness h;
    {
      SQLite::Database raw(h.path().string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
      raw.exec("CREATE TABLE notes (body TEXT)");
    }
    const auto other = error_of(Outbox::open(h.path(), h.config()));
    CHECK(other.message.find("not a claudemesh outbox") != std::string::npos);
    {
      SQLite::Database raw(h.path().string(), SQLite::OPEN_READONLY);
      CHECK(raw.execAndGet("SELECT COUNT(*) FROM sqlite_schema").getInt() == 1);  // not migrated
    }
    const Harness newer;
    { const Outbox created = newer.open(); }  // a real outbox, then made newer than this build knows
    {
      SQLite::Database raw(newer.path().string(), SQLite::OPEN_READWRITE);
      raw.exec("PRAGMA user_version = 99");
    }
    CHECK(error_of(Outbox::open(newer.path(), newer.config())).message.find("newer") != std::string::npos);
  }

  TEST_CASE("outbox file: a damaged outbox is reported as damaged and left as it is, not a crash") {
    const Harness h;
    {
      auto outbox = h.open();
      OutboxSend send = make_send("");
      send.sealed = R"({"ciphertext":")" + std::string(1'500, 'Q') + R"("})";
      for (int i = 0; i < 200; ++i) accept_ok(outbox, send);
    }  // the last connection closes: the WAL is checkpointed into the file and removed
    std::string bytes = read_all(h.path());
    REQUIRE(bytes.size() > 40 * 4096);
    const std::size_t page = (bytes.size() / 4096 / 2) * 4096;
    for (std::size_t i = page; i < page + 4096; ++i) bytes[i] = static_cast<char>(0xa5);
    write_all(h.path(), bytes);
    const auto opened = Outbox::open(h.path(), h.config());
    const auto error = error_of(opened);
    CHECK(error == Errc::malformed);
    CHECK(error.message.find(h.path().string()) != std::string::npos);
    CHECK(error.message.find("damaged") != std::string::npos);
    CHECK(read_all(h.path()) == bytes);
  }
}
