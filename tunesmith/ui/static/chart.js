// A small line chart drawn as inline SVG (no library): one polyline per series, a circle per point.
// The plot's scale is kept on the <svg> (data-xmin ... data-plot-height) so what is drawn can be read back.
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2f6fde", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#16a085"];

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function niceTicks(min, max, count) {
  if (min === max) { min -= 1; max += 1; }
  const step = Math.pow(10, Math.floor(Math.log10((max - min) / count)));
  const mult = [1, 2, 5, 10].find((m) => (max - min) / (step * m) <= count) || 10;
  const size = step * mult;
  const ticks = [];
  for (let t = Math.ceil(min / size) * size; t <= max + size * 1e-9; t += size) ticks.push(+t.toPrecision(12));
  return ticks;
}

// series: [{name, points: [[x, y], ...], dashed}], options: {width, height, xLabel, id}
function lineChart(series, options = {}) {
  const width = options.width || 640, height = options.height || 300;
  const pad = { left: 58, right: 16, top: 28, bottom: 38 };
  const plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
  const all = series.flatMap((s) => s.points);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", id: options.id || "" });
  if (!all.length) {
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", fill: "#667085" },
      document.createTextNode("no points yet")));
    return root;
  }
  let [xmin, xmax] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [ymin, ymax] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (xmin === xmax) { xmin -= 1; xmax += 1; }
  if (ymin === ymax) { ymin -= Math.abs(ymin) * 0.05 || 1; ymax += Math.abs(ymax) * 0.05 || 1; }
  const margin = (ymax - ymin) * 0.05; ymin -= margin; ymax += margin;
  const sx = (x) => pad.left + ((x - xmin) / (xmax - xmin)) * plotW;
  const sy = (y) => pad.top + (1 - (y - ymin) / (ymax - ymin)) * plotH;
  Object.entries({ xmin, xmax, ymin, ymax, "plot-left": pad.left, "plot-top": pad.top, "plot-width": plotW,
    "plot-height": plotH }).forEach(([k, v]) => root.setAttribute("data-" + k, v));
  const axis = svg("g", { class: "axis" });
  for (const t of niceTicks(ymin, ymax, 5)) {
    axis.append(svg("line", { class: "gridline", x1: pad.left, x2: pad.left + plotW, y1: sy(t), y2: sy(t) }));
    axis.append(svg("text", { x: pad.left - 6, y: sy(t) + 4, "text-anchor": "end" }, document.createTextNode(+t.toPrecision(4))));
  }
  for (const t of niceTicks(xmin, xmax, 6)) {
    axis.append(svg("text", { x: sx(t), y: pad.top + plotH + 16, "text-anchor": "middle" }, document.createTextNode(t)));
  }
  axis.append(svg("text", { x: pad.left + plotW / 2, y: height - 4, "text-anchor": "middle" },
    document.createTextNode(options.xLabel || "step")));
  axis.append(svg("rect", { x: pad.left, y: pad.top, width: plotW, height: plotH, fill: "none", stroke: "#d9dee7" }));
  root.append(axis);
  const legend = svg("g", { class: "legend" });
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    const group = svg("g", { class: "series", "data-name": s.name });
    group.append(svg("polyline", { fill: "none", stroke: color, "stroke-width": 2,
      "stroke-dasharray": s.dashed ? "5 4" : "none", points: s.points.map((p) => `${sx(p[0])},${sy(p[1])}`).join(" ") }));
    for (const [x, y] of s.points) {
      const dot = svg("circle", { cx: sx(x), cy: sy(y), r: s.points.length > 60 ? 1.5 : 3, fill: color,
        "data-step": x, "data-value": y });
      dot.append(svg("title", {}, document.createTextNode(`${s.name} @ ${x}: ${y}`)));
      group.append(dot);
    }
    root.append(group);
    legend.append(svg("rect", { x: pad.left + i * 150, y: 8, width: 12, height: 4, fill: color }));
    legend.append(svg("text", { x: pad.left + i * 150 + 16, y: 14 }, document.createTextNode(s.name)));
  });
  root.append(legend);
  return root;
}

// A bar chart as inline SVG: bars [{name, value, error}] (value null: no bar), options {width, height, id}; error is
// a half-width or an interval's [low, high] (a paired change's 95% CI is not symmetric).
// Each <rect class="bar"> keeps its data-name/data-value/data-error ("low,high" for an interval) and the <svg>
// its scale, as lineChart does.
function barChart(bars, options = {}) {
  const low = (b) => Array.isArray(b.error) ? b.error[0] : b.value - (b.error || 0);
  const high = (b) => Array.isArray(b.error) ? b.error[1] : b.value + (b.error || 0);
  const width = options.width || 420, height = options.height || 240;
  const pad = { left: 64, right: 12, top: 12, bottom: 56 };
  const plotW = width - pad.left - pad.right, plotH = height - pad.top - pad.bottom;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", id: options.id || "" });
  const known = bars.filter((b) => typeof b.value === "number");
  if (!known.length) {
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", fill: "#667085" },
      document.createTextNode("not measured")));
    return root;
  }
  const ends = known.flatMap((b) => [low(b), high(b)]);
  let ymin = Math.min(0, ...ends), ymax = Math.max(0, ...ends);
  if (ymin === ymax) ymax = ymin + 1;
  const margin = (ymax - ymin) * 0.05; ymax += margin; if (ymin < 0) ymin -= margin;
  const sy = (y) => pad.top + (1 - (y - ymin) / (ymax - ymin)) * plotH;
  Object.entries({ ymin, ymax, "plot-top": pad.top, "plot-height": plotH }).forEach(([k, v]) => root.setAttribute("data-" + k, v));
  const axis = svg("g", { class: "axis" });
  for (const t of niceTicks(ymin, ymax, 4)) {
    axis.append(svg("line", { class: "gridline", x1: pad.left, x2: pad.left + plotW, y1: sy(t), y2: sy(t) }));
    axis.append(svg("text", { x: pad.left - 6, y: sy(t) + 4, "text-anchor": "end" }, document.createTextNode(+t.toPrecision(4))));
  }
  axis.append(svg("line", { x1: pad.left, x2: pad.left + plotW, y1: sy(0), y2: sy(0), stroke: "#1d2330" }));
  root.append(axis);
  const slot = plotW / bars.length;
  bars.forEach((b, i) => {
    const x = pad.left + i * slot + slot * 0.15, w = slot * 0.7;
    root.append(svg("text", { x: x + w / 2, y: pad.top + plotH + 14, "text-anchor": "middle", class: "bar-label" },
      document.createTextNode(b.name.length > 14 ? b.name.slice(0, 13) + "…" : b.name)));
    if (typeof b.value !== "number") return;
    const rect = svg("rect", { class: "bar", x, width: w, y: Math.min(sy(0), sy(b.value)), height: Math.abs(sy(0) - sy(b.value)),
      fill: COLORS[0], "data-name": b.name, "data-value": b.value, "data-error": Array.isArray(b.error) ? b.error.join(",") : b.error || 0 });
    const spread = Array.isArray(b.error) ? ` (95% CI ${low(b)}..${high(b)})` : b.error ? ` ± ${b.error}` : "";
    rect.append(svg("title", {}, document.createTextNode(`${b.name}: ${b.value}` + spread)));
    root.append(rect);
    if (b.error) root.append(svg("line", { class: "error-bar", x1: x + w / 2, x2: x + w / 2, y1: sy(low(b)),
      y2: sy(high(b)), stroke: "#1d2330" }));
  });
  return root;
}
