// cellos-reactor-export: one cell's artifacts out, in a process of its own.
//
//   cellos-reactor-export --cell ID --run RUN [--dir DIR] [--http-url URL]
//       --max-artifact-bytes N --max-cell-bytes N --timeout-seconds N
//       --artifact NAME PATH ROOT RELPATH ...          (ROOT: "work" or "tmp")
//   fd 3: the root of the cell's workspace, fd 4: of its /tmp (tmpfs the reactor held open past
//   the cell's end)
//
// The reactor starts it after a cell's command exited (cells/cell_export.h) and watches it on
// its ring; every blocking step (file reads, the local copy, HTTP PUTs through libcurl) happens
// here. Each artifact is opened below fd 3 (or 4) with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS |
// RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV): `..` cannot climb out of the workspace and no
// symlink is followed, whatever the cell left there. One JSON line per artifact on stdout (its
// receipt: size, SHA-256, per target the destination and whether it got there), written as
// soon as the artifact is done, so a helper killed at its deadline still reports what it did.
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace {

constexpr int kWorkFd = 3;
constexpr int kTmpFd = 4;

struct Artifact {
  std::string name, path, rel;
  int root = kWorkFd;  // which of the cell's tmpfs holds it
};

struct Options {
  std::string cell, run, dir, http_url;
  uint64_t max_artifact = 0, max_cell = 0, timeout_s = 300;
  std::vector<Artifact> artifacts;
};

// One file of an artifact: its path below the artifact ("" for a file artifact) and size.
struct File {
  std::string rel;
  uint64_t size = 0;
};

std::string err_text(int e) { return std::strerror(e); }

int open_below(int dirfd, const std::string& rel, int flags) {
  open_how how{};
  // No O_NOFOLLOW: with O_PATH it would open a trailing symlink itself; RESOLVE_NO_SYMLINKS
  // refuses every symlink, the last component's included, with ELOOP.
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  return static_cast<int>(::syscall(SYS_openat2, dirfd, rel.empty() ? "." : rel.c_str(), &how, sizeof how));
}

// The regular files below the directory `fd`, sorted by path; symlinks and special files are
// left out (never followed). false with `error` set on a read failure.
bool walk(int fd, const std::string& prefix, std::vector<File>& out, std::string& error, int depth = 0) {
  if (depth > 64) {
    error = prefix + ": nested too deep";
    return false;
  }
  int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  DIR* d = dup < 0 ? nullptr : ::fdopendir(dup);
  if (!d) {
    error = prefix + ": " + err_text(errno);
    if (dup >= 0) ::close(dup);
    return false;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    struct stat st {};
    if (::fstatat(fd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    const std::string rel = prefix.empty() ? n : prefix + "/" + n;
    if (S_ISREG(st.st_mode)) {
      out.push_back({rel, static_cast<uint64_t>(st.st_size)});
    } else if (S_ISDIR(st.st_mode)) {
      int sub = open_below(fd, n, O_RDONLY | O_DIRECTORY);
      if (sub < 0) {
        error = rel + ": " + err_text(errno);
        return false;
      }
      bool ok = walk(sub, rel, out, error, depth + 1);
      ::close(sub);
      if (!ok) return false;
    }
  }
  return true;
}

std::string hex(const unsigned char* p, size_t n) {
  static const char* k = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) s += k[p[i] >> 4], s += k[p[i] & 15];
  return s;
}

// SHA-256 of a file (fd at offset 0), copied to `copy_to` when it is >= 0. A read failure
// returns false (error set); a write failure only stops the copy (write_error set).
bool hash_and_copy(int fd, int copy_to, std::string& sha, std::string& error,
                   std::string& write_error) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 16);
  bool ok = true;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = "read: " + err_text(errno);
      ok = false;
      break;
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(n));
    for (ssize_t off = 0; copy_to >= 0 && off < n;) {
      ssize_t w = ::write(copy_to, buf.data() + off, static_cast<size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        write_error = "write: " + err_text(errno);
        copy_to = -1;
        break;
      }
      off += w;
    }
  }
  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  sha = hex(md, len);
  return ok;
}

std::string sha256_text(const std::string& text) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr);
  return hex(md, len);
}

int mkdirs(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i != path.size() && path[i] != '/') continue;
    std::string p = path.substr(0, i);
    if (::mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) return errno;
  }
  return 0;
}

struct Upload {
  int fd = -1;
};

