/*
 * Tally chaincode SDK for C (freestanding wasm32, no libc).
 *
 * Typed helpers over the host ABI of docs/chaincode-abi.md: state, caller identity,
 * transaction id and time, events, results and errors, plus the field encoding used for call
 * arguments and for the records the example contracts store.
 *
 * A contract is one C file that includes this header and defines its functions with
 * TALLY_FN(name) { ... }; chaincode/build.sh compiles it with sdk/tally.c into a module.
 *
 * Memory: every call runs in a fresh instance, so the allocator only bumps and never frees.
 * There is no floating point anywhere: the runtime refuses modules that use it.
 */
#ifndef TALLY_H
#define TALLY_H

#include <stddef.h>
#include <stdint.h>

/* ---- byte strings -------------------------------------------------------------------- */

/* A view of bytes (not NUL-terminated). */
typedef struct {
  const uint8_t *ptr;
  uint32_t len;
} tly_str;

/* A view of a string literal. */
#define TLY_LIT(lit) ((tly_str){(const uint8_t *)(lit), (uint32_t)(sizeof(lit) - 1)})

tly_str tly_cstr(const char *s);
int tly_eq(tly_str a, tly_str b);
int tly_eq_lit(tly_str a, const char *s);
int tly_starts_with(tly_str s, tly_str prefix);
/* Byte order, as the ledger orders keys: <0, 0, >0. */
int tly_cmp(tly_str a, tly_str b);

/* ---- memory ---------------------------------------------------------------------------- */

/* Bump allocation, 8-byte aligned; traps (failing the call) when memory cannot grow. */
void *tly_alloc(uint32_t n);

/* ---- growable buffers, for keys, records, results and messages ------------------------- */

typedef struct {
  uint8_t *ptr;
  uint32_t len, cap;
} tly_buf;

void tly_buf_init(tly_buf *b);
void tly_buf_bytes(tly_buf *b, tly_str s);
void tly_buf_lit(tly_buf *b, const char *s);
void tly_buf_byte(tly_buf *b, uint8_t c);
/* Unsigned decimal. */
void tly_buf_u64(tly_buf *b, uint64_t v);
/* Lower-case hex of the bytes. */
void tly_buf_hex(tly_buf *b, tly_str s);
/* A JSON string literal: quoted, with quotes, backslashes and control bytes escaped. */
void tly_buf_json_str(tly_buf *b, tly_str s);
tly_str tly_buf_str(const tly_buf *b);

/* ---- the field encoding: arguments and records -----------------------------------------
 * u32 count, then per field u32 length and the bytes; integers little-endian. Numbers travel
 * as decimal text, so `tallyctl chaincode invoke receivables split R1 R1-a 500` needs no
 * binary encoding. */

typedef struct {
  uint32_t count;
  tly_str *items;
} tly_fields;

/* 0 on success, -1 if `in` is not exactly one field list. */
int tly_fields_decode(tly_str in, tly_fields *out);
/* Field i; fails the call with "missing argument <i>" when absent. */
tly_str tly_field(const tly_fields *f, uint32_t i);
/* Field i as an unsigned decimal; fails the call when it is not one or does not fit. */
uint64_t tly_field_u64(const tly_fields *f, uint32_t i);
/* Fails the call unless there are exactly n fields. */
void tly_expect_fields(const tly_fields *f, uint32_t n);

/* Record builder: tly_rec_init, then tly_rec_add* in order; the buffer is the record. */
void tly_rec_init(tly_buf *b);
void tly_rec_add(tly_buf *b, tly_str field);
void tly_rec_add_u64(tly_buf *b, uint64_t v);

/* Parses unsigned decimal text: 0 on success, -1 otherwise (empty, sign, overflow). */
int tly_parse_u64(tly_str s, uint64_t *out);

/* ---- state (keys are UTF-8, namespaced per chaincode by the runtime) -------------------- */

