#pragma once
/// The result format: how a call's outcome travels, from a worker to the driver (task_done)
/// and from the driver to a process awaiting a nested result (object_ready). A
/// `result_header` followed by the inline value or the encoded error; a value in the store
/// travels as its block's offset. This file is its only writer (`result_writer`) and reader
/// (`settle_from_result`).

#include <coray/detail/runtime/object_state.hpp>
#include <coray/detail/runtime/wire.hpp>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Settles `s` from a result message's header and body (an error gets `note` appended).
inline void settle_from_result(object_state& s, const result_header& h,
                               std::span<const std::byte> body, segment& seg,
                               std::string_view note = {}) {
  switch (h.status) {
    case result_header::value_inline:
      s.set_inline(body);
      break;
    case result_header::value_block:
      s.set_block(seg.at<object_block>(h.block));
      break;
    default: {
      wire_error e = decode<wire_error>(body);
      if (!note.empty()) e.what += note;
      s.set_error(to_exception(e));
      break;
    }
  }
}

/// Where a worker's result or export lists the ids of the refs and actor handles inside its
/// value (result_header::refs, ::actors): after the header and the inline value, if any.
inline std::span<const std::byte> ids_after_value(std::span<const std::byte> payload,
                                                  const result_header& h) {
  const std::size_t at = sizeof h + (h.status == result_header::value_inline ? h.len : 0);
  return at <= payload.size() ? payload.subspan(at) : std::span<const std::byte>{};
}

/// The what() of an outcome's exception, for messages that quote it.
inline std::string exception_what(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an unknown exception";
  }
}

/// Writes the result message of a settled state (a spilled value must be back in the store
/// first). A value in a block is lent: the receiver gets a reference of its own.
class result_writer {
 public:
  result_writer(std::uint64_t id, const object_state& s) : id_(id), s_(s) {
    if (s.st == object_state::status::failed) {
      error_ = describe_exception(s.error(), "");
      body_ = encoded_size(error_);
    } else if (!s.block) {
      body_ = s.bytes.size();
    }
  }
  std::size_t size() const noexcept { return sizeof(result_header) + body_; }
  /// True when the message names a block the receiver must be given a reference to.
  bool lends_block() const noexcept { return s_.st != object_state::status::failed && s_.block; }

  void write(std::byte* out, segment& seg) const {
    result_header h{id_, result_header::value_inline, static_cast<std::uint32_t>(body_), 0, 0, 0};
    if (s_.st == object_state::status::failed) {
      h.status = result_header::error;
      encode_to(std::span<std::byte>(out + sizeof h, body_), error_);
    } else if (s_.block) {
      h.status = result_header::value_block;
      h.block = seg.offset_of(s_.block);
    } else if (body_) {
      std::memcpy(out + sizeof h, s_.bytes.data(), body_);
    }
    std::memcpy(out, &h, sizeof h);
  }

 private:
  std::uint64_t id_;
  const object_state& s_;
  wire_error error_;
  std::size_t body_ = 0;
};

}  // namespace detail
CORAY_END_NAMESPACE
