// SPDX-License-Identifier: MIT
#include "transport/http/router.hpp"

#include "transport/http/serializer.hpp"

namespace claudemesh::transport::http {
namespace {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> segments;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    const auto slash = path.find('/');
    segments.emplace_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash);
  }
  return segments;
}

bool matches(const Router::Route& route, const std::vector<std::string>& segments,
             std::vector<std::pair<std::string, std::string>>& params) {
  if (route.segments.size() != segments.size()) return false;
  params.clear();
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const auto& pattern = route.segments[i];
    if (!pattern.empty() && pattern.front() == ':') {
      if (segments[i].empty()) return false;
      params.emplace_back(pattern.substr(1), segments[i]);
    } else if (pattern != segments[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string_view Request::param(std::string_view name) const noexcept {
  for (const auto& [key, value] : params) {
    if (key == name) return value;
  }
  return {};
}

asio::awaitable<std::error_code> ResponseStream::start(HttpResponse head) {
  started_ = true;
  const std::string bytes = serialize_head_chunked(head);
  co_return co_await stream_.write(asio::buffer(bytes));
}

asio::awaitable<std::error_code> ResponseStream::write(std::string_view data) {
  if (data.empty()) co_return std::error_code{};
  const std::string chunk = encode_chunk(data);
  co_return co_await stream_.write(asio::buffer(chunk));
}

Router::Route& Router::add_route(std::string method, std::string_view pattern, RouteOptions options) {
  Route& route = routes_.emplace_back();
  route.method = std::move(method);
  route.segments = split_path(pattern);
  route.options = options;
  return route;
}

void Router::add(std::string method, std::string_view pattern, Handler handler, RouteOptions options) {
  add_route(std::move(method), pattern, options).handler = std::move(handler);
}

void Router::add_stream(std::string method, std::string_view pattern, StreamHandler handler, RouteOptions options) {
  add_route(std::move(method), pattern, options).stream_handler = std::move(handler);
}

void Router::add_upgrade(std::string_view pattern, UpgradeHandler handler) {
  add_route("GET", pattern, {}).upgrade_handler = std::move(handler);
}

Router::Match Router::match(std::string_view method, std::string_view path) const {
  const auto segments = split_path(path);
  Match result;
  std::vector<std::pair<std::string, std::string>> params;
  for (const auto& route : routes_) {
    if (!matches(route, segments, params)) continue;
    if (route.method == method) {
      result.route = &route;
      result.params = std::move(params);
      result.allowed_methods.clear();
      return result;
    }
    result.allowed_methods.push_back(route.method);
  }
  return result;
}

}  // namespace claudemesh::transport::http
