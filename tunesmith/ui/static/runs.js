// The runs table (sortable, filterable; pick two runs to compare) and the comparison folders' tables.
const RUN_COLUMNS = [
  { key: "name", label: "name", wrap: true },
  { key: "method", label: "method" },
  { key: "adapter", label: "adapter" },
  { key: "base", label: "base", wrap: true, show: (r) => (r.base || "").split("/").slice(-1)[0] },
  { key: "status", label: "status", show: (r) => statusBadge(r.status) },
  { key: "steps", label: "steps", num: true },
  { key: "best_eval_loss", label: "best eval loss", num: true },
  { key: "task_score", label: "task score", num: true, wrap: true, value: (r) => r.task_score && r.task_score.value,
    show: (r) => r.task_score ? `${fmt(r.task_score.value)} (${r.task_score.metric})` : "—" },
  { key: "forgetting", label: "forgetting change", num: true, wrap: true, value: (r) => r.forgetting && r.forgetting.change,
    show: (r) => r.forgetting ? el("span", { class: r.forgetting.trend || "" },
      forgettingText(r.forgetting)) : "—" },
  { key: "peak_memory_mib", label: "peak memory", num: true, show: (r) => r.peak_memory_mib === null || r.peak_memory_mib === undefined
    ? "—" : el("span", { title: r.peak_memory_source || "" }, `${r.peak_memory_mib.toFixed(1)} MiB`) },
  { key: "wall_time_s", label: "wall time", num: true, show: (r) => duration(r.wall_time_s) },
];
const runsView = { sortKey: "started", sortDir: -1, filter: "", selected: new Set() };

async function renderRuns(main) {
  const data = await api("/api/runs");
  document.getElementById("runs-dir").textContent = data.runs_dir;
  const filter = el("input", { type: "search", id: "runs-filter", placeholder: "filter runs…", value: runsView.filter });
  const compare = el("button", { id: "compare-button", class: "secondary", disabled: runsView.selected.size !== 2,
    onclick: () => { location.hash = "#/compare/" + [...runsView.selected].map(encodeURIComponent).join("/"); } },
    "compare the two selected");
  const holder = el("div", { class: "table-scroll" });
  const draw = () => holder.replaceChildren(runsTable(data.runs, () => {
    compare.disabled = runsView.selected.size !== 2; }));
  filter.addEventListener("input", () => { runsView.filter = filter.value; draw(); });
  draw();
  main.replaceChildren(el("h1", {}, `Runs (${data.runs.length})`), el("div", { class: "toolbar" }, filter, compare),
    holder, comparisonTables(data.comparisons));
  return () => {};
}

function runsTable(runs, onSelect) {
  const column = RUN_COLUMNS.find((c) => c.key === runsView.sortKey);
  const valueOf = (r, c) => (c && c.value ? c.value(r) : r[c ? c.key : runsView.sortKey]);
  const needle = runsView.filter.toLowerCase();
  const shown = runs.filter((r) => !needle || RUN_COLUMNS.some((c) =>
    String(c.value ? c.value(r) ?? "" : r[c.key] ?? "").toLowerCase().includes(needle)));
  shown.sort((a, b) => {
    const x = valueOf(a, column), y = valueOf(b, column);
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * runsView.sortDir;
  });
  const head = el("tr", {}, el("th", {}, ""), RUN_COLUMNS.map((c) => el("th", {
    class: ["sortable", c.num ? "num" : "", c.key === runsView.sortKey ? (runsView.sortDir > 0 ? "sorted-asc" : "sorted-desc") : ""].join(" "),
    "data-key": c.key,
    onclick: (event) => {
      runsView.sortDir = runsView.sortKey === c.key ? -runsView.sortDir : 1;
      runsView.sortKey = c.key;
      event.target.closest("div").replaceChildren(runsTable(runs, onSelect));
    } }, c.label)));
  const cell = (r, c) => el("td", { class: [c.num ? "num" : "", c.wrap ? "wrap-text" : ""].join(" "), "data-key": c.key },
    c.key === "name" ? el("a", { href: "#/run/" + encodeURIComponent(r.folder || r.name) }, r.name)
      : c.show ? c.show(r) : fmt(r[c.key]));
  const body = shown.map((r) => el("tr", { "data-run": r.name },
    el("td", {}, el("input", { type: "checkbox", checked: runsView.selected.has(r.name), onchange: (e) => {
      e.target.checked ? runsView.selected.add(r.name) : runsView.selected.delete(r.name); onSelect(); } })),
    r.status === "damaged"  // a run folder that cannot be read: its name, its status, and why
      ? [cell(r, RUN_COLUMNS[0]), el("td", { "data-key": "status" }, statusBadge("damaged")),
        el("td", { class: "wrap-text bad", colspan: RUN_COLUMNS.length - 2, "data-key": "error" }, r.error)]
      : RUN_COLUMNS.map((c) => cell(r, c))));
  return el("table", { id: "runs-table" }, el("thead", {}, head), el("tbody", {}, body));
}

function comparisonTables(comparisons) {
  if (!comparisons || !comparisons.length) return el("div", {});
  return el("div", { id: "comparisons" }, el("h2", {}, "Comparisons"), el("ul", {}, comparisons.map((c) => el("li", {},
    c.error ? el("span", { class: "bad" }, `${c.name}: ${c.error}`)
      : [el("a", { href: "#/comparison/" + encodeURIComponent(c.name), "data-comparison": c.name }, c.name),
        ` — ${c.strategies.join(", ")}`, c.finished ? "" : " (not finished)"]))));
}
