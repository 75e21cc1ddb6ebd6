/* receivables: supply-chain finance. A core enterprise issues a receivable to a supplier; the
 * holder splits it and transfers parts down the chain; a bank finances a part at a discount;
 * the core enterprise settles each part at maturity. See README.md. */
#include "tally.h"

/* State:
 *   role/<role>/<org>     from init: roles core, bank
 *   r/<id>                a part (fields below); a receivable is the tree of parts under its root
 *   c/<parent>/<child>    children of a part, for tracing down the tree
 *   h/<org>/<id>          active parts an organization holds
 *   t/<id>/<seq>          the part's changes of holder: from, to, kind, time, tx */

enum {
  F_ID,
  F_ROOT,
  F_PARENT,
  F_ISSUER,
  F_HOLDER,
  F_AMOUNT,
  F_MATURITY_MS,
  F_STATUS, /* active | settled */
  F_FINANCED_BY,
  F_PRICE,
  F_OFFER_BANK,
  F_OFFER_BPS,
  F_CREATED_MS,
  F_HOPS,
  F_COUNT
};

typedef struct {
  tly_str f[F_COUNT];
} part;

/* Amounts are integer minor units. Bounded so that amount * 10000 (a discount in basis
 * points) never overflows. */
#define MAX_AMOUNT 1000000000000000ull /* 10^15 */

static tly_str u64_str(uint64_t v) {
  tly_buf b;
  tly_buf_init(&b);
  tly_buf_u64(&b, v);
  return tly_buf_str(&b);
}

static uint64_t num(tly_str s) {
  uint64_t v = 0;
  tly_parse_u64(s, &v);
  return v;
}

static int load(tly_str id, part *p) {
  tly_str rec;
  if (!tly_get(tly_key("r/", id), &rec)) return 0;
  tly_fields f;
  if (tly_fields_decode(rec, &f) || f.count != F_COUNT) tly_fail_lit("corrupt part record");
  for (int i = 0; i < F_COUNT; i++) p->f[i] = f.items[i];
  return 1;
}

static void fail2(const char *a, tly_str b, const char *c) {
  tly_buf m;
  tly_buf_init(&m);
  tly_buf_lit(&m, a);
  tly_buf_bytes(&m, b);
  tly_buf_lit(&m, c);
  tly_fail(tly_buf_str(&m));
}

static void load_or_fail(tly_str id, part *p) {
  if (!load(id, p)) fail2("no receivable part ", id, "");
}

static void save(const part *p) {
  tly_buf rec;
  tly_rec_init(&rec);
  for (int i = 0; i < F_COUNT; i++) tly_rec_add(&rec, p->f[i]);
  tly_put(tly_key("r/", p->f[F_ID]), tly_buf_str(&rec));
}

/* The part must be active and held by the caller: the one rule that stops double spending
 * (a part transferred or financed away is no longer the caller's to move). */
static void require_holder(const part *p, tly_str org) {
  if (!tly_eq_lit(p->f[F_STATUS], "active")) fail2("part ", p->f[F_ID], " is settled");
  if (!tly_eq(p->f[F_HOLDER], org)) {
    tly_buf m;
    tly_buf_init(&m);
    tly_buf_lit(&m, "organization ");
    tly_buf_bytes(&m, org);
    tly_buf_lit(&m, " does not hold part ");
    tly_buf_bytes(&m, p->f[F_ID]);
    tly_fail(tly_buf_str(&m));
  }
}

static void log_hop(part *p, tly_str from, tly_str to, const char *kind) {
  uint64_t hops = num(p->f[F_HOPS]);
  /* Zero-padded so that the log keys sort in order. */
  tly_buf seq;
  tly_buf_init(&seq);
  tly_str digits = u64_str(hops);
  for (uint32_t i = digits.len; i < 8; i++) tly_buf_byte(&seq, '0');
  tly_buf_bytes(&seq, digits);
  uint8_t id[32];
  tly_tx_id(id);
  tly_buf idhex;
  tly_buf_init(&idhex);
  tly_buf_hex(&idhex, (tly_str){id, 32});
  tly_buf rec;
  tly_rec_init(&rec);
  tly_rec_add(&rec, from);
  tly_rec_add(&rec, to);
  tly_rec_add(&rec, tly_cstr(kind));
  tly_rec_add_u64(&rec, tly_tx_time());
  tly_rec_add(&rec, tly_buf_str(&idhex));
  tly_put(tly_key2("t/", p->f[F_ID], tly_buf_str(&seq)), tly_buf_str(&rec));
  p->f[F_HOPS] = u64_str(hops + 1);
}

