/* e-invoice: merchants issue invoices, the tax bureau reads them all, an invoice is
 * reimbursed at most once, and a cancellation is recorded, never erased. See README.md. */
#include "tally.h"

/* State:
 *   role/<role>/<org>         from init: roles tax, merchant, reimburser
 *   inv/<merchant>/<number>   the invoice record (fields below) */

enum {
  F_MERCHANT,
  F_NUMBER,
  F_BUYER,
  F_AMOUNT,
  F_TAX,
  F_ITEM,
  F_ISSUED_MS,
  F_STATUS, /* issued | reimbursed | cancelled */
  F_REIMBURSED_BY,
  F_REIMBURSED_MS,
  F_REIMBURSED_TX,
  F_CANCELLED_MS,
  F_CANCEL_REASON,
  F_COUNT
};

typedef struct {
  tly_str f[F_COUNT];
} invoice;

static int load(tly_str merchant, tly_str number, invoice *inv) {
  tly_str rec;
  if (!tly_get(tly_key2("inv/", merchant, number), &rec)) return 0;
  tly_fields f;
  if (tly_fields_decode(rec, &f) || f.count != F_COUNT) tly_fail_lit("corrupt invoice record");
  for (int i = 0; i < F_COUNT; i++) inv->f[i] = f.items[i];
  return 1;
}

static void load_or_fail(tly_str merchant, tly_str number, invoice *inv) {
  if (load(merchant, number, inv)) return;
  tly_buf m;
  tly_buf_init(&m);
  tly_buf_lit(&m, "no invoice ");
  tly_buf_bytes(&m, merchant);
  tly_buf_byte(&m, '/');
  tly_buf_bytes(&m, number);
  tly_fail(tly_buf_str(&m));
}

static void save(const invoice *inv) {
  tly_buf rec;
  tly_rec_init(&rec);
  for (int i = 0; i < F_COUNT; i++) tly_rec_add(&rec, inv->f[i]);
  tly_put(tly_key2("inv/", inv->f[F_MERCHANT], inv->f[F_NUMBER]), tly_buf_str(&rec));
}

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

static void invoice_json(tly_buf *b, const invoice *inv) {
  tly_json_open(b, '{');
  tly_json_str_field(b, "merchant", inv->f[F_MERCHANT]);
  tly_json_str_field(b, "number", inv->f[F_NUMBER]);
  tly_json_str_field(b, "buyer", inv->f[F_BUYER]);
  tly_json_u64_field(b, "amount", num(inv->f[F_AMOUNT]));
  tly_json_u64_field(b, "tax", num(inv->f[F_TAX]));
  tly_json_str_field(b, "item", inv->f[F_ITEM]);
  tly_json_u64_field(b, "issued_ms", num(inv->f[F_ISSUED_MS]));
  tly_json_str_field(b, "status", inv->f[F_STATUS]);
  if (inv->f[F_REIMBURSED_BY].len) {
    tly_json_str_field(b, "reimbursed_by", inv->f[F_REIMBURSED_BY]);
    tly_json_u64_field(b, "reimbursed_ms", num(inv->f[F_REIMBURSED_MS]));
    tly_json_str_field(b, "reimbursed_tx", inv->f[F_REIMBURSED_TX]);
  }
  if (inv->f[F_CANCELLED_MS].len) {
    tly_json_u64_field(b, "cancelled_ms", num(inv->f[F_CANCELLED_MS]));
    tly_json_str_field(b, "cancel_reason", inv->f[F_CANCEL_REASON]);
  }
  tly_json_close(b, '}');
}

static void return_invoice(const invoice *inv) {
  tly_buf out;
  tly_buf_init(&out);
  invoice_json(&out, inv);
  tly_return(tly_buf_str(&out));
}

static void fail_status(const invoice *inv, const char *what) {
  tly_buf m;
  tly_buf_init(&m);
  tly_buf_lit(&m, "invoice ");
  tly_buf_bytes(&m, inv->f[F_MERCHANT]);
  tly_buf_byte(&m, '/');
  tly_buf_bytes(&m, inv->f[F_NUMBER]);
  tly_buf_lit(&m, " is ");
  tly_buf_bytes(&m, inv->f[F_STATUS]);
  if (inv->f[F_REIMBURSED_BY].len) {
    tly_buf_lit(&m, " (by ");
    tly_buf_bytes(&m, inv->f[F_REIMBURSED_BY]);
    tly_buf_lit(&m, " at ");
    tly_buf_bytes(&m, inv->f[F_REIMBURSED_MS]);
    tly_buf_lit(&m, ")");
  }
  tly_buf_lit(&m, "; cannot ");
  tly_buf_lit(&m, what);
  tly_fail(tly_buf_str(&m));
}

/* init(role, org, ...): roles tax, merchant, reimburser. Run by the lifecycle only. */
TALLY_FN(init) { tly_roles_set(args); }

/* issue(number, buyer, amount, tax, item): by a merchant, for its own invoice numbers. */
TALLY_FN(issue) {
  tly_expect_fields(args, 5);
  tly_str org = tly_caller_org();
  tly_require_role("merchant", org);
  tly_str number = tly_field(args, 0);
  tly_check_id(number, "invoice number");
  invoice inv;
  if (load(org, number, &inv)) tly_fail_lit("invoice number already used by this merchant");
  tly_field_u64(args, 2); /* checks amount and tax are numbers */
  tly_field_u64(args, 3);
  if (tly_field(args, 1).len == 0) tly_fail_lit("buyer must not be empty");
  if (tly_field(args, 4).len > 1024) tly_fail_lit("item is longer than 1024 bytes");
  for (int i = 0; i < F_COUNT; i++) inv.f[i] = TLY_LIT("");
  inv.f[F_MERCHANT] = org;
  inv.f[F_NUMBER] = number;
  inv.f[F_BUYER] = tly_field(args, 1);
  inv.f[F_AMOUNT] = tly_field(args, 2);
  inv.f[F_TAX] = tly_field(args, 3);
  inv.f[F_ITEM] = tly_field(args, 4);
  inv.f[F_ISSUED_MS] = u64_str(tly_tx_time());
  inv.f[F_STATUS] = TLY_LIT("issued");
  save(&inv);
  tly_emit(TLY_LIT("invoice_issued"), tly_key2("", org, number));
  return_invoice(&inv);
}

