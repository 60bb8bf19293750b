// The chat pane: the same conversation sent to the tuned run and to its base, answers side by side.
// It speaks OpenAI chat-completion JSON to /api/runs/NAME/v1/chat/completions. A picture the user attaches is
// read in the page and sent inline as an image_url part (a data: URI); a text model answers that it takes none.
function readPicture(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error("cannot read " + file.name));
    reader.readAsDataURL(file);
  });
}

function chatPane(name) {
  const history = { tuned: [], base: [] };
  const columns = { tuned: el("div", { id: "chat-tuned" }), base: el("div", { id: "chat-base" }) };
  const input = el("textarea", { id: "chat-input", rows: 2, placeholder: "Ask the model…" });
  const tokens = el("input", { type: "text", id: "chat-max-tokens", value: "48", size: 4 });
  const withBase = el("input", { type: "checkbox", id: "chat-with-base" });
  const picture = el("input", { type: "file", id: "chat-image", accept: "image/png,image/jpeg,image/gif,image/webp" });
  const send = el("button", { id: "chat-send" }, "Send");
  const bubble = (role, text, src) => el("div", { class: "bubble " + role, "data-role": role },
    src ? el("img", { class: "chat-picture", alt: "attached picture", src }) : null, text);
  send.addEventListener("click", async () => {
    const text = input.value.trim();
    const file = picture.files && picture.files[0];
    if (!text && !file) return;
    send.disabled = true;
    let src = null;
    try {
      src = file ? await readPicture(file) : null;
    } catch (err) {
      columns.tuned.append(el("pre", { class: "error" }, err.message));
      send.disabled = false;
      return;
    }
    input.value = "";
    picture.value = "";
    const content = src ? [{ type: "image_url", image_url: { url: src } }, { type: "text", text }] : text;
    const which = withBase.checked ? ["tuned", "base"] : ["tuned"];
    await Promise.all(which.map(async (model) => {
      history[model].push({ role: "user", content });
      columns[model].append(bubble("user", text, src));
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
      el("label", {}, "max tokens ", tokens), el("label", {}, "image ", picture)));
}