static void move_holder(part *p, tly_str to, const char *kind) {
  tly_str from = p->f[F_HOLDER];
  tly_del(tly_key2("h/", from, p->f[F_ID]));
  tly_put(tly_key2("h/", to, p->f[F_ID]), TLY_LIT(""));
  log_hop(p, from, to, kind);
  p->f[F_HOLDER] = to;
  p->f[F_OFFER_BANK] = TLY_LIT("");
  p->f[F_OFFER_BPS] = TLY_LIT("");
}

static void part_json(tly_buf *b, const part *p) {
  tly_json_open(b, '{');
  tly_json_str_field(b, "id", p->f[F_ID]);
  tly_json_str_field(b, "root", p->f[F_ROOT]);
  tly_json_str_field(b, "parent", p->f[F_PARENT]);
  tly_json_str_field(b, "issuer", p->f[F_ISSUER]);
  tly_json_str_field(b, "holder", p->f[F_HOLDER]);
  tly_json_u64_field(b, "amount", num(p->f[F_AMOUNT]));
  tly_json_u64_field(b, "maturity_ms", num(p->f[F_MATURITY_MS]));
  tly_json_str_field(b, "status", p->f[F_STATUS]);
  if (p->f[F_FINANCED_BY].len) {
    tly_json_str_field(b, "financed_by", p->f[F_FINANCED_BY]);
    tly_json_u64_field(b, "price", num(p->f[F_PRICE]));
  }
  if (p->f[F_OFFER_BANK].len) {
    tly_json_str_field(b, "offer_bank", p->f[F_OFFER_BANK]);
    tly_json_u64_field(b, "offer_bps", num(p->f[F_OFFER_BPS]));
  }
  tly_json_u64_field(b, "created_ms", num(p->f[F_CREATED_MS]));
  tly_json_close(b, '}');
}

static void return_part(const part *p) {
  tly_buf out;
  tly_buf_init(&out);
  part_json(&out, p);
  tly_return(tly_buf_str(&out));
}

static void new_part(part *p, tly_str id, tly_str root, tly_str parent, tly_str issuer,
                     tly_str holder, uint64_t amount, tly_str maturity) {
  for (int i = 0; i < F_COUNT; i++) p->f[i] = TLY_LIT("");
  p->f[F_ID] = id;
  p->f[F_ROOT] = root;
  p->f[F_PARENT] = parent;
  p->f[F_ISSUER] = issuer;
  p->f[F_HOLDER] = holder;
  p->f[F_AMOUNT] = u64_str(amount);
  p->f[F_MATURITY_MS] = maturity;
  p->f[F_STATUS] = TLY_LIT("active");
  p->f[F_CREATED_MS] = u64_str(tly_tx_time());
  p->f[F_HOPS] = TLY_LIT("0");
  tly_put(tly_key2("h/", holder, id), TLY_LIT(""));
}

static void require_new_id(tly_str id) {
  tly_check_id(id, "part id");
  part existing;
  if (load(id, &existing)) fail2("part id ", id, " is already used");
}

/* init(role, org, ...): roles core (may issue and settle) and bank (may finance). */
TALLY_FN(init) { tly_roles_set(args); }

/* issue(id, supplier, amount, maturity_ms): a core enterprise owes `amount` to `supplier`,
 * payable at `maturity_ms`. */
TALLY_FN(issue) {
  tly_expect_fields(args, 4);
  tly_str org = tly_caller_org();
  tly_require_role("core", org);
  tly_str id = tly_field(args, 0);
  require_new_id(id);
  tly_str supplier = tly_field(args, 1);
  if (supplier.len == 0) tly_fail_lit("supplier must not be empty");
  uint64_t amount = tly_field_u64(args, 2);
  if (amount == 0 || amount > MAX_AMOUNT) tly_fail_lit("amount must be 1 to 10^15");
  uint64_t maturity = tly_field_u64(args, 3);
  if (maturity <= tly_tx_time()) tly_fail_lit("maturity must be in the future");
  part p;
  new_part(&p, id, id, TLY_LIT(""), org, supplier, amount, tly_field(args, 3));
  log_hop(&p, org, supplier, "issue");
  save(&p);
  tly_emit(TLY_LIT("issued"), id);
  return_part(&p);
}