size_t read_cb(char* buf, size_t size, size_t n, void* user) {
  auto* u = static_cast<Upload*>(user);
  for (;;) {
    ssize_t r = ::read(u->fd, buf, size * n);
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? CURL_READFUNC_ABORT : static_cast<size_t>(r);
  }
}

size_t discard_cb(char*, size_t size, size_t n, void*) { return size * n; }

std::string escape_path(CURL* c, const std::string& rel) {
  std::string out;
  size_t start = 0;
  while (start <= rel.size()) {
    size_t end = std::min(rel.find('/', start), rel.size());
    char* e = curl_easy_escape(c, rel.c_str() + start, static_cast<int>(end - start));
    out += (out.empty() ? "" : "/") + std::string(e ? e : "");
    curl_free(e);
    start = end + 1;
  }
  return out;
}

// One PUT of the file `fd` (`size` bytes) to `url`; "" on a 2xx answer, else why not.
std::string put(const std::string& url, int fd, uint64_t size, long timeout_ms) {
  CURL* c = curl_easy_init();
  if (!c) return "curl_easy_init failed";
  Upload u{fd};
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
  curl_easy_setopt(c, CURLOPT_READDATA, &u);
  curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(size));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_cb);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, std::max(1L, timeout_ms));
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  if (rc != CURLE_OK) return std::string("PUT: ") + (errbuf[0] ? errbuf : curl_easy_strerror(rc));
  if (status < 200 || status > 299) return "PUT: HTTP status " + std::to_string(status);
  return "";
}

