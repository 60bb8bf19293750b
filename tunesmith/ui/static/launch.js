// Launch a run: a shipped recipe in a YAML editor, or a form generated from the recipe's JSON schema.
// Validation is the server's (the CLI's own messages, did-you-mean included); launching starts a
// detached `python -m tunesmith train [--nproc N]` and opens the run's page.
async function renderLaunch(main) {
  const [{ recipes }, schema] = await Promise.all([api("/api/recipes"), api("/api/schema")]);
  const editor = el("textarea", { id: "recipe-text", rows: 18, spellcheck: "false" });
  const pick = el("select", { id: "recipe-pick" }, el("option", { value: "" }, "— a shipped recipe —"),
    recipes.map((r) => el("option", { value: r.name }, r.name)));
  pick.addEventListener("change", () => { const r = recipes.find((x) => x.name === pick.value); if (r) editor.value = r.text; });
  const result = el("pre", { id: "recipe-result", class: "muted" }, "Not validated yet.");
  const overwrite = el("input", { type: "checkbox", id: "recipe-overwrite" });
  const form = schemaForm(schema);
  const mode = el("select", { id: "recipe-mode" }, el("option", { value: "yaml" }, "YAML editor"), el("option", { value: "form" }, "form"));
  const yamlBox = el("div", {}, el("div", { class: "toolbar" }, pick), editor);
  mode.addEventListener("change", () => { yamlBox.hidden = mode.value !== "yaml"; form.hidden = mode.value !== "form"; });
  form.hidden = true;
  const nproc = el("input", { type: "text", id: "launch-nproc", value: "1", size: 3, inputmode: "numeric",
    title: "training processes on this machine (tunesmith train --nproc N: torchrun, gloo on CPU)" });
  const body = () => ({ ...(mode.value === "yaml" ? { text: editor.value } : { recipe: formValue(form) }), nproc: nproc.value });
  const show = (ok, text) => { result.className = ok ? "ok" : "error"; result.textContent = text; };
  const validateButton = el("button", { id: "validate-button", class: "secondary", onclick: async () => {
    try {
      const r = await api("/api/validate", body());
      show(true, `valid: run ${r.name}` + (r.nproc > 1 ? ` on ${r.nproc} processes` : "") + (r.exists ? " (a run of this name exists: tick overwrite, or rename)" : "")
        + r.advice.map((a) => "\nwarning: " + a).join(""));
    } catch (err) { show(false, err.message); }
  } }, "Validate");
  const launchButton = el("button", { id: "launch-button", onclick: async () => {
    try {
      const r = await api("/api/launch", { ...body(), overwrite: overwrite.checked });
      location.hash = "#/run/" + encodeURIComponent(r.name);
    } catch (err) { show(false, err.message); }
  } }, "Launch");
  main.replaceChildren(el("h1", {}, "Launch a run"),
    el("p", { class: "muted" }, "The run goes into the runs folder and keeps training if you close this page."),
    el("div", { class: "toolbar" }, "edit as ", mode), yamlBox, form,
    el("div", { class: "toolbar" }, validateButton, launchButton, el("label", {}, "processes (--nproc) ", nproc),
      el("label", {}, overwrite, " overwrite an existing run")), result);
  return () => {};
}

// Resolve "$ref" and "anyOf [X, null]" to the schema node a field is typed by.
function schemaNode(schema, node) {
  if (node && node.$ref) return schemaNode(schema, schema.$defs[node.$ref.split("/").pop()]);
  if (node && node.anyOf) {
    const real = node.anyOf.filter((n) => n.type !== "null");
    if (real.length === 1) return { ...schemaNode(schema, real[0]), description: node.description, default: node.default };
  }
  return node || {};
}

function schemaForm(schema) {
  const fields = (node, prefix) => Object.entries(node.properties || {}).flatMap(([key, raw]) => {
    const sub = schemaNode(schema, raw);
    const path = prefix + key;
    if (sub.type === "object" && sub.properties) return [];
    const input = sub.enum ? el("select", { name: path }, el("option", { value: "" }, "(default)"), sub.enum.map((v) => el("option", { value: v }, v)))
      : sub.type === "boolean" ? el("select", { name: path }, ["", "true", "false"].map((v) => el("option", { value: v }, v || "(default)")))
        : el("input", { type: "text", name: path, "data-type": sub.type || "string",
          placeholder: raw.default !== undefined ? JSON.stringify(raw.default) : (sub.description || "") });
    input.title = raw.description || sub.description || "";
    return [el("label", { for: path }, path), input];
  });
  const sections = Object.entries(schema.properties).filter(([, raw]) => {
    const sub = schemaNode(schema, raw); return sub.type === "object" && sub.properties; });
  return el("div", { id: "recipe-form" },
    el("fieldset", {}, el("legend", {}, "run"), el("div", { class: "form-grid" }, fields(schema, ""))),
    sections.map(([key, raw]) => el("fieldset", {}, el("legend", {}, key),
      el("div", { class: "form-grid" }, fields(schemaNode(schema, raw), key + ".")))));
}

// The form's filled fields as a nested recipe mapping; numbers and lists parsed, empty fields left out.
function formValue(form) {
  const recipe = {};
  for (const input of form.querySelectorAll("[name]")) {
    if (input.value === "") continue;
    let value = input.value;
    const type = input.getAttribute("data-type");
    if (value === "true" || value === "false") value = value === "true";
    else if ((type === "number" || type === "integer") && !isNaN(Number(value))) value = Number(value);
    else if (type === "array") value = value.split(",").map((s) => s.trim()).filter(Boolean);
    const parts = input.name.split(".");
    let node = recipe;
    parts.slice(0, -1).forEach((p) => { node = node[p] = node[p] || {}; });
    node[parts[parts.length - 1]] = value;
  }
  return recipe;
}
