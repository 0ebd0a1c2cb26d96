/*
 * The part of libmnl's API that libnftnl and netns/ call, implemented here so the reactor can
 * link statically: Debian ships libnftnl.a but libmnl only as a shared library, and linking
 * glibc dynamically for it cost ~15% of a `cellos-reactor run` (bench/README.md). libmnl's API
 * has been frozen since 1.0 (2010); the declarations come from the system's <libmnl/libmnl.h>,
 * so a signature drift is a compile error. Semantics follow libmnl's documentation: the same
 * errno values, the same alignment, the same callback return codes.
 */
#include <errno.h>
#include <libmnl/libmnl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct mnl_socket {
  int fd;
  struct sockaddr_nl addr;
};

/* Sockets */

struct mnl_socket* mnl_socket_open2(int bus, int flags) {
  struct mnl_socket* nl = calloc(1, sizeof *nl);
  if (nl == NULL) return NULL;
  nl->fd = socket(AF_NETLINK, SOCK_RAW | flags, bus);
  if (nl->fd < 0) {
    free(nl);
    return NULL;
  }
  return nl;
}

struct mnl_socket* mnl_socket_open(int bus) { return mnl_socket_open2(bus, 0); }

int mnl_socket_bind(struct mnl_socket* nl, unsigned int groups, pid_t pid) {
  nl->addr.nl_family = AF_NETLINK;
  nl->addr.nl_groups = groups;
  nl->addr.nl_pid = (unsigned)pid;
  if (bind(nl->fd, (struct sockaddr*)&nl->addr, sizeof nl->addr) < 0) return -1;
  socklen_t len = sizeof nl->addr;
  if (getsockname(nl->fd, (struct sockaddr*)&nl->addr, &len) < 0) return -1;
  if (len != sizeof nl->addr || nl->addr.nl_family != AF_NETLINK) {
    errno = EINVAL;
    return -1;
  }
  return 0;
}

int mnl_socket_close(struct mnl_socket* nl) {
  int ret = close(nl->fd);
  free(nl);
  return ret;
}

int mnl_socket_get_fd(const struct mnl_socket* nl) { return nl->fd; }

unsigned int mnl_socket_get_portid(const struct mnl_socket* nl) { return nl->addr.nl_pid; }

ssize_t mnl_socket_sendto(const struct mnl_socket* nl, const void* buf, size_t len) {
  static const struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  return sendto(nl->fd, buf, len, 0, (const struct sockaddr*)&kernel, sizeof kernel);
}

ssize_t mnl_socket_recvfrom(const struct mnl_socket* nl, void* buf, size_t bufsiz) {
  struct sockaddr_nl addr;
  struct iovec iov = {.iov_base = buf, .iov_len = bufsiz};
  struct msghdr msg = {.msg_name = &addr, .msg_namelen = sizeof addr, .msg_iov = &iov,
                       .msg_iovlen = 1};
  ssize_t ret = recvmsg(nl->fd, &msg, 0);
  if (ret == -1) return ret;
  if (msg.msg_flags & MSG_TRUNC) {
    errno = ENOSPC;
    return -1;
  }
  if (msg.msg_namelen != sizeof addr) {
    errno = EINVAL;
    return -1;
  }
  return ret;
}

/* Messages */

size_t mnl_nlmsg_size(size_t len) { return len + MNL_NLMSG_HDRLEN; }

struct nlmsghdr* mnl_nlmsg_put_header(void* buf) {
  memset(buf, 0, MNL_NLMSG_HDRLEN);
  struct nlmsghdr* nlh = buf;
  nlh->nlmsg_len = MNL_NLMSG_HDRLEN;
  return nlh;
}

void* mnl_nlmsg_put_extra_header(struct nlmsghdr* nlh, size_t size) {
  char* ptr = (char*)nlh + nlh->nlmsg_len;
  nlh->nlmsg_len += MNL_ALIGN(size);
  memset(ptr, 0, size);
  return ptr;
}

void* mnl_nlmsg_get_payload(const struct nlmsghdr* nlh) {
  return (char*)nlh + MNL_NLMSG_HDRLEN;
}

void* mnl_nlmsg_get_payload_offset(const struct nlmsghdr* nlh, size_t offset) {
  return (char*)nlh + MNL_NLMSG_HDRLEN + MNL_ALIGN(offset);
}