/* split(id, new_id, amount): the holder cuts `amount` off a part into a new part it also
 * holds; the original keeps the rest. Only less than the whole can be split off. */
TALLY_FN(split) {
  tly_expect_fields(args, 3);
  tly_str org = tly_caller_org();
  part p;
  load_or_fail(tly_field(args, 0), &p);
  require_holder(&p, org);
  tly_str new_id = tly_field(args, 1);
  require_new_id(new_id);
  uint64_t amount = tly_field_u64(args, 2);
  uint64_t have = num(p.f[F_AMOUNT]);
  if (amount == 0 || amount >= have) {
    tly_buf m;
    tly_buf_init(&m);
    tly_buf_lit(&m, "cannot split ");
    tly_buf_u64(&m, amount);
    tly_buf_lit(&m, " off part ");
    tly_buf_bytes(&m, p.f[F_ID]);
    tly_buf_lit(&m, " holding ");
    tly_buf_u64(&m, have);
    tly_buf_lit(&m, ": the amount must be more than 0 and less than the part");
    tly_fail(tly_buf_str(&m));
  }
  p.f[F_AMOUNT] = u64_str(have - amount);
  /* The amount changed, so an open financing offer no longer describes the part. */
  p.f[F_OFFER_BANK] = TLY_LIT("");
  p.f[F_OFFER_BPS] = TLY_LIT("");
  save(&p);
  part child;
  new_part(&child, new_id, p.f[F_ROOT], p.f[F_ID], p.f[F_ISSUER], org, amount,
           p.f[F_MATURITY_MS]);
  save(&child);
  tly_put(tly_key2("c/", p.f[F_ID], new_id), TLY_LIT(""));
  tly_emit(TLY_LIT("split"), new_id);
  return_part(&child);
}

/* transfer(id, to): the holder passes a whole part to another organization. */
TALLY_FN(transfer) {
  tly_expect_fields(args, 2);
  tly_str org = tly_caller_org();
  part p;
  load_or_fail(tly_field(args, 0), &p);
  require_holder(&p, org);
  tly_str to = tly_field(args, 1);
  if (to.len == 0 || tly_eq(to, org)) tly_fail_lit("transfer to another organization");
  move_holder(&p, to, "transfer");
  save(&p);
  tly_emit(TLY_LIT("transferred"), p.f[F_ID]);
  return_part(&p);
}

/* offer(id, bank, discount_bps): the holder offers a part to a bank for financing at a
 * discount in basis points (1/100 of a percent). */
TALLY_FN(offer) {
  tly_expect_fields(args, 3);
  tly_str org = tly_caller_org();
  part p;
  load_or_fail(tly_field(args, 0), &p);
  require_holder(&p, org);
  tly_str bank = tly_field(args, 1);
  tly_require_role("bank", bank);
  uint64_t bps = tly_field_u64(args, 2);
  if (bps >= 10000) tly_fail_lit("discount must be below 10000 basis points");
  p.f[F_OFFER_BANK] = bank;
  p.f[F_OFFER_BPS] = u64_str(bps);
  save(&p);
  tly_emit(TLY_LIT("offered"), p.f[F_ID]);
  return_part(&p);
}

/* finance(id): the bank named in the offer accepts it; it becomes the holder and the price it
 * paid (amount less the discount, rounded down) is recorded. */
TALLY_FN(finance) {
  tly_expect_fields(args, 1);
  tly_str org = tly_caller_org();
  tly_require_role("bank", org);
  part p;
  load_or_fail(tly_field(args, 0), &p);
  if (!tly_eq_lit(p.f[F_STATUS], "active")) fail2("part ", p.f[F_ID], " is settled");
  if (!tly_eq(p.f[F_OFFER_BANK], org)) fail2("part ", p.f[F_ID], " is not offered to this bank");
  uint64_t amount = num(p.f[F_AMOUNT]), bps = num(p.f[F_OFFER_BPS]);
  p.f[F_PRICE] = u64_str(amount * (10000 - bps) / 10000);
  p.f[F_FINANCED_BY] = org;
  move_holder(&p, org, "finance");
  save(&p);
  tly_emit(TLY_LIT("financed"), p.f[F_ID]);
  return_part(&p);
}