/* Who may read an invoice: its merchant, the tax bureau, and reimbursers (who must check an
 * invoice before paying it out). Other merchants may not read a competitor's sales. */
static void require_reader(const invoice *inv) {
  tly_str org = tly_caller_org();
  if (tly_eq(org, inv->f[F_MERCHANT]) || tly_has_role(TLY_LIT("tax"), org) ||
      tly_has_role(TLY_LIT("reimburser"), org))
    return;
  tly_buf m;
  tly_buf_init(&m);
  tly_buf_lit(&m, "organization ");
  tly_buf_bytes(&m, org);
  tly_buf_lit(&m, " may not read this invoice");
  tly_fail(tly_buf_str(&m));
}

/* get(merchant, number) */
TALLY_FN(get) {
  tly_expect_fields(args, 2);
  invoice inv;
  load_or_fail(tly_field(args, 0), tly_field(args, 1), &inv);
  require_reader(&inv);
  return_invoice(&inv);
}

/* reimburse(merchant, number): by a reimburser, once per invoice across all of them. */
TALLY_FN(reimburse) {
  tly_expect_fields(args, 2);
  tly_str org = tly_caller_org();
  tly_require_role("reimburser", org);
  invoice inv;
  load_or_fail(tly_field(args, 0), tly_field(args, 1), &inv);
  if (!tly_eq_lit(inv.f[F_STATUS], "issued")) fail_status(&inv, "reimburse it");
  uint8_t id[32];
  tly_tx_id(id);
  tly_buf idhex;
  tly_buf_init(&idhex);
  tly_buf_hex(&idhex, (tly_str){id, 32});
  inv.f[F_STATUS] = TLY_LIT("reimbursed");
  inv.f[F_REIMBURSED_BY] = org;
  inv.f[F_REIMBURSED_MS] = u64_str(tly_tx_time());
  inv.f[F_REIMBURSED_TX] = tly_buf_str(&idhex);
  save(&inv);
  tly_emit(TLY_LIT("invoice_reimbursed"), tly_key2("", inv.f[F_MERCHANT], inv.f[F_NUMBER]));
  return_invoice(&inv);
}

/* cancel(number, reason): by the issuing merchant, while not reimbursed. The record stays,
 * marked cancelled with time and reason. */
TALLY_FN(cancel) {
  tly_expect_fields(args, 2);
  tly_str org = tly_caller_org();
  tly_require_role("merchant", org);
  invoice inv;
  load_or_fail(org, tly_field(args, 0), &inv);
  if (!tly_eq_lit(inv.f[F_STATUS], "issued")) fail_status(&inv, "cancel it");
  tly_str reason = tly_field(args, 1);
  if (reason.len == 0 || reason.len > 1024) tly_fail_lit("reason must be 1 to 1024 bytes");
  inv.f[F_STATUS] = TLY_LIT("cancelled");
  inv.f[F_CANCELLED_MS] = u64_str(tly_tx_time());
  inv.f[F_CANCEL_REASON] = reason;
  save(&inv);
  tly_emit(TLY_LIT("invoice_cancelled"), tly_key2("", org, inv.f[F_NUMBER]));
  return_invoice(&inv);
}

/* list(merchant[, after]): up to 100 invoices of a merchant in number order, after `after`;
 * for the tax bureau, and for the merchant itself. */
TALLY_FN(list) {
  if (args->count < 1 || args->count > 2) tly_fail_lit("expected merchant [after]");
  tly_str merchant = tly_field(args, 0);
  tly_str org = tly_caller_org();
  if (!tly_eq(org, merchant)) tly_require_role("tax", org);
  tly_str prefix = tly_key2("inv/", merchant, TLY_LIT(""));
  tly_kv *kv;
  uint32_t n;
  if (args->count == 2) {
    tly_buf start, end;
    tly_buf_init(&start);
    tly_buf_bytes(&start, prefix);
    tly_buf_bytes(&start, tly_field(args, 1));
    tly_buf_byte(&start, 0); /* just after `after` */
    tly_buf_init(&end);
    tly_buf_bytes(&end, prefix);
    end.ptr[end.len - 1] = '/' + 1; /* the end of the prefix */
    n = tly_range(tly_buf_str(&start), tly_buf_str(&end), 100, &kv);
  } else {
    n = tly_prefix(prefix, 100, &kv);
  }
  tly_buf out;
  tly_buf_init(&out);
  tly_json_open(&out, '[');
  for (uint32_t i = 0; i < n; i++) {
    tly_fields f;
    if (tly_fields_decode(kv[i].value, &f) || f.count != F_COUNT)
      tly_fail_lit("corrupt invoice record");
    invoice inv;
    for (int j = 0; j < F_COUNT; j++) inv.f[j] = f.items[j];
    invoice_json(&out, &inv);
  }
  tly_json_close(&out, ']');
  tly_return(tly_buf_str(&out));
}