bool parse_args(int argc, char** argv, Options& o) {
  auto num = [](const char* s, uint64_t& out) {
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s, &end, 10);
    if (errno || !end || *end) return false;
    out = v;
    return true;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto need = [&](int k) { return i + k < argc; };
    if (a == "--cell" && need(1)) o.cell = argv[++i];
    else if (a == "--run" && need(1)) o.run = argv[++i];
    else if (a == "--dir" && need(1)) o.dir = argv[++i];
    else if (a == "--http-url" && need(1)) o.http_url = argv[++i];
    else if (a == "--max-artifact-bytes" && need(1)) { if (!num(argv[++i], o.max_artifact)) return false; }
    else if (a == "--max-cell-bytes" && need(1)) { if (!num(argv[++i], o.max_cell)) return false; }
    else if (a == "--timeout-seconds" && need(1)) { if (!num(argv[++i], o.timeout_s)) return false; }
    else if (a == "--artifact" && need(4)) {
      const std::string root = argv[i + 3];
      if (root != "work" && root != "tmp") return false;
      o.artifacts.push_back({argv[i + 1], argv[i + 2], argv[i + 4], root == "tmp" ? kTmpFd : kWorkFd});
      i += 4;
    } else return false;
  }
  return !o.cell.empty() && !o.run.empty() && ::fcntl(kWorkFd, F_GETFD) >= 0 &&
         ::fcntl(kTmpFd, F_GETFD) >= 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse_args(argc, argv, o)) {
    std::fprintf(stderr, "cellos-reactor-export: started by cellos-reactor for one cell, not by hand\n");
    return 2;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.timeout_s);
  auto remaining = [&] {
    return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 deadline - std::chrono::steady_clock::now())
                                 .count());
  };
  if (!o.http_url.empty()) curl_global_init(CURL_GLOBAL_DEFAULT);
  const std::string run_dir = o.dir.empty() ? "" : o.dir + "/" + o.cell + "/" + o.run;
  uint64_t cell_bytes = 0;
  for (const Artifact& a : o.artifacts) {
    nlohmann::json line = {{"name", a.name}, {"path", a.path}};
    std::vector<File> files;
    std::string error;
    int root = open_below(a.root, a.rel, O_PATH);
    struct stat st {};
    bool is_dir = false;
    if (root < 0) {
      error = a.path + ": " + (errno == ELOOP ? "a component is a symlink" : err_text(errno));
    } else if (::fstat(root, &st) != 0) {
      error = a.path + ": " + err_text(errno);
    } else if (S_ISREG(st.st_mode)) {
      files.push_back({"", static_cast<uint64_t>(st.st_size)});
    } else if (S_ISDIR(st.st_mode)) {
      is_dir = true;
      int d = open_below(a.root, a.rel, O_RDONLY | O_DIRECTORY);
      if (d < 0 || !walk(d, "", files, error)) {
        if (error.empty()) error = a.path + ": " + err_text(errno);
        else error = a.path + "/" + error;
      }
      if (d >= 0) ::close(d);
    } else {
      error = a.path + ": not a regular file or a directory";
    }
    uint64_t size = 0;
    for (const auto& f : files) size += f.size;
    line["sizeBytes"] = size;
    line["files"] = files.size();
    if (error.empty() && size > o.max_artifact)
      error = a.path + ": " + std::to_string(size) + " bytes, over [export] max_artifact_bytes (" +
              std::to_string(o.max_artifact) + ")";
    if (error.empty() && cell_bytes + size > o.max_cell)
      error = a.path + ": the cell's artifacts pass [export] max_cell_bytes (" +
              std::to_string(o.max_cell) + ")";
    if (error.empty()) cell_bytes += size;

    // Local copy (and the hash) in one pass; a second pass per HTTP upload.
    nlohmann::json receipts = nlohmann::json::array();
    std::string manifest, sha;
    std::string local_error;
    const std::string local_root = run_dir.empty() ? "" : run_dir + "/" + a.name;
    if (error.empty() && !run_dir.empty()) {
      int e = mkdirs(is_dir ? local_root : run_dir);
      if (e != 0) local_error = "mkdir " + (is_dir ? local_root : run_dir) + ": " + err_text(e);
    }
    for (const auto& f : files) {
      if (!error.empty()) break;
      int fd = is_dir ? open_below(root, f.rel, O_RDONLY) : open_below(a.root, a.rel, O_RDONLY);
      if (fd < 0) {
        error = a.path + (f.rel.empty() ? "" : "/" + f.rel) + ": " + err_text(errno);
        break;
      }
      int out = -1;
      if (!run_dir.empty() && local_error.empty()) {
        const std::string dest = f.rel.empty() ? local_root : local_root + "/" + f.rel;
        const std::string parent = dest.substr(0, dest.rfind('/'));
        if (int e = is_dir ? mkdirs(parent) : 0; e != 0) local_error = "mkdir " + parent + ": " + err_text(e);
        out = local_error.empty() ? ::open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644) : -1;
        if (out < 0 && local_error.empty()) local_error = "create " + dest + ": " + err_text(errno);
      }
      std::string fsha, ferr, werr;
      bool ok = hash_and_copy(fd, out, fsha, ferr, werr);
      if (!werr.empty() && local_error.empty()) local_error = werr;
      if (out >= 0 && ::close(out) != 0 && local_error.empty()) local_error = "close: " + err_text(errno);
      ::close(fd);
      if (!ok) error = a.path + ": " + ferr;
      if (is_dir) manifest += fsha + "  " + f.rel + "\n";
      else sha = fsha;
    }
    if (is_dir && error.empty()) sha = sha256_text(manifest);
    if (error.empty() && !run_dir.empty())
      receipts.push_back({{"targetKind", "LocalPath"}, {"destination", local_root},
                          {"succeeded", local_error.empty()}, {"error", local_error}});
    if (error.empty() && !o.http_url.empty()) {
      CURL* esc = curl_easy_init();
      std::string base = o.http_url;
      while (!base.empty() && base.back() == '/') base.pop_back();
      base += "/" + escape_path(esc, o.cell) + "/" + escape_path(esc, o.run) + "/" + escape_path(esc, a.name);
      std::string http_error;
      for (const auto& f : files) {
        if (remaining() <= 0) {
          http_error = "timed out ([export] timeout_seconds)";
          break;
        }
        int fd = is_dir ? open_below(root, f.rel, O_RDONLY) : open_below(a.root, a.rel, O_RDONLY);
        if (fd < 0) {
          http_error = "open: " + err_text(errno);
          break;
        }
        const std::string url = f.rel.empty() ? base : base + "/" + escape_path(esc, f.rel);
        http_error = put(url, fd, f.size, remaining());
        ::close(fd);
        if (!http_error.empty()) break;
      }
      curl_easy_cleanup(esc);
      receipts.push_back({{"targetKind", "HTTP"}, {"destination", base},
                          {"succeeded", http_error.empty()}, {"error", http_error}});
    }
    if (root >= 0) ::close(root);
    if (error.empty()) line["sha256"] = sha;
    line["error"] = error;
    line["receipts"] = receipts;
    std::string text = line.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace) + "\n";
    if (::write(1, text.data(), text.size()) < 0) return 1;
  }
  return 0;
}
