// README.md and the manual under docs/ link to each other and to files of the tree: every
// relative link must name a file that exists, inside the repository, so the docs cannot rot.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct Link {
  int line = 0;
  std::string target;
};

// Markdown inline links `[text](target)` and `[text](target "title")`, outside fenced code
// blocks and code spans (a code span may show link syntax without being one).
std::vector<Link> relative_links(const fs::path& file) {
  std::ifstream in(file);
  std::vector<Link> links;
  static const std::regex link_re(R"(\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\))");
  static const std::regex code_span_re("`[^`]*`");
  static const std::regex scheme_re("^[A-Za-z][A-Za-z0-9+.-]*:");
  bool fenced = false;
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.rfind("```", 0) == 0) {
      fenced = !fenced;
      continue;
    }
    if (fenced) continue;
    std::string text = std::regex_replace(line, code_span_re, "");
    for (std::sregex_iterator it(text.begin(), text.end(), link_re), end; it != end; ++it) {
      std::string target = (*it)[1];
      if (std::regex_search(target, scheme_re)) continue;  // a URL
      if (target.rfind('#', 0) == 0) continue;  // an anchor in the same page
      links.push_back({n, target.substr(0, target.find('#'))});
    }
  }
  return links;
}

std::vector<fs::path> documents(const fs::path& root) {
  std::vector<fs::path> docs{root / "README.md"};
  for (const auto& e : fs::directory_iterator(root / "docs"))
    if (e.path().extension() == ".md") docs.push_back(e.path());
  return docs;
}

}  // namespace

TEST_CASE("README.md and docs/ have an index and every relative link names a file of the tree",
          "[docs]") {
  const fs::path root = fs::weakly_canonical(CELLOS_SOURCE_DIR);
  REQUIRE(fs::is_regular_file(root / "docs" / "README.md"));
  int checked = 0;
  for (const auto& doc : documents(root)) {
    for (const auto& link : relative_links(doc)) {
      INFO(fs::relative(doc, root).string() << ":" << link.line << ": " << link.target);
      const fs::path target = fs::weakly_canonical(doc.parent_path() / link.target);
      const std::string rel = fs::relative(target, root).string();
      CHECK((!rel.empty() && rel.rfind("..", 0) != 0));  // inside the repository
      CHECK(fs::exists(target));
      ++checked;
    }
  }
  CHECK(checked > 10);  // the index and README's tour link into docs/
}

TEST_CASE("the link check sees links and skips URLs, anchors and code", "[docs]") {
  const fs::path dir =
      fs::temp_directory_path() / ("cellos-docs-links-" + std::to_string(getpid()));
  fs::create_directories(dir);
  {
    std::ofstream md(dir / "page.md");
    md << "[a](spec.md) and [b](../x/y.md#part \"title\")\n"
       << "[web](https://example.com/) [here](#top) `[not](code.md)`\n"
       << "```\n[fenced](no.md)\n```\n";
  }
  auto links = relative_links(dir / "page.md");
  fs::remove_all(dir);
  REQUIRE(links.size() == 2);
  CHECK(links[0].target == "spec.md");
  CHECK(links[0].line == 1);
  CHECK(links[1].target == "../x/y.md");
}
