/* Tally console: proofs checked in the browser.
 *
 * This file mirrors three pieces of tally-protocol, so that a page can check what a node
 * served without trusting the node or the console:
 *   - hash.rs    Hash::tagged: SHA-256 over (u32 big-endian length of the tag, tag, parts);
 *   - block.rs   BlockHeader's canonical bytes and its hash, tagged "tally-block";
 *   - merkle.rs  the transaction tree: leaves tagged "tally-merkle-leaf", inner nodes
 *                "tally-merkle-node", an odd last node promoted unchanged; a proof's sides are
 *                recomputed from the index and the leaf count, never taken from the proof.
 *
 * SHA-256 is written out here because crypto.subtle exists only on secure origins (HTTPS or
 * localhost), and a console on a cluster may well be reached over plain HTTP on another name.
 *
 * The block header format may gain a version field and more commitments soon (issue 12).
 * The console's browser test cross-checks this file against real node output (block hashes and
 * SHA-256 test vectors computed by Rust), so a format change shows up there as a failing test
 * rather than as a page that silently verifies the wrong thing.
 */
(function () {
  'use strict';

  var K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ];
  var H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

  /* Incremental SHA-256 (FIPS 180-4): update() with byte arrays, then digest() once. */
  function Sha256() {
    this.h = H0.slice();
    this.block = new Uint8Array(64);
    this.fill = 0;
    this.total = 0;
    this.w = new Int32Array(64);
  }

  Sha256.prototype.compress = function (b, off) {
    var w = this.w, h = this.h, t;
    for (t = 0; t < 16; t++) {
      var i = off + 4 * t;
      w[t] = (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3];
    }
    for (t = 16; t < 64; t++) {
      var x = w[t - 15], y = w[t - 2];
      var s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      var s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
    }
    var a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (t = 0; t < 64; t++) {
      var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      var ch = (e & f) ^ (~e & g);
      var t1 = (hh + S1 + ch + K[t] + w[t]) | 0;
      var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      var maj = (a & bb) ^ (a & c) ^ (bb & c);
      var t2 = (S0 + maj) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = bb; bb = a; a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0; h[1] = (h[1] + bb) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + hh) | 0;
  };

  Sha256.prototype.update = function (bytes) {
    var i = 0, n = bytes.length;
    this.total += n;
    if (this.fill > 0) {
      while (i < n && this.fill < 64) this.block[this.fill++] = bytes[i++];
      if (this.fill < 64) return this;
      this.compress(this.block, 0);
      this.fill = 0;
    }
    for (; i + 64 <= n; i += 64) this.compress(bytes, i);
    while (i < n) this.block[this.fill++] = bytes[i++];
    return this;
  };

  Sha256.prototype.digest = function () {
    var bits = this.total * 8;
    var pad = new Uint8Array(((this.fill < 56) ? 56 : 120) - this.fill + 8);
    pad[0] = 0x80;
    var hi = Math.floor(bits / 4294967296), lo = bits % 4294967296;
    var p = pad.length - 8;
    pad[p] = hi >>> 24; pad[p + 1] = hi >>> 16; pad[p + 2] = hi >>> 8; pad[p + 3] = hi;
    pad[p + 4] = lo >>> 24; pad[p + 5] = lo >>> 16; pad[p + 6] = lo >>> 8; pad[p + 7] = lo;
    this.total -= pad.length; /* padding is not message */
    this.update(pad);
    var out = new Uint8Array(32);
    for (var i = 0; i < 8; i++) {
      out[4 * i] = this.h[i] >>> 24; out[4 * i + 1] = this.h[i] >>> 16;
      out[4 * i + 2] = this.h[i] >>> 8; out[4 * i + 3] = this.h[i];
    }
    return out;
  };

  function sha256(bytes) { return new Sha256().update(bytes).digest(); }

  var HEX = '0123456789abcdef';
  function toHex(b) {
    var s = '';
    for (var i = 0; i < b.length; i++) s += HEX[b[i] >> 4] + HEX[b[i] & 15];
    return s;
  }
  function fromHex(s, len) {
    if (typeof s !== 'string' || s.length % 2 || !/^[0-9a-fA-F]*$/.test(s)) throw new Error('not hex: ' + s);
    if (len !== undefined && s.length !== 2 * len) throw new Error('expected ' + len + ' bytes of hex, got ' + s);
    var b = new Uint8Array(s.length / 2);
    for (var i = 0; i < b.length; i++) b[i] = parseInt(s.substr(2 * i, 2), 16);
    return b;
  }
  function utf8(s) { return new TextEncoder().encode(s); }

  /* Canonical encoding (codec.rs): fixed-width big-endian integers, u32-length-prefixed strings. */
  function u32(n) {
    return new Uint8Array([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
  }
  function u64(n) {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error('number out of exact range: ' + n);
    var hi = Math.floor(n / 4294967296), lo = n % 4294967296;
    var b = new Uint8Array(8);
    b.set(u32(hi), 0);
    b.set(u32(lo), 4);
    return b;
  }
  function str(s) { var b = utf8(s); return concat([u32(b.length), b]); }
  function concat(parts) {
    var n = 0, i;
    for (i = 0; i < parts.length; i++) n += parts[i].length;
    var out = new Uint8Array(n), o = 0;
    for (i = 0; i < parts.length; i++) { out.set(parts[i], o); o += parts[i].length; }
    return out;
  }

  /* Hash::tagged(domain, parts). */
  function tagged(domain, parts) {
    var d = utf8(domain);
    var h = new Sha256().update(u32(d.length)).update(d);
    for (var i = 0; i < parts.length; i++) h.update(parts[i]);
    return h.digest();
  }

  /* BlockHeader::encode (format 2): version byte, channel, number, prev_hash, tx_root,
   * results_root, state_root, timestamp_ms, raft_term, raft_index. Another version is refused,
   * as the node's decoder refuses it. */
  var HEADER_VERSION = 2;
  function headerBytes(hd) {
    if (hd.version !== HEADER_VERSION) throw new Error('unsupported block header version ' + hd.version);
    return concat([
      new Uint8Array([HEADER_VERSION]), str(hd.channel), u64(hd.number),
      fromHex(hd.prev_hash, 32), fromHex(hd.tx_root, 32), fromHex(hd.results_root, 32),
      fromHex(hd.state_root, 32), u64(hd.timestamp_ms), u64(hd.raft_term), u64(hd.raft_index)
    ]);
  }

  /* RejectCode::ALL: a code's position is its canonical tag. */
  var REJECT_CODES = ['bad_signature', 'unknown_certificate', 'not_member', 'forbidden', 'duplicate',
    'expired', 'read_conflict', 'wrong_channel', 'too_large', 'malformed', 'chaincode_error',
    'out_of_fuel', 'memory_limit', 'not_approved', 'unknown_chaincode'];
  /* TxStatus::encode: 0 for committed; 1, the code's tag and the reason for rejected. */
  function statusBytes(st) {
    if (st.status === 'committed') return new Uint8Array([0]);
    if (st.status !== 'rejected') throw new Error('unknown status ' + st.status);
    var tag = REJECT_CODES.indexOf(st.code);
    if (tag < 0) throw new Error('unknown reject code ' + st.code);
    return concat([new Uint8Array([1, tag]), str(st.reason)]);
  }
  /* block::result_leaf: the leaf of a transaction's outcome under the results root. */
  function resultLeaf(txIdHex, st, effectsHashHex) {
    return toHex(tagged('tally-tx-result',
      [fromHex(txIdHex, 32), statusBytes(st), fromHex(effectsHashHex, 32)]));
  }
  function statusText(st) {
    return st.status === 'committed' ? 'COMMITTED' : 'REJECTED (' + st.code + ')';
  }
  function blockHash(hd) { return toHex(tagged('tally-block', [headerBytes(hd)])); }

  function leaf(h) { return tagged('tally-merkle-leaf', [h]); }
  function node(l, r) { return tagged('tally-merkle-node', [l, r]); }
  function eq(a, b) {
    if (a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  /* merkle::verify: item (hex) at proof.index of proof.leaves under root (hex). */
  function merkleVerify(itemHex, proof, rootHex) {
    if (!(proof.index < proof.leaves)) return false;
    var i = proof.index, n = proof.leaves, acc = leaf(fromHex(itemHex, 32)), step = 0;
    while (n > 1) {
      var sib = i ^ 1;
      if (sib < n) {
        var s = proof.path[step++];
        if (!s) return false;
        if (s.left !== (sib < i)) return false;
        var sibling = fromHex(s.sibling, 32);
        acc = s.left ? node(sibling, acc) : node(acc, sibling);
      }
      i = Math.floor(i / 2);
      n = Math.ceil(n / 2);
    }
    return step === proof.path.length && eq(acc, fromHex(rootHex, 32));
  }

  /* The checks of tally_client::verify_receipt and InclusionProof::verify, plus the headers
   * other nodes serve. `d` is the page's proof data (pages/tx.rs, proof_json). Returns
   * {ok, contradicted, computed, checks: [{ok, text}]}. */
  function verifyInclusion(d) {
    var checks = [], ok = true, contradicted = false, computed = null;
    function check(pass, text) { checks.push({ ok: pass, text: text }); if (!pass) ok = false; }
    try {
      var p = d.proof, hd = p.header;
      check(p.tx_id === d.tx_id, 'the proof is for transaction ' + d.tx_id.slice(0, 12) + '…');
      check(hd.number === d.block && hd.channel === d.channel,
        'its header is block ' + d.block + ' of channel ' + d.channel);
      computed = blockHash(hd);
      check(computed === d.block_hash,
        'the header hashes to ' + computed.slice(0, 12) + '…, the block hash of the receipt');
      check(merkleVerify(resultLeaf(d.tx_id, p.status, p.effects_hash), p.merkle, hd.results_root),
        'a Merkle path of ' + p.merkle.path.length + ' steps leads from the transaction\u2019s outcome, ' +
        statusText(p.status) + ' (leaf ' + p.merkle.index + ' of ' + p.merkle.leaves +
        '), to the header\u2019s results root');
      if (d.status) {
        check(JSON.stringify(statusBytes(d.status)) === JSON.stringify(statusBytes(p.status)),
          'the receipt\u2019s status, ' + statusText(d.status) + ', is the proven one');
      }
      (d.witnesses || []).forEach(function (w) {
        if (w.error) {
          checks.push({ ok: null, text: w.node + ' (' + w.org + ') could not be asked: ' + w.error });
          return;
        }
        var same = blockHash(w.header) === d.block_hash;
        if (!same) contradicted = true;
        check(same, w.node + ' (' + w.org + ') serves ' + (same ? 'the same' : 'a DIFFERENT') +
          ' header for block ' + d.block);
      });
    } catch (e) {
      check(false, 'the proof could not be checked: ' + e.message);
    }
    return { ok: ok, contradicted: contradicted, computed: computed, checks: checks };
  }

  window.TallyVerify = {
    Sha256: Sha256,
    sha256: sha256,
    sha256Hex: function (bytes) { return toHex(sha256(bytes)); },
    toHex: toHex,
    fromHex: fromHex,
    tagged: function (domain, parts) { return toHex(tagged(domain, parts)); },
    headerBytes: headerBytes,
    statusBytes: statusBytes,
    resultLeaf: resultLeaf,
    blockHash: blockHash,
    merkleVerify: merkleVerify,
    verifyInclusion: verifyInclusion
  };
})();
