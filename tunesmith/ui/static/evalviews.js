// A run's judge verdicts (eval.json's judge suite, MT-Bench per question and turn from eval_samples.jsonl)
// and its per-item regressions (items the base got right and the tuned model got wrong, worst first).
function short(text, n = 80) {
  const s = text === null || text === undefined ? "" : String(text);
  return s.length <= n ? s : s.slice(0, n - 1) + "…";
}

function fixed(value, digits) {
  return typeof value === "number" ? value.toFixed(digits) : "—";
}

function judgeSection(v) {
  const parts = [el("h2", {}, "Judge verdicts")];
  if (!v || (!v.judge && !v.mtbench && !v.mtbench_rows.length)) {
    return el("div", { class: "card", id: "verdicts" }, parts,
      el("p", { class: "muted" }, "No judge verdicts: tunesmith eval RUN --suite mtbench --judge URL [--base]."));
  }
  const pair = (p) => p ? `; against the base: ${p.wins} won / ${p.losses} lost / ${p.ties} tied (win rate ${fixed(p.win_rate, 3)})` : "";
  if (v.judge) parts.push(el("p", { id: "judge-summary" }, `judge suite: mean rating ${fixed(v.judge.score, 2)} over `
    + `${v.judge.rated} of ${v.judge.n} answers`, pair(v.judge_pairwise)));
  if (v.mtbench) parts.push(el("p", { id: "mtbench-summary" }, `MT-Bench: score ${fixed(v.mtbench.score, 2)} (turn 1 `
    + `${fixed(v.mtbench.turn1, 2)}, turn 2 ${fixed(v.mtbench.turn2, 2)}) over ${v.mtbench.n} questions`,
    v.mtbench.win_rate === null || v.mtbench.win_rate === undefined ? "" : pair(v.mtbench)));
  if (v.mtbench_rows.length) {
    const columns = ["id", "category", "turn", "rating", "base_rating", "pairwise", "question", "answer"];
    parts.push(el("table", { id: "mtbench-verdicts" },
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c.replace("_", " "))), el("th", {}, "judgment"))),
      el("tbody", {}, v.mtbench_rows.map((r) => el("tr", { "data-id": r.id, "data-turn": r.turn },
        columns.map((c) => el("td", { "data-key": c, title: ["question", "answer"].includes(c) ? r[c] : null,
          class: c === "pairwise" ? ({ win: "good", loss: "bad" }[r.pairwise] || "") : "" },
          ["question", "answer"].includes(c) ? short(r[c], 48) : fmt(r[c], 1))),
        el("td", {}, r.judgment ? el("details", {}, el("summary", {}, short(r.judgment, 40)), el("pre", {}, r.judgment)) : "—"))))));
  }
  if (v.judge_examples.length) {
    parts.push(el("h3", {}, "Judge suite examples"), el("table", { id: "judge-examples" },
      el("thead", {}, el("tr", {}, ["question", "answer", "rating", "judgment"].map((c) => el("th", {}, c)))),
      el("tbody", {}, v.judge_examples.map((x) => el("tr", {}, el("td", { title: x.question }, short(x.question, 48)),
        el("td", { title: x.answer }, short(x.answer, 48)), el("td", { "data-key": "rating" }, fmt(x.rating, 1)),
        el("td", {}, el("details", {}, el("summary", {}, short(x.judgment, 40)), el("pre", {}, x.judgment))))))));
  }
  return el("div", { class: "card", id: "verdicts" }, parts);
}

function regressionSection(reg) {
  const card = (...children) => el("div", { class: "card", id: "regressions" }, el("h2", {}, "Regressions"), children);
  if (!reg || !reg.file) return card(el("p", { class: "muted" }, "No per-item results: run tunesmith eval RUN --base."));
  if (!reg.with_base) return card(el("p", { class: "muted" }, `${reg.file} has no base model items: run tunesmith eval RUN --base.`));
  if (!reg.total) return card(el("p", { class: "good", id: "regressions-none" }, `No item the base model got right was lost (${reg.file}).`));
  const columns = ["suite", "id", "metric", "gold", "base_prediction", "prediction", "margin"];
  return card(el("p", { class: "muted", id: "regressions-count" }, `${plural(reg.total, "item")} the base model got right and the tuned `
    + `model got wrong, furthest from the gold answer first` + (reg.rows.length < reg.total ? ` (first ${reg.rows.length} shown)` : "")
    + ` — every item is in ${reg.file}.`),
  el("table", { id: "regressions-table" }, el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c.replace("_", " "))))),
    el("tbody", {}, reg.rows.map((r) => el("tr", { "data-suite": r.suite, "data-id": r.id },
      columns.map((c) => el("td", { "data-key": c, title: String(r[c] ?? "") }, c === "margin" ? fmt(r.margin, 3) : short(r[c], 40))))))));
}
