// The router: #/ runs, #/run/NAME, #/compare/A/B, #/comparison/NAME, #/launch. Each page returns a cleanup (stops polling).
let cleanup = () => {};

async function route() {
  cleanup();
  const main = document.getElementById("main");
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  document.querySelectorAll("header nav a").forEach((a) =>
    a.classList.toggle("active", a.dataset.nav === (parts[0] === "launch" ? "launch" : "runs")));
  try {
    if (parts[0] === "run" && parts[1]) cleanup = await renderRun(main, parts[1]);
    else if (parts[0] === "compare" && parts[2]) cleanup = await renderCompare(main, parts[1], parts[2]);
    else if (parts[0] === "comparison" && parts[1]) cleanup = await renderComparison(main, parts[1]);
    else if (parts[0] === "launch") cleanup = await renderLaunch(main);
    else cleanup = await renderRuns(main);
  } catch (err) {
    main.replaceChildren(el("pre", { class: "error", id: "page-error" }, err.message));
    cleanup = () => {};
  }
}

window.addEventListener("hashchange", route);
route();
