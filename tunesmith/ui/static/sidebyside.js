// Two runs side by side: their rows (status, scores, peak memory, time), their evaluations suite by suite,
// the recipe keys that differ, and both loss curves on one chart.
const SIDE_FIELDS = [
  ["method"], ["adapter"], ["base"], ["status"], ["steps"], ["best_eval_loss"],
  ["task_score", (r) => r.task_score ? `${fmt(r.task_score.value)} (${r.task_score.metric})` : "—"],
  ["forgetting", (r) => r.forgetting ? forgettingText(r.forgetting) : "—"],
  ["regressions", (r, p) => p.regressions && p.regressions.with_base ? fmt(p.regressions.total) : "—"],
  ["peak_memory_mib", (r) => r.peak_memory_mib === null || r.peak_memory_mib === undefined ? "—" : r.peak_memory_mib.toFixed(1) + " MiB"],
  ["wall_time_s", (r) => duration(r.wall_time_s)],
];

async function renderCompare(main, a, b) {
  const [pa, pb] = await Promise.all([a, b].map((n) => api("/api/runs/" + encodeURIComponent(n))));
  const [ca, cb] = await Promise.all([a, b].map((n) => api(`/api/runs/${encodeURIComponent(n)}/metrics`)));
  const flat = (o, prefix = "") => Object.entries(o || {}).flatMap(([k, v]) =>
    v && typeof v === "object" && !Array.isArray(v) ? flat(v, prefix + k + ".") : [[prefix + k, JSON.stringify(v)]]);
  const ra = Object.fromEntries(flat(pa.recipe)), rb = Object.fromEntries(flat(pb.recipe));
  const differ = [...new Set([...Object.keys(ra), ...Object.keys(rb)])].filter((k) => ra[k] !== rb[k] && k !== "name").sort();
  const evals = (p) => Object.fromEntries((p.eval_rows || []).map((r) => [`${r.suite} ${r.metric}`, r.score]));
  const ea = evals(pa), eb = evals(pb);
  const suites = [...new Set([...Object.keys(ea), ...Object.keys(eb)])];
  const series = [[a, ca.curves], [b, cb.curves]].flatMap(([n, c]) => [
    { name: `${n} loss`, points: c.loss || [] }, { name: `${n} eval`, points: c.eval_loss || [], dashed: true }]);
  const row = (key, x, y, cls, field) => el("tr", { "data-field": field || key, class: cls }, el("th", {}, key), el("td", {}, x), el("td", {}, y));
  main.replaceChildren(el("h1", {}, `${a}  vs  ${b}`),
    el("table", { id: "compare-table" }, el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", {}, a), el("th", {}, b))),
      el("tbody", {},
        SIDE_FIELDS.map(([f, show]) => row(f, show ? show(pa.row, pa) : fmt(pa.row[f]), show ? show(pb.row, pb) : fmt(pb.row[f]))),
        suites.map((k) => row("eval " + k, ea[k] ?? "—", eb[k] ?? "—", "eval-row")),
        differ.map((k) => row(k, ra[k] ?? "—", rb[k] ?? "—", "recipe-diff", "recipe." + k)))),
    el("div", { class: "card chart" }, el("h2", {}, "Loss"), lineChart(series.filter((s) => s.points.length), { id: "compare-svg" })));
  return () => {};
}
