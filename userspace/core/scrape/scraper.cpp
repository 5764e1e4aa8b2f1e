#include "core/scrape/scraper.h"

#include <curl/curl.h>
#include <fmt/core.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <system_error>
#include <utility>

#include "core/util/log.h"
#include "core/proc/netns.h"

namespace sp {
namespace {

// curl_global_init is not thread-safe in every libcurl build: once, before the first handle, for the process.
bool curl_ready() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] { ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; });
  return ok;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != prefix[i]) return false;
  }
  return true;
}

struct Body {
  std::string data;
  std::size_t cap = 0;
  bool over_cap = false;
};

// libcurl hands us decoded bytes (after Content-Encoding), so the cap bounds what we hold whatever the wire size.
// Returning less than asked aborts the transfer with CURLE_WRITE_ERROR.
std::size_t on_body(char* ptr, std::size_t size, std::size_t nmemb, void* user) {
  auto* body = static_cast<Body*>(user);
  const std::size_t n = size * nmemb;
  if (n > body->cap - body->data.size()) {
    body->over_cap = true;
    return 0;
  }
  body->data.append(ptr, n);
  return n;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto* cancel = static_cast<const std::atomic<bool>*>(user);
  return cancel && cancel->load() ? 1 : 0;
}

// Opens the connection's socket inside the target's network namespace (CURLOPT_OPENSOCKETFUNCTION); libcurl closes
// it. What went wrong is kept for the scrape's error, which libcurl would only call "could not connect".
struct SocketOpener {
  const ScrapeTarget* target;
  std::string error;
};

curl_socket_t open_socket(void* user, curlsocktype purpose, curl_sockaddr* address) {
  auto* opener = static_cast<SocketOpener*>(user);
  if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
  Fd sock = socket_in_netns(opener->target->netns_path, opener->target->netns_inode, address->family,
                            address->socktype, address->protocol, opener->error);
  return sock.valid() ? sock.release() : CURL_SOCKET_BAD;
}

struct EasyDeleter {
  void operator()(CURL* easy) const { curl_easy_cleanup(easy); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

// The curl_easy_setopt calls of one transfer; false if any option is refused (an old or oddly built libcurl).
bool configure(CURL* easy, const ScrapeTarget& target, const ScrapeOptions& options, curl_slist* headers, Body* body,
               SocketOpener* opener, char* errbuf, const std::atomic<bool>* cancel) {
  static const std::atomic<bool> kNeverCancel{false};
  const long timeout_ms = static_cast<long>(std::max<std::chrono::milliseconds::rep>(options.timeout.count(), 1));
  bool ok = true;
  ok &= curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf) == CURLE_OK;
  ok &= curl_easy_setopt(easy, CURLOPT_URL, target.url.c_str()) == CURLE_OK;
  ok &= curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
  ok &= curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
  ok &= curl_easy_setopt(easy, CURLOPT_NOPROXY, "*") == CURLE_OK;
  ok &= curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;  // threads: no SIGALRM for DNS timeouts
  ok &= curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms) == CURLE_OK;
  ok &= curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms) == CURLE_OK;
  ok &= curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers) == CURLE_OK;
  ok &= curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "") == CURLE_OK;  // every encoding libcurl can decode
  ok &= curl_easy_setopt(easy, CURLOPT_USERAGENT, "synapse-profiler/" SP_VERSION) == CURLE_OK;
  ok &= curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
  ok &= curl_easy_setopt(easy, CURLOPT_WRITEDATA, body) == CURLE_OK;
  ok &= curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L) == CURLE_OK;
  ok &= curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress) == CURLE_OK;
  ok &= curl_easy_setopt(easy, CURLOPT_XFERINFODATA, cancel ? cancel : &kNeverCancel) == CURLE_OK;
  if (!target.netns_path.empty()) {
    ok &= curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket) == CURLE_OK;
    ok &= curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, opener) == CURLE_OK;
  }
  return ok;
}

}  // namespace

