// A `tunesmith compare` folder: the trade-off table (compare's own rows and cells, as comparison.md shows them)
// and one bar chart per trade-off (compare's chart panels, as comparison.png draws them).
async function renderComparison(main, name) {
  const page = await api("/api/comparisons/" + encodeURIComponent(name));
  const strategies = page.rows.slice(1);
  const head = el("tr", {}, page.columns.map((c) => el("th", {}, c)));
  const body = page.rows.map((row, i) => el("tr", { "data-strategy": row.strategy },
    page.columns.map((c, j) => el("td", { "data-key": c, class: j ? "num" : "" },
      c === "strategy" && row.run ? el("a", { href: "#/run/" + encodeURIComponent(row.run) }, page.cells[i][j]) : page.cells[i][j]))));
  const charts = page.panels.map((p) => el("div", { class: "card chart", "data-panel": p.key }, el("h3", {}, p.label),
    barChart(strategies.map((row) => ({ name: row.strategy, value: row[p.key], error: p.error ? row[p.error] : null })),
      { id: "panel-" + p.key })));
  const pick = strategies.filter((r) => r.run).map((r) => r.run);
  main.replaceChildren(el("h1", {}, `Comparison ${page.name}`), el("p", { class: "muted" }, page.folder),
    el("div", { class: "card" }, el("table", { id: "comparison-table" }, el("thead", {}, head), el("tbody", {}, body))),
    pick.length >= 2 ? el("p", {}, el("a", { href: `#/compare/${pick.map(encodeURIComponent).slice(0, 2).join("/")}` },
      `${pick[0]} and ${pick[1]} side by side`)) : null,
    el("div", { class: "grid charts" }, charts));
  return () => {};
}
