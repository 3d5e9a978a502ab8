// chart.js - plain SVG and HTML charts, no library: a line chart with axes, ticks and a legend
// (training curves, server history) and a list of labelled horizontal bars (label scores,
// batch sizes). Sizes come from the viewBox, so charts scale with their container; colours
// come from console.css (classes s0, s1, ...).

import { h, fmtNum } from "./ui.js";

// About n round tick values (1, 2 or 5 times a power of ten) covering [lo, hi].
function ticks(lo, hi, n) {
  const raw = (hi - lo) / Math.max(1, n);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

// Draws series = [{name, points: [[x, y], ...]}] into svg, replacing what it held.
// opts: {xLabel, yLabel, title, yMin, yMax} (yMin/yMax: fixed ends, e.g. 0 and 1 for accuracy).
// svg gets data-points (the number of points drawn) and an aria-label summing up the data.
export function lineChart(svg, series, opts = {}) {
  const W = 640, H = 240, L = 56, R = 12, T = 14, B = 38;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.replaceChildren();
  const pts = series.flatMap((s) => s.points);
  svg.setAttribute("data-points", String(pts.length));
  const summary = series.map((s) => {
    const last = s.points[s.points.length - 1];
    return `${s.name}: ${s.points.length} points` + (last ? `, last ${fmtNum(last[1], 4)} at ${fmtNum(last[0])}` : "");
  });
  svg.setAttribute("aria-label", (opts.title ? opts.title + ". " : "") + summary.join("; "));
  if (!pts.length) {
    svg.append(h("svg:text", { x: W / 2, y: H / 2, class: "chart-empty", "text-anchor": "middle" }, "no data yet"));
    return;
  }
  let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
  let y0 = opts.yMin ?? Math.min(...pts.map((p) => p[1])), y1 = opts.yMax ?? Math.max(...pts.map((p) => p[1]));
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - (Math.abs(y0) * 0.1 || 1), y1 + (Math.abs(y1) * 0.1 || 1)];
  else if (opts.yMin === undefined || opts.yMax === undefined) {
    const pad = (y1 - y0) * 0.06;
    if (opts.yMin === undefined) y0 -= pad;
    if (opts.yMax === undefined) y1 += pad;
  }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);

  const grid = h("svg:g", { class: "grid" });
  for (const v of ticks(y0, y1, 5)) {
    grid.append(h("svg:line", { x1: L, x2: W - R, y1: sy(v), y2: sy(v) }));
    grid.append(h("svg:text", { x: L - 6, y: sy(v) + 4, "text-anchor": "end" }, fmtNum(v, 3)));
  }
  for (const v of ticks(x0, x1, 6)) {
    grid.append(h("svg:line", { x1: sx(v), x2: sx(v), y1: T, y2: H - B, class: "vgrid" }));
    grid.append(h("svg:text", { x: sx(v), y: H - B + 16, "text-anchor": "middle" }, fmtNum(v, 4)));
  }
  grid.append(h("svg:line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  grid.append(h("svg:line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  if (opts.xLabel) grid.append(h("svg:text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label" }, opts.xLabel));
  if (opts.yLabel)
    grid.append(h("svg:text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle", class: "axis-label",
                                transform: `rotate(-90 12 ${(T + H - B) / 2})` }, opts.yLabel));
  svg.append(grid);

  series.forEach((s, i) => {
    if (!s.points.length) return;
    const g = h("svg:g", { class: `series s${i}` });
    if (s.points.length > 1)
      g.append(h("svg:polyline", { points: s.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ") }));
    if (s.points.length <= 60) for (const p of s.points) g.append(h("svg:circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5 }));
    svg.append(g);
  });

  if (series.length > 1) {
    const leg = h("svg:g", { class: "legend" });
    let x = W - R;
    for (let i = series.length - 1; i >= 0; i--) {
      const w = 18 + series[i].name.length * 7;
      x -= w + 8;
      leg.append(h("svg:rect", { x, y: T - 9, width: 10, height: 10, class: `swatch s${i}` }));
      leg.append(h("svg:text", { x: x + 14, y: T }, series[i].name));
    }
    svg.append(leg);
  }
}

// Fills container with one row per item {label, value, text}: the label, a bar whose width is
// value / max of the track, and the text (default: the value). Rows carry data-label and
// data-value for scripts and tests.
export function barList(container, items, max) {
  container.replaceChildren();
  const top = max ?? Math.max(...items.map((it) => it.value), 0);
  for (const it of items) {
    const fill = h("span", { class: "bar-fill" });
    fill.style.width = (top > 0 ? Math.max(0, Math.min(1, it.value / top)) * 100 : 0).toFixed(2) + "%"; // CSSOM: allowed by the CSP
    container.append(
      h("div", { class: "bar-row", "data-label": it.label, "data-value": it.value },
        h("span", { class: "bar-label" }, it.label),
        h("span", { class: "bar-track", "aria-hidden": "true" }, fill),
        h("span", { class: "bar-value" }, it.text ?? fmtNum(it.value, 3)))
    );
  }
}