ScrapeResult scrape_target(const ScrapeTarget& target, const ScrapeOptions& options,
                           const std::atomic<bool>* cancel) {
  ScrapeResult result;
  result.worker_app = target.worker_app;
  result.pod = target.pod;
  result.url = target.url;
  result.when = std::chrono::system_clock::now();
  result.started = std::chrono::steady_clock::now();
  const auto t0 = std::chrono::steady_clock::now();
  const auto finish = [&](std::string error) {
    result.error = std::move(error);
    result.up = result.error.empty();
    result.duration_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return std::move(result);
  };

  if (!starts_with_nocase(target.url, "http://") && !starts_with_nocase(target.url, "https://")) {
    return finish(fmt::format("GET {}: only http:// and https:// URLs are scraped", target.url));
  }
  if (!curl_ready()) return finish(fmt::format("GET {}: curl_global_init failed", target.url));
  const std::unique_ptr<CURL, EasyDeleter> easy(curl_easy_init());
  const std::unique_ptr<curl_slist, SlistDeleter> headers(curl_slist_append(nullptr, "Accept: text/plain;version=0.0.4"));
  if (!easy || !headers) return finish(fmt::format("GET {}: cannot create a libcurl handle", target.url));

  Body body;
  body.cap = options.max_body_bytes;
  char errbuf[CURL_ERROR_SIZE] = {};
  SocketOpener opener{&target, {}};
  if (!configure(easy.get(), target, options, headers.get(), &body, &opener, errbuf, cancel)) {
    return finish(fmt::format("GET {}: libcurl refused an option (http/https support, CURLOPT_PROTOCOLS_STR)",
                              target.url));
  }
  const CURLcode rc = curl_easy_perform(easy.get());
  if (body.over_cap) {
    return finish(fmt::format("GET {}: body larger than {} bytes (decoded); transfer aborted", target.url,
                              options.max_body_bytes));
  }
  if (rc == CURLE_ABORTED_BY_CALLBACK) return finish(fmt::format("GET {}: cancelled", target.url));
  if (rc != CURLE_OK && !opener.error.empty()) {
    return finish(fmt::format("GET {} in the worker's network namespace: {}", target.url, opener.error));
  }
  if (rc != CURLE_OK) {
    return finish(fmt::format("GET {}: {}", target.url, errbuf[0] ? errbuf : curl_easy_strerror(rc)));
  }
  long status = 0;
  curl_easy_getinfo(easy.get(), CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299) {
    return finish(fmt::format("GET {}: HTTP {}{}", target.url, status,
                              status >= 300 && status <= 399 ? " (redirects are not followed)" : ""));
  }

  prom::ParseResult parsed = prom::parse_prometheus_text(body.data, options.limits);
  std::string().swap(body.data);  // the text is no longer needed: free it before the families are kept
  if (!parsed.ok()) return finish(fmt::format("parse {}: {}", target.url, parsed.error));
  result.families = std::make_shared<const std::vector<prom::Family>>(std::move(parsed.families));
  return finish({});
}

Scraper::Scraper(ScrapeOptions options) : options_(std::move(options)) {}

Scraper::~Scraper() { stop(); }

void Scraper::set_targets(std::vector<Target> targets) {
  std::vector<Target> unique;
  std::set<std::string> workers;
  for (auto& t : targets) {
    if (!workers.insert(t.worker).second) {
      log::warn("scrape: worker {} listed twice; ignoring {}", t.worker, t.url);
      continue;
    }
    unique.push_back(std::move(t));
  }
  {
    const std::lock_guard lock(mutex_);
    if (unique == targets_) return;
    targets_ = std::move(unique);
    if (std::erase_if(results_, [&](const auto& entry) { return !workers.contains(entry.first); }) > 0) {
      generation_.fetch_add(1, std::memory_order_release);
    }
    targets_changed_ = true;
  }
  wake_.notify_all();
}

void Scraper::start() {
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread(&Scraper::run, this);
}

void Scraper::stop() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Scraper::scrape_round() {
  std::vector<Target> targets;
  {
    const std::lock_guard lock(mutex_);
    targets = targets_;
  }
  round(targets);
}

ScrapeResult Scraper::scrape_once(const Target& target) const { return scrape_target(target, options_); }

std::map<std::string, ScrapeResult> Scraper::latest() const {
  const std::lock_guard lock(mutex_);
  return results_;
}

void Scraper::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    const std::vector<Target> targets = targets_;
    targets_changed_ = false;
    lock.unlock();
    const auto started = std::chrono::steady_clock::now();
    round(targets);
    lock.lock();
    wake_.wait_until(lock, started + options_.interval, [&] { return stopping_ || targets_changed_; });
  }
}

void Scraper::round(const std::vector<Target>& targets) {
  std::atomic<std::size_t> next{0};
  const auto work = [&] {
    for (std::size_t i = next++; i < targets.size() && !stopping_; i = next++) {
      ScrapeResult r = scrape_target(targets[i], options_, &stopping_);
      if (stopping_) return;  // a cancelled transfer says nothing about the worker
      const std::lock_guard lock(mutex_);
      // The list may have changed during the transfer: a result for a target that left (or moved) is stale.
      if (std::find(targets_.begin(), targets_.end(), targets[i]) == targets_.end()) continue;
      const auto previous = results_.find(targets[i].worker);
      const bool was_up = previous == results_.end() || previous->second.up;
      if (!r.up && was_up) log::warn("scrape worker {}: {}", targets[i].worker, r.error);
      if (!r.up && !was_up) log::debug("scrape worker {}: {}", targets[i].worker, r.error);
      if (r.up && !was_up) log::info("scrape worker {}: up again", targets[i].worker);
      results_[targets[i].worker] = std::move(r);
      generation_.fetch_add(1, std::memory_order_release);
    }
  };
  const std::size_t wanted = std::min(targets.size(), std::max<std::size_t>(options_.max_parallel, 1));
  std::vector<std::thread> pool;
  for (std::size_t k = 1; k < wanted; ++k) {
    try {
      pool.emplace_back(work);
    } catch (const std::system_error& e) {
      log::warn("scrape: cannot start a scrape thread ({}); continuing with {}", e.what(), pool.size() + 1);
      break;
    }
  }
  work();
  for (auto& t : pool) t.join();
}

}  // namespace sp