void* mnl_nlmsg_get_payload_tail(const struct nlmsghdr* nlh) {
  return (char*)nlh + MNL_ALIGN(nlh->nlmsg_len);
}

bool mnl_nlmsg_ok(const struct nlmsghdr* nlh, int len) {
  // Compared unsigned (len is known >= 16 here): libmnl's (int) cast let a length of 2^32-1 pass
  // as -1, and MNL_ALIGN of it wraps to 0, so mnl_nlmsg_next never advanced (found by
  // tests/fuzz/nflog_fuzz: scan_nflog_datagram looped forever on such a datagram).
  return len >= (int)sizeof(struct nlmsghdr) && nlh->nlmsg_len >= sizeof(struct nlmsghdr) &&
         nlh->nlmsg_len <= (unsigned int)len;
}

struct nlmsghdr* mnl_nlmsg_next(const struct nlmsghdr* nlh, int* len) {
  *len -= (int)MNL_ALIGN(nlh->nlmsg_len);
  return (struct nlmsghdr*)((char*)nlh + MNL_ALIGN(nlh->nlmsg_len));
}

bool mnl_nlmsg_seq_ok(const struct nlmsghdr* nlh, unsigned int seq) {
  return nlh->nlmsg_seq && seq ? nlh->nlmsg_seq == seq : true;
}

bool mnl_nlmsg_portid_ok(const struct nlmsghdr* nlh, unsigned int portid) {
  return nlh->nlmsg_pid && portid ? nlh->nlmsg_pid == portid : true;
}

/* Batches: messages laid end to end in a caller's buffer, up to `limit` bytes. */

struct mnl_nlmsg_batch {
  char* buf;
  size_t limit;
  size_t buflen;
  char* cur;
  bool overflow;
};

struct mnl_nlmsg_batch* mnl_nlmsg_batch_start(void* buf, size_t limit) {
  struct mnl_nlmsg_batch* b = malloc(sizeof *b);
  if (b == NULL) return NULL;
  b->buf = buf;
  b->limit = limit;
  b->buflen = 0;
  b->cur = buf;
  b->overflow = false;
  return b;
}

bool mnl_nlmsg_batch_next(struct mnl_nlmsg_batch* b) {
  struct nlmsghdr* nlh = (struct nlmsghdr*)b->cur;
  if (b->buflen + nlh->nlmsg_len > b->limit) {
    b->overflow = true;
    return false;
  }
  b->cur = b->buf + b->buflen + nlh->nlmsg_len;
  b->buflen += nlh->nlmsg_len;
  return true;
}

void mnl_nlmsg_batch_stop(struct mnl_nlmsg_batch* b) { free(b); }
size_t mnl_nlmsg_batch_size(struct mnl_nlmsg_batch* b) { return b->buflen; }
void* mnl_nlmsg_batch_head(struct mnl_nlmsg_batch* b) { return b->buf; }
void* mnl_nlmsg_batch_current(struct mnl_nlmsg_batch* b) { return b->cur; }
bool mnl_nlmsg_batch_is_empty(struct mnl_nlmsg_batch* b) { return b->buflen == 0; }

/* Attributes */

uint16_t mnl_attr_get_type(const struct nlattr* attr) { return attr->nla_type & NLA_TYPE_MASK; }
uint16_t mnl_attr_get_len(const struct nlattr* attr) { return attr->nla_len; }
uint16_t mnl_attr_get_payload_len(const struct nlattr* attr) {
  return (uint16_t)(attr->nla_len - MNL_ATTR_HDRLEN);
}
void* mnl_attr_get_payload(const struct nlattr* attr) { return (char*)attr + MNL_ATTR_HDRLEN; }
uint8_t mnl_attr_get_u8(const struct nlattr* attr) { return *(uint8_t*)mnl_attr_get_payload(attr); }
uint16_t mnl_attr_get_u16(const struct nlattr* attr) {
  return *(uint16_t*)mnl_attr_get_payload(attr);
}
uint32_t mnl_attr_get_u32(const struct nlattr* attr) {
  return *(uint32_t*)mnl_attr_get_payload(attr);
}
uint64_t mnl_attr_get_u64(const struct nlattr* attr) {
  uint64_t v;  /* 4-byte aligned only: copy */
  memcpy(&v, mnl_attr_get_payload(attr), sizeof v);
  return v;
}
const char* mnl_attr_get_str(const struct nlattr* attr) { return mnl_attr_get_payload(attr); }