/* 1 and the value if the key exists (this call's own writes included), 0 if not. */
int tly_get(tly_str key, tly_str *value);
void tly_put(tly_str key, tly_str value);
void tly_del(tly_str key);

typedef struct {
  tly_str key, value;
} tly_kv;

/* Entries with keys in [start, end) (end empty: no upper bound), ascending, at most `limit`
 * (the runtime serves at most 1000 per call; page on from the last key). Returns the count. */
uint32_t tly_range(tly_str start, tly_str end, uint32_t limit, tly_kv **out);
/* Entries whose key starts with `prefix`. */
uint32_t tly_prefix(tly_str prefix, uint32_t limit, tly_kv **out);

/* ---- who and when ------------------------------------------------------------------------ */

tly_str tly_caller_org(void);
tly_str tly_caller_subject(void);
tly_str tly_caller_role(void);
tly_str tly_chaincode_name(void);
void tly_tx_id(uint8_t out[32]);
/* The block's ordered time, milliseconds since the Unix epoch (never a local clock). */
uint64_t tly_tx_time(void);

/* ---- output ------------------------------------------------------------------------------ */

void tly_emit(tly_str name, tly_str payload);
void tly_return(tly_str result);
/* Fails the call with a message: its writes and events are discarded. Never returns. */
__attribute__((noreturn)) void tly_fail(tly_str message);
__attribute__((noreturn)) void tly_fail_lit(const char *message);

/* ---- JSON output ---------------------------------------------------------------------------
 * Enough to write results: objects and arrays with separators placed automatically.
 * tly_json_open(b, '{'); tly_json_str_field(b, "id", id); tly_json_close(b, '}'); */

void tly_json_open(tly_buf *b, uint8_t bracket);
void tly_json_close(tly_buf *b, uint8_t bracket);
/* Starts a named member ("name":) inside an object; write its value next. */
void tly_json_key(tly_buf *b, const char *name);
void tly_json_str_field(tly_buf *b, const char *name, tly_str value);
void tly_json_u64_field(tly_buf *b, const char *name, uint64_t value);
void tly_json_bool_field(tly_buf *b, const char *name, int value);
/* A string element of an array. */
void tly_json_str_item(tly_buf *b, tly_str value);

/* ---- conveniences shared by the example contracts ----------------------------------------- */

/* 1 if s is 1 to 64 bytes of A-Z a-z 0-9 . _ - (safe inside keys built with '/'). */
int tly_valid_id(tly_str s);
/* Fails the call with "<what> must be 1 to 64 of A-Z a-z 0-9 . _ -" unless tly_valid_id. */
void tly_check_id(tly_str s, const char *what);
/* prefix + a, and prefix + a + "/" + b: keys of a contract's records and indexes. */
tly_str tly_key(const char *prefix, tly_str a);
tly_str tly_key2(const char *prefix, tly_str a, tly_str b);

/* Organization roles kept in state under "role/<role>/<org>". tly_roles_set replaces them all
 * from (role, org) argument pairs, as `init` receives them; the definition's approval by the
 * channel's members is what makes the list trustworthy. */
void tly_roles_set(const tly_fields *pairs);
int tly_has_role(tly_str role, tly_str org);
/* Fails the call with "organization <org> is not a <role>" unless it is. */
void tly_require_role(const char *role, tly_str org);

/* ---- entry points ------------------------------------------------------------------------
 * TALLY_FN(transfer) { ... } exports `transfer` with the ABI's callable signature; inside,
 * `args` (const tly_fields *) holds the decoded arguments. */
int32_t tly_entry(const uint8_t *ptr, int32_t len, void (*body)(const tly_fields *));

#define TALLY_FN(name)                                                              \
  static void tly_body_##name(const tly_fields *args);                              \
  __attribute__((export_name(#name))) int32_t tly_export_##name(const uint8_t *p,   \
                                                                int32_t l) {        \
    return tly_entry(p, l, tly_body_##name);                                        \
  }                                                                                 \
  static void tly_body_##name(const tly_fields *args)

#endif