/* settle(id): the issuing core enterprise pays the holder at or after maturity. */
TALLY_FN(settle) {
  tly_expect_fields(args, 1);
  tly_str org = tly_caller_org();
  tly_require_role("core", org);
  part p;
  load_or_fail(tly_field(args, 0), &p);
  if (!tly_eq(p.f[F_ISSUER], org)) fail2("only the issuer ", p.f[F_ISSUER], " settles this part");
  if (!tly_eq_lit(p.f[F_STATUS], "active")) fail2("part ", p.f[F_ID], " is already settled");
  if (tly_tx_time() < num(p.f[F_MATURITY_MS])) fail2("part ", p.f[F_ID], " is not mature yet");
  p.f[F_STATUS] = TLY_LIT("settled");
  p.f[F_OFFER_BANK] = TLY_LIT("");
  p.f[F_OFFER_BPS] = TLY_LIT("");
  tly_del(tly_key2("h/", p.f[F_HOLDER], p.f[F_ID]));
  log_hop(&p, p.f[F_HOLDER], org, "settle");
  save(&p);
  tly_emit(TLY_LIT("settled"), p.f[F_ID]);
  return_part(&p);
}

/* get(id) */
TALLY_FN(get) {
  tly_expect_fields(args, 1);
  part p;
  load_or_fail(tly_field(args, 0), &p);
  return_part(&p);
}

/* Writes a part, its holder changes and, recursively, its children. Depth is bounded by the
 * number of splits, each a transaction, so recursion stays far below the stack limit for any
 * realistic receivable; a pathological one fails the query cleanly (stack limit), nothing else. */
static void trace_part(tly_buf *out, tly_str id) {
  part p;
  load_or_fail(id, &p);
  tly_json_open(out, '{');
  tly_json_key(out, "part");
  part_json(out, &p);
  tly_json_key(out, "hops");
  tly_json_open(out, '[');
  tly_kv *hops;
  uint32_t n = tly_prefix(tly_key2("t/", id, TLY_LIT("")), 1000, &hops);
  for (uint32_t i = 0; i < n; i++) {
    tly_fields h;
    if (tly_fields_decode(hops[i].value, &h) || h.count != 5) tly_fail_lit("corrupt hop");
    tly_json_open(out, '{');
    tly_json_str_field(out, "from", h.items[0]);
    tly_json_str_field(out, "to", h.items[1]);
    tly_json_str_field(out, "kind", h.items[2]);
    tly_json_u64_field(out, "time_ms", num(h.items[3]));
    tly_json_str_field(out, "tx_id", h.items[4]);
    tly_json_close(out, '}');
  }
  tly_json_close(out, ']');
  tly_json_key(out, "children");
  tly_json_open(out, '[');
  tly_str prefix = tly_key2("c/", id, TLY_LIT(""));
  tly_kv *kids;
  uint32_t k = tly_prefix(prefix, 1000, &kids);
  for (uint32_t i = 0; i < k; i++) {
    tly_str key = kids[i].key;
    trace_part(out, (tly_str){key.ptr + prefix.len, key.len - prefix.len});
  }
  tly_json_close(out, ']');
  tly_json_close(out, '}');
}

/* trace(id): the whole receivable that `id` belongs to, from its root: every part, who held
 * it when (issue, transfers, financing, settlement, with transaction ids) and its splits. */
TALLY_FN(trace) {
  tly_expect_fields(args, 1);
  part p;
  load_or_fail(tly_field(args, 0), &p);
  tly_buf out;
  tly_buf_init(&out);
  trace_part(&out, p.f[F_ROOT]);
  tly_return(tly_buf_str(&out));
}

/* holdings(org): the active parts an organization holds (up to 1000). */
TALLY_FN(holdings) {
  tly_expect_fields(args, 1);
  tly_str prefix = tly_key2("h/", tly_field(args, 0), TLY_LIT(""));
  tly_kv *kv;
  uint32_t n = tly_prefix(prefix, 1000, &kv);
  tly_buf out;
  tly_buf_init(&out);
  tly_json_open(&out, '[');
  for (uint32_t i = 0; i < n; i++) {
    part p;
    tly_str key = kv[i].key;
    load_or_fail((tly_str){key.ptr + prefix.len, key.len - prefix.len}, &p);
    part_json(&out, &p);
  }
  tly_json_close(&out, ']');
  tly_return(tly_buf_str(&out));
}