bool mnl_attr_ok(const struct nlattr* attr, int len) {
  return len >= (int)sizeof(struct nlattr) && attr->nla_len >= sizeof(struct nlattr) &&
         (int)attr->nla_len <= len;
}

struct nlattr* mnl_attr_next(const struct nlattr* attr) {
  return (struct nlattr*)((char*)attr + MNL_ALIGN(attr->nla_len));
}

int mnl_attr_type_valid(const struct nlattr* attr, uint16_t max) {
  if (mnl_attr_get_type(attr) > max) {
    errno = EOPNOTSUPP;
    return -1;
  }
  return 1;
}

static const size_t type_len[MNL_TYPE_MAX] = {
    [MNL_TYPE_U8] = sizeof(uint8_t),   [MNL_TYPE_U16] = sizeof(uint16_t),
    [MNL_TYPE_U32] = sizeof(uint32_t), [MNL_TYPE_U64] = sizeof(uint64_t),
    [MNL_TYPE_MSECS] = sizeof(uint64_t),
};

static int validate(const struct nlattr* attr, enum mnl_attr_data_type type, size_t exp_len) {
  uint16_t len = mnl_attr_get_payload_len(attr);
  const char* data = mnl_attr_get_payload(attr);
  if (len < exp_len) {
    errno = ERANGE;
    return -1;
  }
  switch (type) {
    case MNL_TYPE_FLAG:
      if (len > 0) {
        errno = ERANGE;
        return -1;
      }
      break;
    case MNL_TYPE_NUL_STRING:
      if (len == 0) {
        errno = ERANGE;
        return -1;
      }
      if (data[len - 1] != '\0') {
        errno = EINVAL;
        return -1;
      }
      break;
    case MNL_TYPE_STRING:
      if (len == 0) {
        errno = ERANGE;
        return -1;
      }
      break;
    case MNL_TYPE_NESTED:
      if (len != 0 && len < MNL_ATTR_HDRLEN) {
        errno = ERANGE;
        return -1;
      }
      break;
    default:
      break;
  }
  if (exp_len && len > exp_len) {
    errno = ERANGE;
    return -1;
  }
  return 0;
}

int mnl_attr_validate(const struct nlattr* attr, enum mnl_attr_data_type type) {
  if (type >= MNL_TYPE_MAX) {
    errno = EINVAL;
    return -1;
  }
  return validate(attr, type, type_len[type]);
}

int mnl_attr_validate2(const struct nlattr* attr, enum mnl_attr_data_type type, size_t len) {
  if (type >= MNL_TYPE_MAX) {
    errno = EINVAL;
    return -1;
  }
  return validate(attr, type, len);
}

int mnl_attr_parse_payload(const void* payload, size_t payload_len, mnl_attr_cb_t cb, void* data) {
  int ret = MNL_CB_OK;
  const struct nlattr* attr = payload;
  const char* end = (const char*)payload + payload_len;
  while (mnl_attr_ok(attr, (int)(end - (const char*)attr))) {
    if ((ret = cb(attr, data)) <= MNL_CB_STOP) return ret;
    attr = mnl_attr_next(attr);
  }
  return ret;
}

int mnl_attr_parse(const struct nlmsghdr* nlh, unsigned int offset, mnl_attr_cb_t cb, void* data) {
  const char* start = mnl_nlmsg_get_payload_offset(nlh, offset);
  // The message's own length, not its aligned tail (libmnl's): a last message of unaligned
  // length at the end of a datagram would have its attributes read past the datagram
  // (nflog_fuzz, under ASan). Attributes themselves are aligned, so nothing valid is lost.
  const char* end = (const char*)nlh + nlh->nlmsg_len;
  if (end < start) return MNL_CB_OK;
  return mnl_attr_parse_payload(start, (size_t)(end - start), cb, data);
}

int mnl_attr_parse_nested(const struct nlattr* nest, mnl_attr_cb_t cb, void* data) {
  return mnl_attr_parse_payload(mnl_attr_get_payload(nest), mnl_attr_get_payload_len(nest), cb,
                                data);
}

