"use strict";
// Small SVG charts drawn by hand: lines over rounds and stacked bars of stage seconds.
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const COLOURS = ["#4da3ff", "#4caf7a", "#d9a33c", "#e5534b", "#b07cff", "#3cc6c6", "#c6c63c", "#ff7cb0", "#8a919c"];
  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function frame(title, series) {
    const box = document.createElement("div");
    box.className = "chart";
    const h = document.createElement("div");
    h.textContent = title;
    box.appendChild(h);
    const svg = el("svg", {viewBox: "0 0 320 180", preserveAspectRatio: "none"}, box);
    const legend = document.createElement("div");
    legend.className = "legend";
    series.forEach(function (s, i) {
      const span = document.createElement("span");
      span.style.color = COLOURS[i % COLOURS.length];
      span.textContent = "■ " + s;
      legend.appendChild(span);
    });
    box.appendChild(legend);
    return {box: box, svg: svg};
  }
  function axes(svg, maxY, n) {
    el("line", {x1: 30, y1: 160, x2: 315, y2: 160, stroke: "#30343c"}, svg);
    el("line", {x1: 30, y1: 10, x2: 30, y2: 160, stroke: "#30343c"}, svg);
    const top = el("text", {x: 2, y: 16, fill: "#8a919c", "font-size": 10}, svg);
    top.textContent = formatNumber(maxY);
    const bottom = el("text", {x: 2, y: 160, fill: "#8a919c", "font-size": 10}, svg);
    bottom.textContent = "0";
    const last = el("text", {x: 300, y: 175, fill: "#8a919c", "font-size": 10}, svg);
    last.textContent = "r" + (n - 1);
  }
  function formatNumber(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3); }
  // series: {name: [values per round (null: none)]}
  function lines(title, series) {
    const names = Object.keys(series);
    const f = frame(title, names);
    let maxY = 0, n = 0;
    names.forEach(function (k) { series[k].forEach(function (v) { if (v != null) maxY = Math.max(maxY, v); }); n = Math.max(n, series[k].length); });
    maxY = maxY || 1;
    axes(f.svg, maxY, n);
    names.forEach(function (k, i) {
      const pts = [];
      series[k].forEach(function (v, j) {
        if (v == null) return;
        const x = 30 + (n > 1 ? j / (n - 1) : 0.5) * 280, y = 160 - v / maxY * 145;
        pts.push(x.toFixed(1) + "," + y.toFixed(1));
        el("circle", {cx: x, cy: y, r: 2.5, fill: COLOURS[i % COLOURS.length]}, f.svg);
      });
      if (pts.length > 1) el("polyline", {points: pts.join(" "), fill: "none", stroke: COLOURS[i % COLOURS.length], "stroke-width": 1.5}, f.svg);
    });
    return f.box;
  }
  // stacks: [{name: value}] per round
  function stacked(title, stacks) {
    const names = [];
    stacks.forEach(function (s) { Object.keys(s).forEach(function (k) { if (names.indexOf(k) < 0) names.push(k); }); });
    const f = frame(title, names);
    let maxY = 0;
    stacks.forEach(function (s) { let t = 0; names.forEach(function (k) { t += s[k] || 0; }); maxY = Math.max(maxY, t); });
    maxY = maxY || 1;
    axes(f.svg, maxY, stacks.length);
    const w = 280 / Math.max(stacks.length, 1);
    stacks.forEach(function (s, j) {
      let base = 160;
      names.forEach(function (k, i) {
        const h = (s[k] || 0) / maxY * 145;
        if (h <= 0) return;
        const r = el("rect", {x: 32 + j * w, y: base - h, width: Math.max(w - 4, 1), height: h, fill: COLOURS[i % COLOURS.length]}, f.svg);
        el("title", {}, r).textContent = k + ": " + (s[k] || 0).toFixed(2) + " s";
        base -= h;
      });
    });
    return f.box;
  }
  window.SpatiaCharts = {lines: lines, stacked: stacked};
})();
