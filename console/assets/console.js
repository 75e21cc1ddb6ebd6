/* Tally console: the little the pages do in the browser. Proofs are checked by verify.js;
 * this file shows the verdicts, adds blocks to the channel page as they are committed, and
 * hashes a dropped file for the notary check. Every page works without it, minus those. */
(function () {
  'use strict';

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /* ---- inclusion proofs ---------------------------------------------------------------- */

  /* Writes the verdict of verify.js into the proof panel inside `root`. */
  function showProof(root, data) {
    var status = root.querySelector('#proof-status');
    var list = root.querySelector('#proof-checks');
    if (!status || !list || !window.TallyVerify) return;
    var v = window.TallyVerify.verifyInclusion(data);
    list.textContent = '';
    v.checks.forEach(function (c) {
      var li = el('li', c.ok === true ? 'yes' : c.ok === false ? 'no' : 'skip', c.text);
      list.appendChild(li);
    });
    if (v.ok) {
      status.className = 'pill ok';
      status.textContent = '\u2713 verified in this browser: transaction ' + data.tx_id.slice(0, 12) +
        '\u2026 is in block ' + data.block + ', whose header hashes to ' + v.computed.slice(0, 12) + '\u2026';
    } else {
      status.className = 'pill bad';
      status.textContent = v.contradicted
        ? '\u2717 NOT verified: a node serves a different header for this block'
        : '\u2717 NOT verified: the proof does not check out';
    }
    status.setAttribute('data-verified', v.ok ? 'true' : 'false');
    if (v.computed) status.setAttribute('data-computed-hash', v.computed);
  }

  function proofPage() {
    var island = document.getElementById('proof-data');
    if (!island) return;
    var data;
    try { data = JSON.parse(island.textContent); } catch (e) { return; }
    showProof(document, data);
  }

  /* ---- live block list ----------------------------------------------------------------- */

  function blockRow(ch, r) {
    var href = '/channels/' + encodeURIComponent(ch) + '/blocks/' + r.number;
    var tr = el('tr', 'new');
    tr.setAttribute('data-n', String(r.number));
    var a = el('a', '', String(r.number)); a.href = href;
    var td = el('td'); td.appendChild(a); tr.appendChild(td);
    tr.appendChild(el('td', '', r.time));
    tr.appendChild(el('td', 'num', String(r.txs)));
    td = el('td');
    if (r.rejected > 0) td.appendChild(el('span', 'pill bad', r.rejected + ' rejected'));
    tr.appendChild(td);
    var h = el('a', 'hash', r.hash.slice(0, 12)); h.href = href; h.title = r.hash;
    td = el('td'); td.appendChild(h); tr.appendChild(td);
    return tr;
  }

  function liveBlocks() {
    var table = document.getElementById('blocks');
    if (!table || !window.EventSource) return;
    var ch = table.getAttribute('data-channel');
    var from = table.getAttribute('data-from');
    var badge = document.getElementById('live');
    var body = table.tBodies[0];
    var src = new EventSource('/channels/' + encodeURIComponent(ch) + '/live?from=' + encodeURIComponent(from));
    function mark(cls, text) { if (badge) { badge.className = 'live ' + cls; badge.textContent = text; } }
    src.onopen = function () { mark('on', 'live'); };
    src.onerror = function () { mark('off', 'reconnecting\u2026'); };
    src.addEventListener('block', function (ev) {
      var r;
      try { r = JSON.parse(ev.data); } catch (e) { return; }
      if (body.querySelector('tr[data-n="' + r.number + '"]')) return;
      body.insertBefore(blockRow(ch, r), body.firstChild);
      var height = document.getElementById('height');
      if (height && Number(height.textContent) < r.number + 1) height.textContent = String(r.number + 1);
      while (body.rows.length > 100) body.deleteRow(body.rows.length - 1);
      mark('on', 'live');
    });
  }

  /* ---- notary: hash a dropped file here, then look the hash up ----------------------- */

  var CHUNK = 4 * 1024 * 1024;

  function hashFile(file, progress) {
    return new Promise(function (resolve, reject) {
      var h = new window.TallyVerify.Sha256(), off = 0;
      function next() {
        if (off >= file.size) { resolve(window.TallyVerify.toHex(h.digest())); return; }
        var r = new FileReader();
        r.onload = function () {
          h.update(new Uint8Array(r.result));
          off += CHUNK;
          progress(Math.min(off, file.size), file.size);
          next();
        };
        r.onerror = function () { reject(r.error); };
        r.readAsArrayBuffer(file.slice(off, off + CHUNK));
      }
      next();
    });
  }

  function fact(dl, k, v) {
    dl.appendChild(el('dt', '', k));
    var dd = el('dd');
    if (typeof v === 'string') dd.textContent = v; else dd.appendChild(v);
    dl.appendChild(dd);
  }

  function showRecord(out, answer) {
    out.textContent = '';
    var rec = answer.record || {};
    if (!rec.anchored) {
      out.appendChild(el('p', 'pill warn', 'Not anchored: no record of this document\u2019s hash on the channel.'));
      return;
    }
    out.appendChild(el('p', 'pill ok', 'Anchored on ' + new Date(rec.time_ms).toISOString().replace('T', ' ').replace('Z', ' UTC')));
    var dl = el('dl', 'facts');
    fact(dl, 'hash', rec.hash || '');
    fact(dl, 'by', (rec.org || '') + '/' + (rec.subject || ''));
    fact(dl, 'metadata', rec.metadata || '');
    if (answer.tx_href) {
      var a = el('a', 'hash', (rec.tx_id || '').slice(0, 12)); a.href = answer.tx_href; a.title = rec.tx_id;
      fact(dl, 'transaction', a);
    }
    out.appendChild(dl);
  }

  function notary() {
    var zone = document.getElementById('dropzone');
    if (!zone || !window.TallyVerify) return;
    var input = document.getElementById('file');
    var label = document.getElementById('file-hash');
    var out = document.getElementById('notary-result');
    var proof = document.getElementById('notary-proof');
    function check(file) {
      if (!file) return;
      out.textContent = '';
      proof.hidden = true;
      label.textContent = 'hashing ' + file.name + '\u2026';
      hashFile(file, function (done, all) {
        label.textContent = 'hashing ' + file.name + ': ' + Math.round(100 * done / Math.max(all, 1)) + '%';
      }).then(function (hex) {
        label.textContent = file.name + ' (' + file.size + ' bytes): SHA-256 ' + hex;
        label.setAttribute('data-hash', hex);
        return fetch(zone.getAttribute('data-lookup') + '?hash=' + hex, { credentials: 'same-origin' });
      }).then(function (r) {
        return r.json().then(function (j) { if (!r.ok) throw new Error(j.error || r.statusText); return j; });
      }).then(function (answer) {
        showRecord(out, answer);
        if (answer.proof) {
          proof.hidden = false;
          showProof(proof, answer.proof);
        }
      }).catch(function (e) {
        out.textContent = '';
        out.appendChild(el('p', 'pill bad', 'The check failed: ' + e.message));
      });
    }
    zone.addEventListener('dragover', function (e) { e.preventDefault(); zone.classList.add('over'); });
    zone.addEventListener('dragleave', function () { zone.classList.remove('over'); });
    zone.addEventListener('drop', function (e) {
      e.preventDefault();
      zone.classList.remove('over');
      check(e.dataTransfer.files[0]);
    });
    input.addEventListener('change', function () { check(input.files[0]); });
  }

  /* "/" jumps to the search box, as on most explorers. */
  function searchKey() {
    document.addEventListener('keydown', function (e) {
      var q = document.getElementById('q');
      if (e.key === '/' && q && document.activeElement !== q &&
          !/^(INPUT|TEXTAREA)$/.test(document.activeElement.tagName)) {
        e.preventDefault();
        q.focus();
      }
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    proofPage();
    liveBlocks();
    notary();
    searchKey();
  });
})();
