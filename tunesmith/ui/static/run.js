// One run's page: live curves, data health, eval and forgetting tables, judge verdicts, regressions, recipe, chat.
const POLL_MS = 1500;
let chosenMetric = null;  // the second chart's metric, kept while the page redraws with new points

function curveCharts(curves, id) {
  const loss = [["loss", curves.loss], ["eval_loss", curves.eval_loss]].filter(([, p]) => p && p.length)
    .map(([name, points]) => ({ name, points }));
  const others = Object.keys(curves).filter((k) => !["loss", "eval_loss", "step"].includes(k));
  const pick = el("select", { id: "metric-pick" }, others.map((k) => el("option", { value: k }, k)));
  const second = el("div", { class: "chart", id: "metric-chart" });
  const drawSecond = () => second.replaceChildren(lineChart(
    pick.value ? [{ name: pick.value, points: curves[pick.value] }] : [], { height: 220 }));
  pick.value = others.includes(chosenMetric) ? chosenMetric : others.includes("lr") ? "lr" : others[0] || "";
  pick.addEventListener("change", () => { chosenMetric = pick.value; drawSecond(); });
  drawSecond();
  return el("div", { class: "grid" },
    el("div", { class: "card" }, el("h2", {}, "Loss"), el("div", { class: "chart", id }, lineChart(loss, { id: id + "-svg" }))),
    el("div", { class: "card" }, el("h2", {}, "Other metrics "), pick, second));
}

async function renderRun(main, name) {
  let stopped = false, timer = null;
  const refresh = async () => {
    if (stopped) return;
    let page = null, launch = null;
    try { page = await api("/api/runs/" + encodeURIComponent(name)); } catch (err) { page = null; }
    try { launch = await api("/api/launches/" + encodeURIComponent(name)); } catch (err) { launch = null; }
    if (stopped) return;
    if (!page) {
      main.replaceChildren(el("h1", {}, name, " ", statusBadge(launch && launch.process === "running" ? "starting" : "missing")),
        launchPanel(name, launch, null));
    } else {
      const curves = (await api(`/api/runs/${encodeURIComponent(name)}/metrics`)).curves;
      if (stopped) return;
      drawRun(main, name, page, curves, launch);
    }
    const live = (launch && launch.process === "running") || (page && page.row.status === "running");
    if (live && !stopped) timer = setTimeout(refresh, POLL_MS);
  };
  await refresh();
  return () => { stopped = true; clearTimeout(timer); };
}

function drawRun(main, name, page, curves, launch) {
  const keep = document.getElementById("chat-pane");  // the chat keeps its conversation across refreshes
  const row = page.row;
  if (row.status === "damaged") {
    main.replaceChildren(el("h1", {}, row.name, " ", statusBadge("damaged")), el("pre", { class: "error", id: "run-damage" }, row.error));
    return;
  }
  main.replaceChildren(
    el("h1", {}, row.name, " ", statusBadge(row.status)),
    el("p", { class: "muted" }, `${row.method} / ${row.adapter} on ${row.base} — step ${fmt(row.steps)}, `,
      `best eval loss ${fmt(row.best_eval_loss)}, peak memory ${row.peak_memory_mib === null || row.peak_memory_mib === undefined ? "—"
        : row.peak_memory_mib.toFixed(1) + " MiB"}, wall time ${duration(row.wall_time_s)}`),
    launchPanel(name, launch, page),
    curveCharts(curves, "loss-chart"),
    el("div", { class: "grid" },
      el("div", { class: "card" }, el("h2", {}, "Data health"), keyValueTable(page.data, "data-health")),
      el("div", { class: "card" }, el("h2", {}, "Evaluation"), el("div", { class: "table-scroll" }, evalTable(page.eval_rows)),
        el("h2", {}, "Forgetting (tuned − base)"), el("div", { class: "table-scroll" }, deltaTable(page.deltas)))),
    el("div", { class: "grid" }, judgeSection(page.verdicts), regressionSection(page.regressions)),
    row.status === "done" ? (keep || chatPane(name)) : el("p", { class: "muted" }, "Chat opens when the run is done."),
    el("div", { class: "card" }, el("h2", {}, "Recipe (resolved)"), el("pre", { id: "recipe" }, JSON.stringify(page.recipe, null, 2))),
  );
}

function launchPanel(name, launch, page) {
  if (!launch || (!launch.process && !(page && page.launched))) return el("div", {});
  const running = launch.process === "running";
  const act = (verb) => async () => {
    try { await api(`/api/runs/${encodeURIComponent(name)}/${verb}`, {}); } catch (err) { alert(err.message); }
    setTimeout(route, 300);
  };
  return el("div", { class: "card", id: "launch-panel" },
    el("div", { class: "toolbar" }, el("strong", {}, "process: "), el("span", { id: "process-state" }, launch.process || "—"),
      el("span", { id: "process-nproc", class: "muted" }, launch.nproc > 1 ? `(${launch.nproc} processes)` : ""),
      el("button", { id: "stop-button", disabled: !running, onclick: act("stop") }, "Stop (keeps a checkpoint)"),
      el("button", { id: "resume-button", class: "secondary", disabled: running || !page || page.row.status === "done",
        onclick: act("resume") }, "Resume")),
    el("pre", { id: "train-log" }, launch.log || "(no output yet)"));
}

function evalTable(rows) {
  if (!rows || !rows.length) return el("p", { class: "muted" }, "No eval.json yet: run tunesmith eval on this run.");
  const columns = ["suite", "metric", "n", "score", "base", "change", "note"];
  return el("table", { id: "eval-table" }, el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, columns.map((c) =>
      el("td", { class: [c === "change" ? ({ good: "good", bad: "bad" }[r.trend] || "") : "",
        ["change", "note"].includes(c) ? "wrap-text" : ""].join(" ") }, r[c]))))));
}

function deltaTable(deltas) {
  const general = (deltas || []).filter((d) => d.general);
  if (!general.length) return el("p", { class: "muted" }, "No base comparison (tunesmith eval RUN --base).");
  return el("table", { id: "forgetting-table" }, el("thead", {}, el("tr", {}, ["suite", "metric", "base", "tuned", "change"].map((c) => el("th", {}, c)))),
    el("tbody", {}, general.map((d) => el("tr", {}, el("td", {}, d.suite), el("td", {}, d.metric), el("td", { class: "num" }, fmt(d.base)),
      el("td", { class: "num" }, fmt(d.tuned)), el("td", { class: "num " + (!d.significant ? "" : d.improved ? "good" : d.improved === false ? "bad" : "") },
        d.text || `${d.change >= 0 ? "+" : ""}${d.change.toFixed(2)} ${d.unit}`)))));
}
