/* notary: anchor a document's SHA-256 with metadata; anyone who can read the channel can
 * verify that it was anchored, when and by whom. See README.md. */
#include "tally.h"

/* State:
 *   h/<hash>          record: hash, metadata, org, subject, tx id (hex), time (ms)
 *   o/<org>/<hash>    index of an organization's anchors, for `list` */

#define MAX_METADATA 4096

/* The hash as 64 lower-case hex digits; upper case is accepted and folded so that one
 * document has exactly one key. */
static tly_str normalize_hash(tly_str h) {
  if (h.len != 64) tly_fail_lit("hash must be 64 hex digits (SHA-256)");
  uint8_t *out = tly_alloc(64);
  for (uint32_t i = 0; i < 64; i++) {
    uint8_t c = h.ptr[i];
    if (c >= 'A' && c <= 'F') c = (uint8_t)(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      tly_fail_lit("hash must be 64 hex digits (SHA-256)");
    out[i] = c;
  }
  return (tly_str){out, 64};
}

static void record_json(tly_buf *b, tly_str rec, int anchored_now) {
  tly_fields f;
  if (tly_fields_decode(rec, &f) || f.count != 6) tly_fail_lit("corrupt record");
  uint64_t time = 0;
  tly_parse_u64(f.items[5], &time);
  tly_json_open(b, '{');
  tly_json_bool_field(b, "anchored", 1);
  tly_json_bool_field(b, "new", anchored_now);
  tly_json_str_field(b, "hash", f.items[0]);
  tly_json_str_field(b, "metadata", f.items[1]);
  tly_json_str_field(b, "org", f.items[2]);
  tly_json_str_field(b, "subject", f.items[3]);
  tly_json_str_field(b, "tx_id", f.items[4]);
  tly_json_u64_field(b, "time_ms", time);
  tly_json_close(b, '}');
}

/* anchor(hash, metadata): records the hash once; anchoring it again returns the first record
 * unchanged (and writes nothing), so a retry or a second submitter cannot move the date. */
TALLY_FN(anchor) {
  tly_expect_fields(args, 2);
  tly_str hash = normalize_hash(tly_field(args, 0));
  tly_str meta = tly_field(args, 1);
  if (meta.len > MAX_METADATA) tly_fail_lit("metadata is longer than 4096 bytes");
  tly_str key = tly_key("h/", hash);
  tly_buf out;
  tly_buf_init(&out);
  tly_str existing;
  if (tly_get(key, &existing)) {
    record_json(&out, existing, 0);
    tly_return(tly_buf_str(&out));
    return;
  }
  uint8_t id[32];
  tly_tx_id(id);
  tly_buf idhex;
  tly_buf_init(&idhex);
  tly_buf_hex(&idhex, (tly_str){id, 32});
  tly_str org = tly_caller_org();
  tly_buf rec;
  tly_rec_init(&rec);
  tly_rec_add(&rec, hash);
  tly_rec_add(&rec, meta);
  tly_rec_add(&rec, org);
  tly_rec_add(&rec, tly_caller_subject());
  tly_rec_add(&rec, tly_buf_str(&idhex));
  tly_rec_add_u64(&rec, tly_tx_time());
  tly_put(key, tly_buf_str(&rec));
  tly_put(tly_key2("o/", org, hash), TLY_LIT(""));
  record_json(&out, tly_buf_str(&rec), 1);
  tly_emit(TLY_LIT("anchored"), hash);
  tly_return(tly_buf_str(&out));
}

/* verify(hash): the record, or {"anchored":false,...}: absence is an answer, not an error. */
TALLY_FN(verify) {
  tly_expect_fields(args, 1);
  tly_str hash = normalize_hash(tly_field(args, 0));
  tly_buf out;
  tly_buf_init(&out);
  tly_str rec;
  if (tly_get(tly_key("h/", hash), &rec)) {
    record_json(&out, rec, 0);
  } else {
    tly_json_open(&out, '{');
    tly_json_bool_field(&out, "anchored", 0);
    tly_json_str_field(&out, "hash", hash);
    tly_json_close(&out, '}');
  }
  tly_return(tly_buf_str(&out));
}

/* list(org[, after]): up to 100 hashes anchored by an organization, in hash order, after
 * `after` if given (paging). */
TALLY_FN(list) {
  if (args->count < 1 || args->count > 2) tly_fail_lit("expected org [after]");
  tly_str org = tly_field(args, 0);
  tly_str prefix = tly_key2("o/", org, TLY_LIT(""));
  tly_kv *kv;
  uint32_t n;
  if (args->count == 2) {
    /* Start just after `after`: the same key with a 0 byte appended sorts right after it. */
    tly_buf start;
    tly_buf_init(&start);
    tly_buf_bytes(&start, prefix);
    tly_buf_bytes(&start, tly_field(args, 1));
    tly_buf_byte(&start, 0);
    /* The end of the prefix: the same bytes with the final '/' raised to '0'. */
    tly_buf end;
    tly_buf_init(&end);
    tly_buf_bytes(&end, prefix);
    end.ptr[end.len - 1] = '/' + 1;
    n = tly_range(tly_buf_str(&start), tly_buf_str(&end), 100, &kv);
  } else {
    n = tly_prefix(prefix, 100, &kv);
  }
  tly_buf out;
  tly_buf_init(&out);
  tly_json_open(&out, '[');
  for (uint32_t i = 0; i < n; i++) {
    tly_str key = kv[i].key;
    tly_json_str_item(&out, (tly_str){key.ptr + prefix.len, key.len - prefix.len});
  }
  tly_json_close(&out, ']');
  tly_return(tly_buf_str(&out));
}
