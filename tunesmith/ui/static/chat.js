// The chat pane: the same conversation sent to the tuned run and to its base, answers side by side.
// It speaks OpenAI chat-completion JSON to /api/runs/NAME/v1/chat/completions.
function chatPane(name) {
  const history = { tuned: [], base: [] };
  const columns = { tuned: el("div", { id: "chat-tuned" }), base: el("div", { id: "chat-base" }) };
  const input = el("textarea", { id: "chat-input", rows: 2, placeholder: "Ask the model…" });
  const tokens = el("input", { type: "text", id: "chat-max-tokens", value: "48", size: 4 });
  const withBase = el("input", { type: "checkbox", id: "chat-with-base" });
  const send = el("button", { id: "chat-send" }, "Send");
  const bubble = (role, text) => el("div", { class: "bubble " + role, "data-role": role }, text);
  send.addEventListener("click", async () => {
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send.disabled = true;
    const which = withBase.checked ? ["tuned", "base"] : ["tuned"];
    await Promise.all(which.map(async (model) => {
      history[model].push({ role: "user", content: text });
      columns[model].append(bubble("user", text));
      try {
        const reply = await api(`/api/runs/${encodeURIComponent(name)}/v1/chat/completions`,
          { model, messages: history[model], max_tokens: parseInt(tokens.value, 10) || 48 });
        const message = reply.choices[0].message;
        history[model].push(message);
        columns[model].append(bubble("assistant", message.content || "(empty answer)"));
      } catch (err) {
        history[model].pop();
        columns[model].append(el("pre", { class: "error" }, err.message));
      }
    }));
    send.disabled = false;
  });
  return el("div", { class: "card", id: "chat-pane" }, el("h2", {}, "Chat"),
    el("div", { class: "chat-cols" }, el("div", {}, el("h3", {}, "tuned"), columns.tuned),
      el("div", {}, el("h3", {}, "base"), columns.base)),
    input, el("div", { class: "toolbar" }, send, el("label", {}, withBase, " also ask the base model"),
      el("label", {}, "max tokens ", tokens)));
}