void mnl_attr_put(struct nlmsghdr* nlh, uint16_t type, size_t len, const void* data) {
  struct nlattr* attr = mnl_nlmsg_get_payload_tail(nlh);
  uint16_t payload_len = (uint16_t)(MNL_ALIGN(sizeof(struct nlattr)) + len);
  attr->nla_type = type;
  attr->nla_len = payload_len;
  memcpy(mnl_attr_get_payload(attr), data, len);
  size_t pad = MNL_ALIGN(len) - len;
  if (pad > 0) memset((char*)mnl_attr_get_payload(attr) + len, 0, pad);
  nlh->nlmsg_len += MNL_ALIGN(payload_len);
}

void mnl_attr_put_u8(struct nlmsghdr* nlh, uint16_t type, uint8_t v) { mnl_attr_put(nlh, type, 1, &v); }
void mnl_attr_put_u16(struct nlmsghdr* nlh, uint16_t type, uint16_t v) { mnl_attr_put(nlh, type, 2, &v); }
void mnl_attr_put_u32(struct nlmsghdr* nlh, uint16_t type, uint32_t v) { mnl_attr_put(nlh, type, 4, &v); }
void mnl_attr_put_u64(struct nlmsghdr* nlh, uint16_t type, uint64_t v) { mnl_attr_put(nlh, type, 8, &v); }
void mnl_attr_put_str(struct nlmsghdr* nlh, uint16_t type, const char* s) {
  mnl_attr_put(nlh, type, strlen(s), s);
}
void mnl_attr_put_strz(struct nlmsghdr* nlh, uint16_t type, const char* s) {
  mnl_attr_put(nlh, type, strlen(s) + 1, s);
}

struct nlattr* mnl_attr_nest_start(struct nlmsghdr* nlh, uint16_t type) {
  struct nlattr* start = mnl_nlmsg_get_payload_tail(nlh);
  start->nla_type = NLA_F_NESTED | type;
  nlh->nlmsg_len += MNL_ALIGN(sizeof(struct nlattr));
  return start;
}

void mnl_attr_nest_end(struct nlmsghdr* nlh, struct nlattr* start) {
  start->nla_len = (uint16_t)((char*)mnl_nlmsg_get_payload_tail(nlh) - (char*)start);
}

/* Callbacks */

static int cb_error(const struct nlmsghdr* nlh) {
  const struct nlmsgerr* err = mnl_nlmsg_get_payload(nlh);
  if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(struct nlmsgerr))) {
    errno = EBADMSG;
    return MNL_CB_ERROR;
  }
  errno = err->error < 0 ? -err->error : err->error;
  return err->error == 0 ? MNL_CB_STOP : MNL_CB_ERROR;
}

int mnl_cb_run2(const void* buf, size_t numbytes, unsigned int seq, unsigned int portid,
                mnl_cb_t cb_data, void* data, mnl_cb_t* cb_ctl_array,
                unsigned int cb_ctl_array_len) {
  int ret = MNL_CB_OK, len = (int)numbytes;
  const struct nlmsghdr* nlh = buf;
  while (mnl_nlmsg_ok(nlh, len)) {
    if (!mnl_nlmsg_portid_ok(nlh, portid)) {
      errno = ESRCH;
      return -1;
    }
    if (!mnl_nlmsg_seq_ok(nlh, seq)) {
      errno = EPROTO;
      return -1;
    }
    if (nlh->nlmsg_flags & NLM_F_DUMP_INTR) {
      errno = EINTR;
      return -1;
    }
    if (nlh->nlmsg_type >= NLMSG_MIN_TYPE) {
      if (cb_data) ret = cb_data(nlh, data);
    } else if (cb_ctl_array && nlh->nlmsg_type < cb_ctl_array_len) {
      if (cb_ctl_array[nlh->nlmsg_type]) ret = cb_ctl_array[nlh->nlmsg_type](nlh, data);
    } else if (nlh->nlmsg_type == NLMSG_ERROR) {
      ret = cb_error(nlh);
    } else if (nlh->nlmsg_type == NLMSG_DONE) {
      ret = MNL_CB_STOP;
    }
    if (ret <= MNL_CB_STOP) return ret;
    nlh = mnl_nlmsg_next(nlh, &len);
  }
  return ret;
}

int mnl_cb_run(const void* buf, size_t numbytes, unsigned int seq, unsigned int portid,
               mnl_cb_t cb_data, void* data) {
  return mnl_cb_run2(buf, numbytes, seq, portid, cb_data, data, NULL, 0);
}
