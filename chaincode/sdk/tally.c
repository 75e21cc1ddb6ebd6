/* Tally chaincode SDK for C: implementation. See tally.h and docs/chaincode-abi.md. */
#include "tally.h"

/* ---- host imports (module "tally") --------------------------------------------------- */

#define IMPORT(n) __attribute__((import_module("tally"), import_name(#n)))

IMPORT(state_get) int32_t h_state_get(const uint8_t *k, int32_t kl);
IMPORT(state_put) void h_state_put(const uint8_t *k, int32_t kl, const uint8_t *v, int32_t vl);
IMPORT(state_delete) void h_state_delete(const uint8_t *k, int32_t kl);
IMPORT(state_range)
int32_t h_state_range(const uint8_t *s, int32_t sl, const uint8_t *e, int32_t el, int32_t limit);
IMPORT(state_prefix) int32_t h_state_prefix(const uint8_t *p, int32_t pl, int32_t limit);
IMPORT(buffer_copy) int32_t h_buffer_copy(uint8_t *dst, int32_t len);
IMPORT(caller_org) int32_t h_caller_org(void);
IMPORT(caller_subject) int32_t h_caller_subject(void);
IMPORT(caller_role) int32_t h_caller_role(void);
IMPORT(chaincode_name) int32_t h_chaincode_name(void);
IMPORT(tx_id) void h_tx_id(uint8_t *dst);
IMPORT(tx_timestamp) int64_t h_tx_timestamp(void);
IMPORT(emit_event) void h_emit_event(const uint8_t *n, int32_t nl, const uint8_t *p, int32_t pl);
IMPORT(set_result) void h_set_result(const uint8_t *p, int32_t l);
IMPORT(fail) void h_fail(const uint8_t *p, int32_t l);

/* ---- what the compiler may call on its own (no libc here) ---------------------------- */

/* Built with -mbulk-memory, these lower to single memory.copy / memory.fill instructions,
 * which the runtime meters per byte: far fewer instructions than a byte loop. */
void *memcpy(void *dst, const void *src, size_t n) { return __builtin_memcpy(dst, src, n); }

void *memmove(void *dst, const void *src, size_t n) { return __builtin_memmove(dst, src, n); }

void *memset(void *dst, int c, size_t n) { return __builtin_memset(dst, c, n); }

int memcmp(const void *a, const void *b, size_t n) {
  const uint8_t *x = a, *y = b;
  for (size_t i = 0; i < n; i++)
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  return 0;
}

/* ---- memory ---------------------------------------------------------------------------- */

extern uint8_t __heap_base; /* placed by wasm-ld after data and stack */
static uintptr_t heap_top;

void *tly_alloc(uint32_t n) {
  if (!heap_top) heap_top = (uintptr_t)&__heap_base;
  uintptr_t p = (heap_top + 7) & ~(uintptr_t)7;
  uintptr_t end = p + n;
  if (end < p) __builtin_trap();
  uintptr_t have = __builtin_wasm_memory_size(0) * 65536u;
  if (end > have) {
    uintptr_t pages = (end - have + 65535u) / 65536u;
    /* The runtime stops the call itself when the memory cap is reached; -1 is any other
     * refusal, and an allocator that cannot allocate has nothing better to do than trap. */
    if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) __builtin_trap();
  }
  heap_top = end;
  return (void *)p;
}

/* The ABI's allocator export: the host places call arguments here. */
__attribute__((export_name("tally_alloc"))) void *tally_alloc(int32_t n) {
  return tly_alloc((uint32_t)n);
}

/* ---- byte strings -------------------------------------------------------------------- */

tly_str tly_cstr(const char *s) {
  uint32_t n = 0;
  while (s[n]) n++;
  return (tly_str){(const uint8_t *)s, n};
}

int tly_eq(tly_str a, tly_str b) { return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0; }

int tly_eq_lit(tly_str a, const char *s) { return tly_eq(a, tly_cstr(s)); }

int tly_starts_with(tly_str s, tly_str p) {
  return s.len >= p.len && memcmp(s.ptr, p.ptr, p.len) == 0;
}

int tly_cmp(tly_str a, tly_str b) {
  uint32_t n = a.len < b.len ? a.len : b.len;
  int c = memcmp(a.ptr, b.ptr, n);
  if (c) return c;
  return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}

/* ---- buffers ----------------------------------------------------------------------------- */

