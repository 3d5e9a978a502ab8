#!/usr/bin/env node
// ONNX Runtime peer for bench/run.sh: runs the ONNX export of the same BERT checkpoint
// (bench/peers/torch_bert.py --export) with onnxruntime-node's bundled CPU library.
//
// Session: intra-op threads = --threads (2), inter-op 1, sequential execution, all graph
// optimizations (ORT's default for the CPU provider is the same level 'all').
// --check DUMP compares last hidden states with the C engine's dump; --bench times batches.
// Results go to --json FILE.
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

function args() {
  const a = { threads: 2, seq: 128, batches: '1,8,32', runs: 5, warmup: 2 };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i++) {
    const k = v[i].replace(/^--/, '');
    if (k === 'bench') a.bench = true;
    else a[k] = v[++i];
  }
  for (const k of ['threads', 'seq', 'runs', 'warmup']) a[k] = Number(a[k]);
  if (!a.model) throw new Error('usage: ort_bench.js --model X.onnx [--config config.json] [--check DUMP] [--bench] [--json FILE]');
  return a;
}

function rssKb() {
  const m = fs.readFileSync('/proc/self/status', 'utf8').match(/VmRSS:\s+(\d+)/);
  return m ? Number(m[1]) : -1;
}

// splitmix-free simple LCG: ids only need to be valid, not random-looking.
function fillIds(n, len, vocab, seed) {
  const ids = new BigInt64Array(n * len);
  let s = BigInt(seed);
  for (let i = 0; i < n * len; i++) {
    s = (s * 6364136223846793005n + 1442695040888963407n) & ((1n << 64n) - 1n);
    ids[i] = 104n + ((s >> 33n) % BigInt(vocab - 104));
  }
  return ids;
}

function feeds(ids, n, len) {
  const ones = new BigInt64Array(n * len).fill(1n);
  const zeros = new BigInt64Array(n * len);
  return {
    input_ids: new ort.Tensor('int64', ids, [n, len]),
    attention_mask: new ort.Tensor('int64', ones, [n, len]),
    token_type_ids: new ort.Tensor('int64', zeros, [n, len]),
  };
}

function flops(c, n, seq) {
  const t = n * seq, h = c.hidden_size, f = c.intermediate_size;
  return c.num_hidden_layers * (2 * t * (4 * h * h + 2 * h * f) + n * 4 * seq * seq * h);
}

async function main() {
  const a = args();
  const res = { runtime: 'onnxruntime-node', version: require('onnxruntime-node/package.json').version,
                threads: a.threads, seq: a.seq, rss_before_kb: rssKb() };
  const t0 = process.hrtime.bigint();
  const sess = await ort.InferenceSession.create(a.model, {
    intraOpNumThreads: a.threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  res.load_s = Number(process.hrtime.bigint() - t0) / 1e9;
  res.rss_after_load_kb = rssKb();
  const out = sess.outputNames[0];

  if (a.check) {
    const meta = JSON.parse(fs.readFileSync(path.join(a.check, 'meta.json'), 'utf8'));
    const { batch: n, seq: L } = meta;
    const raw = fs.readFileSync(path.join(a.check, 'ids.bin'));
    const i32 = new Int32Array(raw.buffer, raw.byteOffset, n * L);
    const ids = BigInt64Array.from(i32, (x) => BigInt(x));
    const refb = fs.readFileSync(path.join(a.check, 'hidden.bin'));
    const ref = new Float32Array(refb.buffer, refb.byteOffset, refb.length / 4);
    const r = await sess.run(feeds(ids, n, L));
    const got = r[out].data;
    let d = 0;
    for (let i = 0; i < ref.length; i++) d = Math.max(d, Math.abs(got[i] - ref[i]));
    res.check_max_abs_diff = d;
    console.log(`onnxruntime vs peftd: max |diff| of last hidden states = ${d.toExponential(2)} over ${n} x ${L} x ${meta.hidden}`);
  }

  if (a.bench) {
    const cfg = JSON.parse(fs.readFileSync(a.config, 'utf8'));
    res.results = [];
    console.log(`ONNX Runtime ${res.version} (node), ${a.threads} intra-op threads, seq ${a.seq}`);
    console.log(['batch', 'N', 'ms', 'seq/s', 'GFLOP/s'].map((s, i) => s.padStart(i < 2 ? 6 : 12)).join(' '));
    for (const b of a.batches.split(',').map(Number)) {
      const f = feeds(fillIds(b, a.seq, cfg.vocab_size, b), b, a.seq);
      for (let w = 0; w < a.warmup; w++) await sess.run(f);
      let t = process.hrtime.bigint();
      await sess.run(f);
      const one = Number(process.hrtime.bigint() - t) / 1e9;
      const runs = Math.max(a.runs, Math.min(200, Math.floor(1.5 / Math.max(one, 1e-4))));
      const s = [];
      for (let k = 0; k < runs; k++) {
        t = process.hrtime.bigint();
        await sess.run(f);
        s.push(Number(process.hrtime.bigint() - t) / 1e9);
      }
      s.sort((x, y) => x - y);
      const med = s.length % 2 ? s[(s.length - 1) / 2] : 0.5 * (s[s.length / 2 - 1] + s[s.length / 2]);
      const fl = flops(cfg, b, a.seq);
      res.results.push({ batch: b, runs, median_s: med, min_s: s[0], max_s: s[s.length - 1],
                         seq_per_s: b / med, gflops: fl / med * 1e-9, samples_s: s });
      console.log([String(b).padStart(6), String(runs).padStart(6), (med * 1e3).toFixed(2).padStart(12),
                   (b / med).toFixed(2).padStart(12), (fl / med * 1e-9).toFixed(1).padStart(12)].join(' '));
    }
  }
  if (a.json) fs.writeFileSync(a.json, JSON.stringify(res, null, 1));
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
