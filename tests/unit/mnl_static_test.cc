// netns/mnl_static.c against libmnl's documented behaviour: layout, alignment, validation,
// nested attributes, batches and the callback runner.
#include <libmnl/libmnl.h>

#include <array>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>

TEST_CASE("mnl: attributes are 4-byte aligned and parse back in order", "[mnl]") {
  alignas(4) std::array<char, 512> buf{};
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  nlh->nlmsg_type = NLMSG_MIN_TYPE;
  CHECK(nlh->nlmsg_len == MNL_NLMSG_HDRLEN);
  auto* extra = static_cast<uint32_t*>(mnl_nlmsg_put_extra_header(nlh, 3));
  CHECK(nlh->nlmsg_len == MNL_NLMSG_HDRLEN + 4);
  (void)extra;
  mnl_attr_put_u8(nlh, 1, 7);
  mnl_attr_put_strz(nlh, 2, "eth0");
  nlattr* nest = mnl_attr_nest_start(nlh, 3);
  mnl_attr_put_u64(nlh, 4, 0x1122334455667788ull);
  mnl_attr_nest_end(nlh, nest);
  CHECK(nlh->nlmsg_len % 4 == 0);
  CHECK((nest->nla_type & NLA_F_NESTED) != 0);
  CHECK(nest->nla_len == MNL_ATTR_HDRLEN + MNL_ATTR_HDRLEN + 8);

  struct Seen {
    int n = 0;
    uint8_t u8 = 0;
    std::string name;
    uint64_t u64 = 0;
  } seen;
  auto cb = [](const nlattr* a, void* data) -> int {
    auto* s = static_cast<Seen*>(data);
    ++s->n;
    switch (mnl_attr_get_type(a)) {
      case 1:
        if (mnl_attr_validate(a, MNL_TYPE_U8) < 0) return MNL_CB_ERROR;
        s->u8 = mnl_attr_get_u8(a);
        break;
      case 2:
        if (mnl_attr_validate(a, MNL_TYPE_NUL_STRING) < 0) return MNL_CB_ERROR;
        s->name = mnl_attr_get_str(a);
        break;
      case 3:
        return mnl_attr_parse_nested(a, [](const nlattr* in, void* d) -> int {
          static_cast<Seen*>(d)->u64 = mnl_attr_get_u64(in);
          return MNL_CB_OK;
        }, data);
    }
    return MNL_CB_OK;
  };
  CHECK(mnl_attr_parse(nlh, 4, cb, &seen) == MNL_CB_OK);
  CHECK(seen.n == 3);
  CHECK(seen.u8 == 7);
  CHECK(seen.name == "eth0");
  CHECK(seen.u64 == 0x1122334455667788ull);
}

TEST_CASE("mnl: validation refuses wrong sizes with ERANGE and unknown types", "[mnl]") {
  alignas(4) std::array<char, 256> buf{};
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  mnl_attr_put_u16(nlh, 1, 5);
  auto* a = static_cast<nlattr*>(mnl_nlmsg_get_payload(nlh));
  errno = 0;
  CHECK(mnl_attr_validate(a, MNL_TYPE_U32) == -1);
  CHECK(errno == ERANGE);
  CHECK(mnl_attr_validate(a, MNL_TYPE_U16) == 0);
  CHECK(mnl_attr_type_valid(a, 0) == -1);
  CHECK(errno == EOPNOTSUPP);
}

TEST_CASE("mnl: a batch stops at its limit and the callback runner reports errors", "[mnl]") {
  alignas(4) std::array<char, 256> buf{};
  mnl_nlmsg_batch* b = mnl_nlmsg_batch_start(buf.data(), 40);
  CHECK(mnl_nlmsg_batch_is_empty(b));
  mnl_nlmsg_put_header(mnl_nlmsg_batch_current(b));
  CHECK(mnl_nlmsg_batch_next(b));  // 16 bytes
  nlmsghdr* big = mnl_nlmsg_put_header(mnl_nlmsg_batch_current(b));
  mnl_attr_put_u64(big, 1, 1);
  mnl_attr_put_u64(big, 2, 2);  // 16 + 24 = 40 > 40 - 16
  CHECK_FALSE(mnl_nlmsg_batch_next(b));
  CHECK(mnl_nlmsg_batch_size(b) == 16);
  mnl_nlmsg_batch_stop(b);

  alignas(4) std::array<char, 64> msg{};
  nlmsghdr* e = mnl_nlmsg_put_header(msg.data());
  e->nlmsg_type = NLMSG_ERROR;
  auto* err = static_cast<nlmsgerr*>(mnl_nlmsg_put_extra_header(e, sizeof(nlmsgerr)));
  err->error = -ENOENT;
  errno = 0;
  CHECK(mnl_cb_run(msg.data(), e->nlmsg_len, 0, 0, nullptr, nullptr) == MNL_CB_ERROR);
  CHECK(errno == ENOENT);
  err->error = 0;
  CHECK(mnl_cb_run(msg.data(), e->nlmsg_len, 0, 0, nullptr, nullptr) == MNL_CB_STOP);
  e->nlmsg_seq = 5;
  CHECK(mnl_cb_run(msg.data(), e->nlmsg_len, 6, 0, nullptr, nullptr) == -1);
  CHECK(errno == EPROTO);
}