void tly_buf_init(tly_buf *b) {
  b->ptr = 0;
  b->len = b->cap = 0;
}

static void reserve(tly_buf *b, uint32_t more) {
  if (b->len + more <= b->cap) return;
  uint32_t cap = b->cap ? b->cap * 2 : 64;
  while (cap < b->len + more) cap *= 2;
  uint8_t *p = tly_alloc(cap);
  if (b->len) memcpy(p, b->ptr, b->len);
  b->ptr = p;
  b->cap = cap;
}

void tly_buf_bytes(tly_buf *b, tly_str s) {
  reserve(b, s.len);
  if (s.len) memcpy(b->ptr + b->len, s.ptr, s.len);
  b->len += s.len;
}

void tly_buf_lit(tly_buf *b, const char *s) { tly_buf_bytes(b, tly_cstr(s)); }

void tly_buf_byte(tly_buf *b, uint8_t c) {
  reserve(b, 1);
  b->ptr[b->len++] = c;
}

void tly_buf_u64(tly_buf *b, uint64_t v) {
  uint8_t tmp[20];
  int n = 0;
  do {
    tmp[n++] = (uint8_t)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) tly_buf_byte(b, tmp[--n]);
}

static const char HEX[] = "0123456789abcdef";

void tly_buf_hex(tly_buf *b, tly_str s) {
  for (uint32_t i = 0; i < s.len; i++) {
    tly_buf_byte(b, (uint8_t)HEX[s.ptr[i] >> 4]);
    tly_buf_byte(b, (uint8_t)HEX[s.ptr[i] & 15]);
  }
}

void tly_buf_json_str(tly_buf *b, tly_str s) {
  tly_buf_byte(b, '"');
  for (uint32_t i = 0; i < s.len; i++) {
    uint8_t c = s.ptr[i];
    if (c == '"' || c == '\\') {
      tly_buf_byte(b, '\\');
      tly_buf_byte(b, c);
    } else if (c < 0x20) {
      tly_buf_lit(b, "\\u00");
      tly_buf_byte(b, (uint8_t)HEX[c >> 4]);
      tly_buf_byte(b, (uint8_t)HEX[c & 15]);
    } else {
      tly_buf_byte(b, c);
    }
  }
  tly_buf_byte(b, '"');
}

tly_str tly_buf_str(const tly_buf *b) { return (tly_str){b->ptr, b->len}; }

/* ---- field encoding ---------------------------------------------------------------------- */

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

int tly_fields_decode(tly_str in, tly_fields *out) {
  out->count = 0;
  out->items = 0;
  /* No arguments at all is an empty list. */
  if (in.len == 0) return 0;
  if (in.len < 4) return -1;
  uint32_t count = le32(in.ptr), at = 4;
  /* Each field takes at least 4 bytes: bound count before allocating for it. */
  if (count > (in.len - 4) / 4) return -1;
  out->items = tly_alloc(count * sizeof(tly_str));
  for (uint32_t i = 0; i < count; i++) {
    if (in.len - at < 4) return -1;
    uint32_t n = le32(in.ptr + at);
    at += 4;
    if (in.len - at < n) return -1;
    out->items[i] = (tly_str){in.ptr + at, n};
    at += n;
  }
  if (at != in.len) return -1;
  out->count = count;
  return 0;
}

tly_str tly_field(const tly_fields *f, uint32_t i) {
  if (i >= f->count) {
    tly_buf m;
    tly_buf_init(&m);
    tly_buf_lit(&m, "missing argument ");
    tly_buf_u64(&m, i);
    tly_fail(tly_buf_str(&m));
  }
  return f->items[i];
}

