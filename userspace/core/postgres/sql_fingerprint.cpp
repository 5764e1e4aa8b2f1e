#include "sql_fingerprint.h"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

namespace sp {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
constexpr std::size_t kNone = static_cast<std::size_t>(-1);

// ---------------------------------------------------------------------------------------------------------------
// Character classes (PostgreSQL's scan.l)

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_ident_start(unsigned char c) { return is_alpha(c) || c == '_' || c >= 0x80; }
bool is_ident_cont(unsigned char c) { return is_ident_start(c) || is_digit(c) || c == '$'; }
bool is_dolq_cont(unsigned char c) { return is_ident_start(c) || is_digit(c); }
bool is_op_char(unsigned char c) { return std::string_view("~!@#^&|`?+-*/%<>=").find(static_cast<char>(c)) != std::string_view::npos; }
// An operator may end in + or - only if it contains one of these (scan.l: '=-' is two operators, '?-' is one).
bool is_op_nonsql(unsigned char c) { return std::string_view("~!@#^&|`?%").find(static_cast<char>(c)) != std::string_view::npos; }

// Length of the valid UTF-8 sequence starting at s[i] (a byte >= 0x80), 0 if invalid.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c == 0xE0) {
    n = 3, lo = 0xA0;
  } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    n = 3;
  } else if (c == 0xED) {
    n = 3, hi = 0x9F;  // no surrogates
  } else if (c == 0xF0) {
    n = 4, lo = 0x90;
  } else if (c >= 0xF1 && c <= 0xF3) {
    n = 4;
  } else if (c == 0xF4) {
    n = 4, hi = 0x8F;
  } else {
    return 0;
  }
  if (n > s.size() - i) return 0;
  const auto c1 = static_cast<unsigned char>(s[i + 1]);
  if (c1 < lo || c1 > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
  }
  return n;
}

