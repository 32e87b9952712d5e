// What flarecast's C++ shims over libtorch (src/distributed/c10d_shim.cpp,
// src/model/fast/fused_conv.cpp) share: an exception as the one-line message the Rust
// side reads and frees.
#pragma once

#include <c10/util/Exception.h>

#include <cstring>
#include <exception>
#include <string>

namespace flarecast_shim {

// One line: c10 errors without their backtrace, newlines folded; strdup'ed, so the
// caller frees it with free().
inline char* message(const std::exception& e) {
  std::string text;
  if (auto c10e = dynamic_cast<const c10::Error*>(&e)) {
    text = c10e->what_without_backtrace();
  } else {
    text = e.what();
  }
  for (auto& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return strdup(text.c_str());
}

inline char* message(const char* text) { return strdup(text); }

}  // namespace flarecast_shim