int tly_parse_u64(tly_str s, uint64_t *out) {
  if (s.len == 0 || s.len > 20) return -1;
  uint64_t v = 0;
  for (uint32_t i = 0; i < s.len; i++) {
    uint8_t c = s.ptr[i];
    if (c < '0' || c > '9') return -1;
    uint64_t d = c - '0';
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

uint64_t tly_field_u64(const tly_fields *f, uint32_t i) {
  uint64_t v;
  if (tly_parse_u64(tly_field(f, i), &v)) {
    tly_buf m;
    tly_buf_init(&m);
    tly_buf_lit(&m, "argument ");
    tly_buf_u64(&m, i);
    tly_buf_lit(&m, " is not an unsigned decimal number");
    tly_fail(tly_buf_str(&m));
  }
  return v;
}

void tly_expect_fields(const tly_fields *f, uint32_t n) {
  if (f->count != n) {
    tly_buf m;
    tly_buf_init(&m);
    tly_buf_lit(&m, "expected ");
    tly_buf_u64(&m, n);
    tly_buf_lit(&m, " arguments, got ");
    tly_buf_u64(&m, f->count);
    tly_fail(tly_buf_str(&m));
  }
}

void tly_rec_init(tly_buf *b) {
  tly_buf_init(b);
  reserve(b, 4);
  put_le32(b->ptr, 0);
  b->len = 4;
}

void tly_rec_add(tly_buf *b, tly_str field) {
  reserve(b, 4 + field.len);
  put_le32(b->ptr, le32(b->ptr) + 1);
  put_le32(b->ptr + b->len, field.len);
  b->len += 4;
  tly_buf_bytes(b, field);
}

void tly_rec_add_u64(tly_buf *b, uint64_t v) {
  tly_buf t;
  tly_buf_init(&t);
  tly_buf_u64(&t, v);
  tly_rec_add(b, tly_buf_str(&t));
}

/* ---- JSON ---------------------------------------------------------------------------------- */

static void json_sep(tly_buf *b) {
  if (b->len == 0) return;
  uint8_t last = b->ptr[b->len - 1];
  if (last != '{' && last != '[' && last != ':') tly_buf_byte(b, ',');
}

void tly_json_open(tly_buf *b, uint8_t bracket) {
  json_sep(b);
  tly_buf_byte(b, bracket);
}

void tly_json_close(tly_buf *b, uint8_t bracket) { tly_buf_byte(b, bracket); }

void tly_json_key(tly_buf *b, const char *name) {
  json_sep(b);
  tly_buf_json_str(b, tly_cstr(name));
  tly_buf_byte(b, ':');
}

void tly_json_str_field(tly_buf *b, const char *name, tly_str value) {
  tly_json_key(b, name);
  tly_buf_json_str(b, value);
}

void tly_json_u64_field(tly_buf *b, const char *name, uint64_t value) {
  tly_json_key(b, name);
  tly_buf_u64(b, value);
}

void tly_json_bool_field(tly_buf *b, const char *name, int value) {
  tly_json_key(b, name);
  tly_buf_lit(b, value ? "true" : "false");
}

void tly_json_str_item(tly_buf *b, tly_str value) {
  json_sep(b);
  tly_buf_json_str(b, value);
}

/* ---- conveniences ------------------------------------------------------------------------- */

int tly_valid_id(tly_str s) {
  if (s.len == 0 || s.len > 64) return 0;
  for (uint32_t i = 0; i < s.len; i++) {
    uint8_t c = s.ptr[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    if (!ok) return 0;
  }
  return 1;
}

void tly_check_id(tly_str s, const char *what) {
  if (tly_valid_id(s)) return;
  tly_buf m;
  tly_buf_init(&m);
  tly_buf_lit(&m, what);
  tly_buf_lit(&m, " must be 1 to 64 of A-Z a-z 0-9 . _ -");
  tly_fail(tly_buf_str(&m));
}

tly_str tly_key(const char *prefix, tly_str a) {
  tly_buf b;
  tly_buf_init(&b);
  tly_buf_lit(&b, prefix);
  tly_buf_bytes(&b, a);
  return tly_buf_str(&b);
}

tly_str tly_key2(const char *prefix, tly_str a, tly_str c) {
  tly_buf b;
  tly_buf_init(&b);
  tly_buf_lit(&b, prefix);
  tly_buf_bytes(&b, a);
  tly_buf_byte(&b, '/');
  tly_buf_bytes(&b, c);
  return tly_buf_str(&b);
}

void tly_roles_set(const tly_fields *pairs) {
  if (pairs->count % 2) tly_fail_lit("roles come in (role, organization) pairs");
  /* Replace, not merge: an upgrade's init lists the roles as they are now. */
  for (;;) {
    tly_kv *kv;
    uint32_t n = tly_prefix(TLY_LIT("role/"), 1000, &kv);
    for (uint32_t i = 0; i < n; i++) tly_del(kv[i].key);
    if (n < 1000) break;
  }
  for (uint32_t i = 0; i < pairs->count; i += 2) {
    tly_str role = pairs->items[i], org = pairs->items[i + 1];
    tly_check_id(role, "role");
    if (org.len == 0) tly_fail_lit("organization must not be empty");
    tly_put(tly_key2("role/", role, org), TLY_LIT("1"));
  }
}

int tly_has_role(tly_str role, tly_str org) {
  tly_str v;
  return tly_get(tly_key2("role/", role, org), &v);
}

void tly_require_role(const char *role, tly_str org) {
  if (tly_has_role(tly_cstr(role), org)) return;
  tly_buf m;
  tly_buf_init(&m);
  tly_buf_lit(&m, "organization ");
  tly_buf_bytes(&m, org);
  tly_buf_lit(&m, " is not a ");
  tly_buf_lit(&m, role);
  tly_fail(tly_buf_str(&m));
}

/* ---- state -------------------------------------------------------------------------------- */

/* Copies the host's answer buffer (n bytes) into fresh memory. */
static tly_str take_buffer(int32_t n) {
  uint8_t *p = tly_alloc((uint32_t)n);
  h_buffer_copy(p, n);
  return (tly_str){p, (uint32_t)n};
}

int tly_get(tly_str key, tly_str *value) {
  int32_t n = h_state_get(key.ptr, (int32_t)key.len);
  if (n < 0) return 0;
  *value = take_buffer(n);
  return 1;
}

void tly_put(tly_str key, tly_str value) {
  h_state_put(key.ptr, (int32_t)key.len, value.ptr, (int32_t)value.len);
}

void tly_del(tly_str key) { h_state_delete(key.ptr, (int32_t)key.len); }

static uint32_t decode_entries(tly_str b, tly_kv **out) {
  /* The host's encoding is well-formed by construction; bounds are still checked so that a
   * bug shows as a failed call, not as reads past the buffer. */
  if (b.len < 4) tly_fail_lit("scan: short answer");
  uint32_t count = le32(b.ptr), at = 4;
  tly_kv *kv = tly_alloc(count * sizeof(tly_kv));
  for (uint32_t i = 0; i < count; i++) {
    tly_str *parts[2] = {&kv[i].key, &kv[i].value};
    for (int j = 0; j < 2; j++) {
      if (b.len - at < 4) tly_fail_lit("scan: truncated answer");
      uint32_t n = le32(b.ptr + at);
      at += 4;
      if (b.len - at < n) tly_fail_lit("scan: truncated answer");
      *parts[j] = (tly_str){b.ptr + at, n};
      at += n;
    }
  }
  *out = kv;
  return count;
}

uint32_t tly_range(tly_str start, tly_str end, uint32_t limit, tly_kv **out) {
  int32_t n = h_state_range(start.ptr, (int32_t)start.len, end.ptr, (int32_t)end.len,
                            (int32_t)limit);
  return decode_entries(take_buffer(n), out);
}

uint32_t tly_prefix(tly_str prefix, uint32_t limit, tly_kv **out) {
  int32_t n = h_state_prefix(prefix.ptr, (int32_t)prefix.len, (int32_t)limit);
  return decode_entries(take_buffer(n), out);
}

/* ---- who and when -------------------------------------------------------------------------- */

tly_str tly_caller_org(void) { return take_buffer(h_caller_org()); }
tly_str tly_caller_subject(void) { return take_buffer(h_caller_subject()); }
tly_str tly_caller_role(void) { return take_buffer(h_caller_role()); }
tly_str tly_chaincode_name(void) { return take_buffer(h_chaincode_name()); }
void tly_tx_id(uint8_t out[32]) { h_tx_id(out); }
uint64_t tly_tx_time(void) { return (uint64_t)h_tx_timestamp(); }

/* ---- output ---------------------------------------------------------------------------------- */

void tly_emit(tly_str name, tly_str payload) {
  h_emit_event(name.ptr, (int32_t)name.len, payload.ptr, (int32_t)payload.len);
}

void tly_return(tly_str r) { h_set_result(r.ptr, (int32_t)r.len); }

void tly_fail(tly_str m) {
  h_fail(m.ptr, (int32_t)m.len);
  /* fail never returns; this only tells the compiler so. */
  __builtin_trap();
}

void tly_fail_lit(const char *m) { tly_fail(tly_cstr(m)); }

int32_t tly_entry(const uint8_t *ptr, int32_t len, void (*body)(const tly_fields *)) {
  tly_fields args;
  if (tly_fields_decode((tly_str){ptr, (uint32_t)len}, &args))
    tly_fail_lit("arguments are not in the field encoding (see docs/chaincode-abi.md)");
  body(&args);
  return 0;
}