// Appends `s` keeping valid UTF-8, replacing invalid bytes and control characters by U+FFFD, optionally lower-casing
// ASCII letters (PostgreSQL folds only ASCII in UTF-8 databases).
void append_clean(std::string& out, std::string_view s, bool lower) {
  out.reserve(out.size() + s.size());  // U+FFFD aside, the output is as long as the input
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7F) {
        out += kReplacement;
      } else {
        out += static_cast<char>(lower && c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
      }
      ++i;
      continue;
    }
    const std::size_t n = utf8_length(s, i);
    if (n == 0) {
      out += kReplacement;
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Lexer. A literal token keeps no text at all: nothing of a literal's payload survives the lexer.

enum class Kind : std::uint8_t {
  Word,         // unquoted identifier or keyword, lower-cased
  QuotedIdent,  // "..." or u&"...", quotes kept
  Literal,      // any constant or $n parameter
  Op,
  LParen,
  RParen,
  LBracket,
  RBracket,
  Comma,
  Semicolon,
  Dot,
  Cast,
};

struct Token {
  Kind kind = Kind::Op;
  std::string text;     // Word, QuotedIdent, Op only
  std::size_t end = 0;  // offset just past the token in the input
};

class Lexer {
 public:
  // Sized once for the statement (a token per 4 bytes is more than SQL ever has): growing it token by token moved
  // every token again at each doubling, a tenth of the fingerprint's time on Synapse's 1-2 KB statements.
  explicit Lexer(std::string_view s) : s_(s), n_(s.size()) { tokens_.reserve(n_ / 4 + 4); }

  std::vector<Token> run() {
    std::size_t i = 0;
    while (i < n_) i = next(i);
    return std::move(tokens_);
  }
  // Input ended inside a literal, comment or quoted identifier.
  bool unterminated() const { return unterminated_; }

 private:
  bool at(std::size_t i, char c) const { return i < n_ && s_[i] == c; }
  unsigned char byte(std::size_t i) const { return i < n_ ? static_cast<unsigned char>(s_[i]) : 0; }

  void push(Kind kind, std::size_t end, std::string text = {}) {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    t.end = end;
    tokens_.push_back(std::move(t));
  }

  std::size_t next(std::size_t i) {
    const unsigned char c = byte(i);
    const unsigned char c1 = byte(i + 1);
    if (is_space(c) || c < 0x20 || c == 0x7F) return i + 1;  // other control characters: nothing worth keeping
    if (c == '-' && c1 == '-') return skip_line_comment(i);
    if (c == '/' && c1 == '*') return skip_block_comment(i);
    if (c == '\'') return literal(quoted(i + 1, false));
    if ((c == 'e' || c == 'E') && c1 == '\'') return literal(quoted(i + 2, true));
    if ((c == 'b' || c == 'B' || c == 'x' || c == 'X' || c == 'n' || c == 'N') && c1 == '\'') {
      return literal(quoted(i + 2, false));
    }
    if ((c == 'u' || c == 'U') && c1 == '&' && at(i + 2, '\'')) return literal(quoted(i + 3, false));
    if ((c == 'u' || c == 'U') && c1 == '&' && at(i + 2, '"')) return quoted_ident(i + 2, "u&");
    if (c == '"') return quoted_ident(i, "");
    if (is_ident_start(c)) return word(i);
    if (is_digit(c) || (c == '.' && is_digit(c1))) return literal(number(i));
    if (c == '$') return dollar(i);
    if (c == ':') {
      if (c1 == ':') {
        push(Kind::Cast, i + 2);
        return i + 2;
      }
      push(Kind::Op, i + 1, ":");
      return i + 1;
    }
    switch (c) {
      case ',': push(Kind::Comma, i + 1); return i + 1;
      case '(': push(Kind::LParen, i + 1); return i + 1;
      case ')': push(Kind::RParen, i + 1); return i + 1;
      case '[': push(Kind::LBracket, i + 1); return i + 1;
      case ']': push(Kind::RBracket, i + 1); return i + 1;
      case ';': push(Kind::Semicolon, i + 1); return i + 1;
      case '.': push(Kind::Dot, i + 1); return i + 1;
      default: break;
    }
    if (is_op_char(c)) return op(i);
    push(Kind::Op, i + 1, std::string(1, static_cast<char>(c)));  // { } \ : harmless single characters
    return i + 1;
  }

  std::size_t literal(std::size_t end) {
    push(Kind::Literal, end);
    return end;
  }

  std::size_t skip_line_comment(std::size_t i) {
    while (i < n_ && s_[i] != '\n' && s_[i] != '\r') ++i;
    return i;
  }

  std::size_t skip_block_comment(std::size_t i) {
    std::size_t depth = 0;
    while (i < n_) {
      if (s_[i] == '/' && at(i + 1, '*')) {
        ++depth;
        i += 2;
      } else if (s_[i] == '*' && at(i + 1, '/')) {
        i += 2;
        if (--depth == 0) return i;
      } else {
        ++i;
      }
    }
    unterminated_ = true;
    return n_;
  }

  // Body of a '...' literal starting at i (just past the opening quote). '' is a quote; with `escapes` (E'...')
  // a backslash escapes the next byte. Two literals separated by whitespace containing a newline are one literal,
  // continued in the same mode. Returns the offset past the literal, n_ if unterminated.
  std::size_t quoted(std::size_t i, bool escapes) {
    for (;;) {
      while (i < n_) {
        const char c = s_[i];
        if (escapes && c == '\\') {
          i += 2;
        } else if (c == '\'') {
          if (!at(i + 1, '\'')) break;
          i += 2;
        } else {
          ++i;
        }
      }
      if (i >= n_) {
        unterminated_ = true;
        return n_;
      }
      const std::size_t after = i + 1;
      const std::size_t next_quote = continuation(after);
      if (next_quote == kNone) return after;
      i = next_quote + 1;
    }
  }

  // If whitespace (and -- comments) with at least one newline leads from j to another quote, that quote's offset.
  std::size_t continuation(std::size_t j) const {
    bool newline = false;
    while (j < n_) {
      const char c = s_[j];
      if (c == '\n' || c == '\r') {
        newline = true;
        ++j;
      } else if (c == ' ' || c == '\t' || c == '\f' || c == '\v') {
        ++j;
      } else if (c == '-' && at(j + 1, '-')) {
        while (j < n_ && s_[j] != '\n' && s_[j] != '\r') ++j;
      } else {
        break;
      }
    }
    return newline && at(j, '\'') ? j : kNone;
  }

  std::size_t quoted_ident(std::size_t quote, std::string_view prefix) {
    std::size_t i = quote + 1;
    while (i < n_) {
      if (s_[i] == '"') {
        if (!at(i + 1, '"')) break;
        i += 2;
      } else {
        ++i;
      }
    }
    if (i >= n_) {  // dropped: a cut identifier is as useless as it is unusual
      unterminated_ = true;
      return n_;
    }
    std::string text(prefix);
    append_clean(text, s_.substr(quote, i + 1 - quote), false);
    push(Kind::QuotedIdent, i + 1, std::move(text));
    return i + 1;
  }

  std::size_t word(std::size_t i) {
    std::size_t j = i + 1;
    while (j < n_ && is_ident_cont(byte(j))) ++j;
    std::string text;
    append_clean(text, s_.substr(i, j - i), true);
    push(Kind::Word, j, std::move(text));
    return j;
  }

  std::size_t ident_run(std::size_t j) const {
    while (j < n_ && is_ident_cont(byte(j))) ++j;
    return j;
  }

  // Numbers of every form, and any identifier characters glued to them (PG16 rejects "123abc" as trailing junk,
  // older servers read it as 123 followed by an identifier): swallowing them never leaves half a value behind.
  std::size_t number(std::size_t i) {
    const bool radix = s_[i] == '0' && (at(i + 1, 'x') || at(i + 1, 'X'));
    std::size_t j = i;
    if (s_[j] != '.') j = ident_run(j);
    if (at(j, '.') && !at(j + 1, '.')) j = ident_run(j + 1);  // "1..5" is 1 followed by ..5 (PL/pgSQL ranges)
    if (!radix && j > i && (s_[j - 1] == 'e' || s_[j - 1] == 'E') && (at(j, '+') || at(j, '-')) &&
        is_digit(byte(j + 1))) {
      j = ident_run(j + 1);
    }
    return j;
  }

  // $1 parameter, $$ / $tag$ dollar quote, or a lone '$'.
  std::size_t dollar(std::size_t i) {
    const unsigned char c1 = byte(i + 1);
    if (is_digit(c1)) return literal(ident_run(i + 1));
    if (c1 != '$' && !is_ident_start(c1)) {
      push(Kind::Op, i + 1, "$");
      return i + 1;
    }
    std::size_t j = i + 1;
    while (j < n_ && is_dolq_cont(byte(j))) ++j;
    if (!at(j, '$')) {
      if (j >= n_) {
        // "$ta" at the very end may be the start of a cut "$tag$": one token, so that truncation can drop it whole.
        push(Kind::Op, n_, "$");
        return n_;
      }
      push(Kind::Op, i + 1, "$");  // scan.l's dolqfailed: '$' alone, the rest rescanned
      return i + 1;
    }
    const std::string_view tag = s_.substr(i, j + 1 - i);
    const std::size_t close = find_dollar_close(j + 1, tag);
    if (close == kNone) {
      unterminated_ = true;
      return literal(n_);
    }
    return literal(close + tag.size());
  }

  // First occurrence of `tag` from `k`, found the way scan.l's xdolq state finds it, in linear time: every '$' may
  // open a delimiter, and a delimiter that does not match gives its closing '$' back.
  std::size_t find_dollar_close(std::size_t k, std::string_view tag) const {
    while (k < n_) {
      if (s_[k] != '$') {
        ++k;
        continue;
      }
      std::size_t m = k + 1;
      while (m < n_ && is_dolq_cont(byte(m))) ++m;
      if (at(m, '$') && m + 1 - k == tag.size() && s_.compare(k, tag.size(), tag) == 0) return k;
      k = m;
    }
    return kNone;
  }

  std::size_t op(std::size_t i) {
    std::size_t j = i;
    std::size_t first_nonsql = kNone;
    while (j < n_ && is_op_char(byte(j))) {
      // A comment start inside an operator ends the operator (the first character cannot start one here).
      if (j > i && ((s_[j] == '-' && at(j + 1, '-')) || (s_[j] == '/' && at(j + 1, '*')))) break;
      if (first_nonsql == kNone && is_op_nonsql(byte(j))) first_nonsql = j - i;
      ++j;
    }
    std::size_t len = j - i;
    while (len > 1 && (s_[i + len - 1] == '+' || s_[i + len - 1] == '-')) {
      if (first_nonsql != kNone && first_nonsql < len - 1) break;
      --len;
    }
    push(Kind::Op, i + len, std::string(s_.substr(i, len)));
    // What was trimmed is all '+' and '-' with no other operator character before it, so rescanning it would trim
    // it again one character at a time (quadratic on "=+++..."): it is that many one-character operators.
    for (std::size_t k = i + len; k < j; ++k) push(Kind::Op, k + 1, std::string(1, s_[k]));
    return j;
  }

  std::string_view s_;
  std::size_t n_;
  std::vector<Token> tokens_;
  bool unterminated_ = false;
};

// ---------------------------------------------------------------------------------------------------------------
// Token clean-up between lexing and rendering.

bool is_word(const std::vector<Token>& t, std::size_t i, std::string_view w) {
  return i < t.size() && t[i].kind == Kind::Word && t[i].text == w;
}

template <std::size_t N>
bool in_set(std::string_view w, const std::array<std::string_view, N>& set) {
  return std::find(set.begin(), set.end(), w) != set.end();
}

// Words after which a sign starts a value (`WHERE x > -1 AND y < -2`, `SELECT -1`) instead of subtracting.
constexpr std::array<std::string_view, 22> kSignContextWords = {
    "select", "where",  "and",       "or",     "not",  "when",     "then", "else", "limit", "offset", "between",
    "returning", "having", "on", "case", "distinct", "all", "any", "some", "by", "return", "like"};

// true/false become literals (except in IS [NOT] TRUE), and a unary sign before a literal joins it.
std::vector<Token> fold_values(std::vector<Token> in) {
  std::vector<Token> out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    Token& t = in[i];
    if (t.kind == Kind::Word && (t.text == "true" || t.text == "false")) {
      const std::size_t m = out.size();
      const bool after_is = (m >= 1 && is_word(out, m - 1, "is")) ||
                            (m >= 2 && is_word(out, m - 1, "not") && is_word(out, m - 2, "is"));
      if (!after_is) {
        t.kind = Kind::Literal;
        t.text.clear();
      }
    }
    if (t.kind == Kind::Op && (t.text == "-" || t.text == "+") && i + 1 < in.size() &&
        in[i + 1].kind == Kind::Literal) {
      bool unary = true;
      if (!out.empty()) {
        const Token& p = out.back();
        switch (p.kind) {
          case Kind::QuotedIdent:
          case Kind::Literal:
          case Kind::RParen:
          case Kind::RBracket: unary = false; break;
          case Kind::Word: unary = in_set(p.text, kSignContextWords); break;
          default: break;
        }
      }
      if (unary) continue;
    }
    out.push_back(std::move(t));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Structure shared by rendering and analysis: matching brackets and constant-only groups.

class Structure {
 public:
  explicit Structure(const std::vector<Token>& t) : match_(t.size(), t.size()), nonconst_(t.size() + 1, 0) {
    // Matching close of every ( and [; unclosed ones match the end of their statement. A ';' closes everything.
    std::vector<std::size_t> stack;
    for (std::size_t i = 0; i < t.size(); ++i) {
      const Kind k = t[i].kind;
      if (k == Kind::LParen || k == Kind::LBracket) {
        stack.push_back(i);
      } else if (k == Kind::RParen || k == Kind::RBracket) {
        const Kind open = k == Kind::RParen ? Kind::LParen : Kind::LBracket;
        if (!stack.empty() && t[stack.back()].kind == open) {
          match_[stack.back()] = i;
          stack.pop_back();
        }
      } else if (k == Kind::Semicolon) {
        for (const std::size_t o : stack) match_[o] = i;
        stack.clear();
      }
    }
    // Prefix counts of tokens that cannot be part of a constant list: literals, commas, brackets, casts with their
    // type name, NULL/DEFAULT and ARRAY are constant.
    for (std::size_t i = 0; i < t.size(); ++i) {
      bool constant = false;
      switch (t[i].kind) {
        case Kind::Literal:
        case Kind::Comma:
        case Kind::LParen:
        case Kind::RParen:
        case Kind::LBracket:
        case Kind::RBracket:
        case Kind::Cast: constant = true; break;
        case Kind::Word:
          constant = t[i].text == "null" || t[i].text == "default" || t[i].text == "array" ||
                     (i > 0 && t[i - 1].kind == Kind::Cast);
          break;
        default: break;
      }
      nonconst_[i + 1] = nonconst_[i] + (constant ? 0 : 1);
    }
  }

  // Index of the token closing the group opened at `open`; >= end of statement when unclosed.
  std::size_t match(std::size_t open) const { return match_[open]; }
  // Only constants strictly between `open` and `close`.
  bool constant_between(std::size_t open, std::size_t close) const { return nonconst_[close] == nonconst_[open + 1]; }

 private:
  std::vector<std::size_t> match_;
  std::vector<std::size_t> nonconst_;
};

// ---------------------------------------------------------------------------------------------------------------
// Rendering: spaces come from token kinds only.

enum class PieceKind : std::uint8_t { Word, QuotedIdent, Literal, Op, LParen, RParen, LBracket, RBracket, Comma, Dot, Cast, Ellipsis };

// Words followed by a space before '(' (others are function names: count(*), coalesce(x, ?)).
constexpr std::array<std::string_view, 44> kSpacedKeywords = {
    "in",      "values", "as",        "and",       "or",       "not",      "exists",    "on",     "using",
    "from",    "join",   "where",     "select",    "then",     "else",     "when",      "over",   "between",
    "like",    "ilike",  "is",        "lateral",   "returning", "set",     "conflict",  "by",     "with",
    "union",   "intersect", "except", "all",       "recursive", "materialized", "do",   "table",  "key",
    "references", "check", "unique",  "case",      "distinct", "having",  "limit",     "offset"};

class Renderer {
 public:
  void token(const Token& t) {
    switch (t.kind) {
      case Kind::Word: piece(PieceKind::Word, PieceKind::Word, t.text); break;
      case Kind::QuotedIdent: piece(PieceKind::QuotedIdent, PieceKind::QuotedIdent, t.text); break;
      case Kind::Literal: piece(PieceKind::Literal, PieceKind::Literal, "?"); break;
      case Kind::Op: piece(PieceKind::Op, PieceKind::Op, t.text); break;
      case Kind::LParen: piece(PieceKind::LParen, PieceKind::LParen, "("); break;
      case Kind::RParen: piece(PieceKind::RParen, PieceKind::RParen, ")"); break;
      case Kind::LBracket: piece(PieceKind::LBracket, PieceKind::LBracket, "["); break;
      case Kind::RBracket: piece(PieceKind::RBracket, PieceKind::RBracket, "]"); break;
      case Kind::Comma: piece(PieceKind::Comma, PieceKind::Comma, ","); break;
      case Kind::Dot: piece(PieceKind::Dot, PieceKind::Dot, "."); break;
      case Kind::Cast: piece(PieceKind::Cast, PieceKind::Cast, "::"); break;
      case Kind::Semicolon: break;  // statements are joined by the caller
    }
  }

  // A collapsed group: spaced like its opening bracket, followed like its closing one.
  void group(PieceKind open, PieceKind close, std::string_view text) { piece(open, close, text); }
  void ellipsis() { piece(PieceKind::Ellipsis, PieceKind::Ellipsis, "..."); }

  const std::string& text() const { return out_; }
  const std::vector<std::size_t>& ends() const { return ends_; }

 private:
  void piece(PieceKind before, PieceKind after, std::string_view text) {
    if (has_prev_ && space_between(before, text)) out_ += ' ';
    out_ += text;
    ends_.push_back(out_.size());
    // INSERT INTO name (columns), COPY name (columns), WITH name (columns) AS: a plain name followed by a spaced '('.
    if (before == PieceKind::Word && (text == "into" || text == "copy" || text == "with" || text == "recursive")) {
      into_ = Into::ExpectName;
    } else if (into_ == Into::ExpectName && (before == PieceKind::Word || before == PieceKind::QuotedIdent)) {
      into_ = Into::HaveName;
    } else if (into_ == Into::HaveName && before == PieceKind::Dot) {
      into_ = Into::ExpectName;
    } else {
      into_ = Into::None;
    }
    has_prev_ = true;
    prev_ = after;
    prev_spaced_keyword_ = after == PieceKind::Word && in_set(text, kSpacedKeywords);
  }

  bool space_between(PieceKind cur, std::string_view /*text*/) const {
    if (prev_ == PieceKind::LParen || prev_ == PieceKind::LBracket || prev_ == PieceKind::Dot ||
        prev_ == PieceKind::Cast) {
      return false;
    }
    switch (cur) {
      case PieceKind::Comma:
      case PieceKind::RParen:
      case PieceKind::RBracket:
      case PieceKind::Dot:
      case PieceKind::Cast: return false;
      case PieceKind::LBracket:
        return !(prev_ == PieceKind::Word || prev_ == PieceKind::QuotedIdent || prev_ == PieceKind::RParen ||
                 prev_ == PieceKind::RBracket || prev_ == PieceKind::Literal);
      case PieceKind::LParen:
        if (prev_ == PieceKind::Word) return prev_spaced_keyword_ || into_ == Into::HaveName;
        if (prev_ == PieceKind::QuotedIdent) return into_ == Into::HaveName;
        return true;
      default: return true;
    }
  }

  enum class Into : std::uint8_t { None, ExpectName, HaveName };

  std::string out_;
  std::vector<std::size_t> ends_;  // offsets just past each piece: where the text may be cut
  bool has_prev_ = false;
  PieceKind prev_ = PieceKind::Op;
  bool prev_spaced_keyword_ = false;
  Into into_ = Into::None;
};

// Renders tokens [b, e) of one statement, collapsing constant lists.
void render_statement(const std::vector<Token>& t, const Structure& st, std::size_t b, std::size_t e, Renderer& r) {
  std::vector<bool> values_close(e - b, false);
  std::size_t k = b;
  while (k < e) {
    const Token& tok = t[k];
    const bool after_in = k > b && is_word(t, k - 1, "in");
    const bool after_array = k > b && is_word(t, k - 1, "array");
    if ((tok.kind == Kind::LParen && after_in) || (tok.kind == Kind::LBracket && after_array)) {
      const std::size_t close = st.match(k);
      if (st.constant_between(k, std::min(close, e))) {
        const bool paren = tok.kind == Kind::LParen;
        const bool closed = close < e;
        r.group(paren ? PieceKind::LParen : PieceKind::LBracket, paren ? PieceKind::RParen : PieceKind::RBracket,
                paren ? (closed ? "(...)" : "(...") : (closed ? "[...]" : "[..."));
        k = closed ? close + 1 : e;
        continue;
      }
    }
    if (tok.kind == Kind::LParen && k > b && is_word(t, k - 1, "values")) {
      const std::size_t close = st.match(k);
      if (close < e) values_close[close - b] = true;
    }
    r.token(tok);
    ++k;
    if (tok.kind == Kind::RParen && values_close[k - 1 - b]) {
      // VALUES (...), (...), ...: keep the first row's shape, replace the others by one ", ...".
      bool skipped = false;
      while (k + 1 < e && t[k].kind == Kind::Comma && t[k + 1].kind == Kind::LParen) {
        const std::size_t close = st.match(k + 1);
        k = close < e ? close + 1 : e;
        skipped = true;
      }
      if (skipped) {
        r.token(Token{Kind::Comma, {}, 0});
        r.ellipsis();
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Verb and table.

struct Analysis {
  std::string verb = "other";
  std::string table;
};

// A table label: unquoted, lower-cased, [a-z0-9_]{1,63}, else "other".
std::string table_label(const Token& tok) {
  std::string name;
  if (tok.kind == Kind::Word) {
    name = tok.text;
  } else {
    const std::string_view q = tok.text;
    if (q.size() < 2 || q.front() != '"' || q.back() != '"') return "other";  // u&"..."
    for (std::size_t i = 1; i + 1 < q.size(); ++i) {
      const char c = q[i];
      name += (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
      if (c == '"') ++i;  // "" is one quote
    }
  }
  if (name.empty() || name.size() > kSqlTableMaxLength) return "other";
  for (const char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return "other";
  }
  return name;
}

bool is_name(const std::vector<Token>& t, std::size_t i, std::size_t e) {
  return i < e && (t[i].kind == Kind::Word || t[i].kind == Kind::QuotedIdent);
}

// Clauses that end a FROM list.
constexpr std::array<std::string_view, 16> kFromEnd = {"where",     "group",  "having", "window",    "order",  "limit",
                                                       "offset",    "fetch",  "for",    "union",     "intersect",
                                                       "except",    "returning", "into", "on",       "using"};

class Analyzer {
 public:
  Analyzer(const std::vector<Token>& t, const Structure& st) : t_(t), st_(st) {}

  Analysis statement(std::size_t i, std::size_t e, int depth) const {
    Analysis a;
    if (depth > kMaxDepth || !spend()) return a;
    while (i < e && t_[i].kind == Kind::LParen) {  // (SELECT ...) UNION ...
      e = std::min(e, st_.match(i));
      ++i;
    }
    if (i >= e || t_[i].kind != Kind::Word) return a;
    const std::string& w = t_[i].text;
    std::size_t j = i + 1;
    if (w == "select") {
      a.verb = "SELECT";
      a.table = select_table(j, e, depth);
    } else if (w == "insert") {
      a.verb = "INSERT";
      if (word(j, e, "into")) ++j;
      a.table = name_at(j, e);
    } else if (w == "update") {
      a.verb = "UPDATE";
      if (word(j, e, "only")) ++j;
      a.table = name_at(j, e);
    } else if (w == "delete") {
      a.verb = "DELETE";
      if (word(j, e, "from")) ++j;
      if (word(j, e, "only")) ++j;
      a.table = name_at(j, e);
    } else if (w == "with") {
      return with_statement(j, e, depth);
    } else if (w == "begin" || (w == "start" && word(j, e, "transaction"))) {
      a.verb = "BEGIN";
    } else if (w == "commit" || w == "end") {
      a.verb = "COMMIT";
    } else if (w == "rollback" || w == "abort") {
      if (word(j, e, "work") || word(j, e, "transaction")) ++j;
      if (!word(j, e, "to")) a.verb = "ROLLBACK";  // ROLLBACK TO SAVEPOINT ends no transaction
    } else if (w == "lock" || w == "truncate") {
      if (word(j, e, "table")) ++j;
      if (word(j, e, "only")) ++j;
      a.table = name_at(j, e);
    } else if (w == "copy") {
      a.table = name_at(j, e);
    }
    return a;
  }

 private:
  static constexpr int kMaxDepth = 16;
  // Each call scans at most the statement once; nested WITHs whose CTEs resolve through one another could otherwise
  // make the calls multiply level by level. The budget keeps the whole analysis linear.
  static constexpr int kMaxCalls = 256;

  bool spend() const { return ++calls_ <= kMaxCalls; }

  bool word(std::size_t i, std::size_t e, std::string_view w) const { return i < e && is_word(t_, i, w); }

  // Last component of a possibly qualified name at i; "" if there is none.
  std::string name_at(std::size_t i, std::size_t e) const {
    if (!is_name(t_, i, e)) return "";
    return table_label(t_[name_end(i, e) - 1]);
  }

  // Past a possibly qualified name at i.
  std::size_t name_end(std::size_t i, std::size_t e) const {
    std::size_t j = i + 1;
    while (j + 1 < e && t_[j].kind == Kind::Dot && is_name(t_, j + 1, e)) j += 2;
    return j;
  }

  std::size_t skip_group(std::size_t open) const { return st_.match(open) + 1; }

  std::string select_table(std::size_t i, std::size_t e, int depth) const {
    std::size_t k = i;
    while (k < e) {
      const Kind kind = t_[k].kind;
      if (kind == Kind::LParen || kind == Kind::LBracket) {
        k = skip_group(k);
        continue;
      }
      if (word(k, e, "from") && !(k > i && is_word(t_, k - 1, "distinct"))) return from_list(k + 1, e, depth);
      ++k;
    }
    return "";
  }

  // The first table of a FROM list: items are separated by ',' and JOIN; table functions are skipped.
  std::string from_list(std::size_t k, std::size_t e, int depth) const {
    while (k < e) {
      while (word(k, e, "only") || word(k, e, "lateral")) ++k;
      if (k >= e) break;
      if (t_[k].kind == Kind::LParen) {
        std::string inner = paren_item(k + 1, std::min(st_.match(k), e), depth + 1);
        if (!inner.empty()) return inner;
      } else if (is_name(t_, k, e) && !(t_[k].kind == Kind::Word && in_set(t_[k].text, kFromEnd))) {
        const std::size_t after = name_end(k, e);
        if (!(after < e && t_[after].kind == Kind::LParen)) return name_at(k, e);
      }
      // Next item.
      bool found = false;
      while (k < e && !found) {
        const Token& tok = t_[k];
        if (tok.kind == Kind::LParen || tok.kind == Kind::LBracket) {
          k = skip_group(k);
          continue;
        }
        if (tok.kind == Kind::Word && in_set(tok.text, kFromEnd)) return "";
        found = tok.kind == Kind::Comma || (tok.kind == Kind::Word && tok.text == "join");
        ++k;
      }
    }
    return "";
  }

  // Inside a parenthesised FROM item: a subquery, or a parenthesised join.
  std::string paren_item(std::size_t i, std::size_t e, int depth) const {
    if (depth > kMaxDepth || !spend()) return "";
    std::size_t j = i;
    while (j < e && t_[j].kind == Kind::LParen) ++j;
    if (j < e && t_[j].kind == Kind::Word &&
        (t_[j].text == "select" || t_[j].text == "with" || t_[j].text == "values" || t_[j].text == "table")) {
      return statement(i, e, depth).table;
    }
    return from_list(i, e, depth);
  }

  // WITH [RECURSIVE] name [(cols)] AS [[NOT] MATERIALIZED] (body) [, ...] main-statement
  Analysis with_statement(std::size_t j, std::size_t e, int depth) const {
    struct Cte {
      std::string name;
      std::size_t begin;
      std::size_t end;
    };
    std::vector<Cte> ctes;
    if (word(j, e, "recursive")) ++j;
    for (;;) {
      if (!is_name(t_, j, e)) return {};
      Cte cte{table_label(t_[j]), 0, 0};
      ++j;
      if (j < e && t_[j].kind == Kind::LParen) j = skip_group(j);
      if (!word(j, e, "as")) return {};
      ++j;
      if (word(j, e, "not")) ++j;
      if (word(j, e, "materialized")) ++j;
      if (!(j < e && t_[j].kind == Kind::LParen)) return {};
      cte.begin = j + 1;
      cte.end = std::min(st_.match(j), e);
      j = skip_group(j);
      ctes.push_back(std::move(cte));
      if (j < e && t_[j].kind == Kind::Comma) {
        ++j;
        continue;
      }
      break;
    }
    Analysis main = statement(j, e, depth + 1);
    // The main statement reads a CTE: report the table that CTE reads (a few hops at most).
    for (int hop = 0; hop < 4 && !main.table.empty(); ++hop) {
      const auto it = std::find_if(ctes.begin(), ctes.end(), [&](const Cte& c) { return c.name == main.table; });
      if (it == ctes.end()) break;
      main.table = statement(it->begin, it->end, depth + 1).table;
    }
    return main;
  }

  const std::vector<Token>& t_;
  const Structure& st_;
  mutable int calls_ = 0;
};

}  // namespace

std::uint64_t sql_fingerprint_id(std::string_view text) {
  std::uint64_t h = 14695981039346656037ULL;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

namespace {

// libpq sends a C string: a NUL ends the statement, and then the statement was not cut.
void end_at_nul(std::string_view& sql, bool& input_truncated) {
  if (const std::size_t nul = sql.find('\0'); nul != std::string_view::npos) {
    sql = sql.substr(0, nul);
    input_truncated = false;
  }
}

}  // namespace

std::string sql_verb(std::string_view sql, bool input_truncated) {
  std::string_view text = sql;
  bool cut = input_truncated;
  end_at_nul(text, cut);
  std::size_t i = 0;
  while (i < text.size() && is_space(static_cast<unsigned char>(text[i]))) ++i;
  const std::size_t b = i;
  while (i < text.size() && i - b <= 6 && is_alpha(static_cast<unsigned char>(text[i]))) ++i;
  // The word must be whole: followed by a character that cannot continue it or start a comment or an operator, or
  // by the end of a statement that was not cut (a cut one may end in the middle of a word).
  const bool whole = i < text.size() ? (is_space(static_cast<unsigned char>(text[i])) || text[i] == '(' ||
                                        text[i] == ';' || text[i] == '*')
                                     : !cut;
  if (whole && i - b >= 3 && i - b <= 6) {
    char w[7] = {};
    for (std::size_t k = b; k < i; ++k) w[k - b] = static_cast<char>(text[k] | 0x20);  // ASCII letters: lower case
    const std::string_view word(w, i - b);
    if (word == "select") return "SELECT";
    if (word == "insert") return "INSERT";
    if (word == "update") return "UPDATE";
    if (word == "delete") return "DELETE";
    if (word == "begin") return "BEGIN";
    if (word == "commit" || word == "end") return "COMMIT";
  }
  return fingerprint_sql(sql, input_truncated).verb;
}

SqlFingerprint fingerprint_sql(std::string_view sql, bool input_truncated) {
  end_at_nul(sql, input_truncated);

  Lexer lexer(sql);
  std::vector<Token> raw = lexer.run();
  SqlFingerprint fp;
  fp.truncated = input_truncated || lexer.unterminated();
  // The last word or operator of a cut input may itself be cut ("room_i", "<" of "<=", "E" of "E'..."): drop it.
  // A literal there is a '?' whether complete or not; punctuation cannot be cut.
  if (input_truncated && !raw.empty() && raw.back().end == sql.size() &&
      (raw.back().kind == Kind::Word || raw.back().kind == Kind::Op)) {
    raw.pop_back();
  }
  const std::vector<Token> tokens = fold_values(std::move(raw));
  const Structure structure(tokens);

  // Statements.
  std::vector<std::pair<std::size_t, std::size_t>> statements;
  std::size_t begin = 0;
  for (std::size_t i = 0; i <= tokens.size(); ++i) {
    if (i == tokens.size() || tokens[i].kind == Kind::Semicolon) {
      if (i > begin) statements.emplace_back(begin, i);
      begin = i + 1;
    }
  }

  if (!statements.empty()) {
    const Analysis a = Analyzer(tokens, structure).statement(statements[0].first, statements[0].second, 0);
    fp.verb = a.verb;
    fp.table = a.table;
  } else {
    fp.verb = "other";
  }

  std::string text;
  std::vector<std::size_t> ends;
  std::string previous;
  bool repeating = false;
  for (std::size_t s = 0; s < statements.size(); ++s) {
    const auto [b, e] = statements[s];
    Renderer r;
    render_statement(tokens, structure, b, e, r);
    // A run of identical statements (psycopg2's execute_batch) is kept once; a cut last one that starts like the
    // one before belongs to the run.
    const bool cut_tail = fp.truncated && e == tokens.size();
    if (s > 0 && (r.text() == previous || (cut_tail && previous.starts_with(r.text())))) {
      if (!repeating) {
        text += "; ...";
        ends.push_back(text.size());
        repeating = true;
      }
      continue;
    }
    repeating = false;
    if (!text.empty()) {
      text += ";";
      ends.push_back(text.size());
      text += " ";
    }
    const std::size_t base = text.size();
    text += r.text();
    for (const std::size_t end : r.ends()) ends.push_back(base + end);
    previous = r.text();
  }

  if (fp.truncated || text.size() > kSqlFingerprintMaxText) {
    std::size_t keep = text.size();
    if (keep + kSqlTruncatedMarker.size() > kSqlFingerprintMaxText) {
      keep = 0;
      for (const std::size_t end : ends) {
        if (end + kSqlTruncatedMarker.size() <= kSqlFingerprintMaxText) keep = end;
      }
      fp.truncated = true;
    }
    text.resize(keep);
    text += keep == 0 ? kSqlTruncatedMarker.substr(1) : kSqlTruncatedMarker;
  }
  fp.text = std::move(text);
  fp.id = sql_fingerprint_id(fp.text);
  return fp;
}

}  // namespace sp
