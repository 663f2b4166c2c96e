// The polymodal web page: gallery search, image classification and questions, streamed chat.
// Plain browser JavaScript over the server's own API; no build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const page = { image: null, history: [] }; // the chosen image (a data URI) and the chat so far

// --- talking to the server -------------------------------------------------------------------------

function headers(json = true) {
  const h = json ? { "Content-Type": "application/json" } : {};
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || `${response.status} ${response.statusText}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

async function getJSON(path) {
  const response = await fetch(path, { headers: headers(false) });
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

async function postJSON(path, body) {
  const response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

function show(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

// Run an async action with the form's buttons disabled, so one click sends one request.
async function busy(form, action) {
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => (b.disabled = true));
  try {
    await action();
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

async function loadStatus() {
  try {
    const models = await getJSON("/v1/models");
    const names = models.data.map((m) => `${m.id} (${m.capabilities.join(", ")})`);
    show($("status"), `serving ${names.join(" · ")}`);
  } catch (e) {
    show($("status"), e.message, true);
    return;
  }
  try {
    const gallery = await getJSON("/v1/gallery");
    show($("search-status"), `${gallery.count} images indexed with ${gallery.model}`);
  } catch (e) {
    show($("search-status"), e.message, true);
  }
}

// --- search ----------------------------------------------------------------------------------------

async function loadThumbnail(img, id) {
  const response = await fetch(`/v1/thumbnail?id=${id}`, { headers: headers(false) });
  if (!response.ok) {
    img.alt = await errorText(response);
    img.dataset.state = "error";
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  img.onload = () => {
    img.dataset.state = "loaded";
    URL.revokeObjectURL(url);
  };
  img.src = url;
}

function hitFigure(hit) {
  const path = (hit.metadata && hit.metadata.path) || `#${hit.id}`;
  const name = path.split(/[\\/]/).pop();
  const figure = document.createElement("figure");
  figure.className = "hit";
  figure.dataset.id = hit.id;
  const img = document.createElement("img");
  img.alt = name;
  loadThumbnail(img, hit.id);
  const caption = document.createElement("figcaption");
  caption.textContent = `${hit.rank}. ${name} ${hit.score.toFixed(3)}`;
  caption.title = (hit.metadata && hit.metadata.caption) || path;
  figure.append(img, caption);
  return figure;
}

async function search(body, what) {
  const status = $("search-status");
  show(status, `searching for ${what}…`);
  try {
    const data = await postJSON("/v1/search", { ...body, k: 8 });
    $("results").replaceChildren(...data.results.map(hitFigure));
    show(status, `${data.results.length} results for ${what}`);
  } catch (e) {
    $("results").replaceChildren();
    show(status, e.message, true);
  }
}

// --- one image: classify, find similar, ask ---------------------------------------------------------

function setImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    show($("answer"), "that is not an image file", true);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    page.image = reader.result;
    $("preview").src = reader.result;
    $("preview").hidden = false;
    $("drop-hint").textContent = file.name;
    show($("answer"), "");
    $("classify-result").replaceChildren();
  };
  reader.readAsDataURL(file);
}

function needImage() {
  if (page.image) return true;
  show($("answer"), "drop an image first", true);
  return false;
}

function scoreItem({ label, score }) {
  const item = document.createElement("li");
  const bar = document.createElement("span");
  bar.className = "bar";
  bar.style.width = `${Math.round(score * 120)}px`;
  item.append(`${label} ${(100 * score).toFixed(1)}%`, bar);
  return item;
}

async function classify() {
  const labels = $("labels").value.split(",").map((s) => s.trim()).filter(Boolean);
  const list = $("classify-result");
  try {
    const data = await postJSON("/v1/classify", { image: page.image, labels });
    list.replaceChildren(...data.scores.map(scoreItem));
    list.dataset.top = data.label;
  } catch (e) {
    list.replaceChildren();
    show($("answer"), e.message, true);
  }
}

async function ask() {
  const question = $("question").value.trim();
  const body = question ? { image: page.image, task: "vqa", question } : { image: page.image, task: "caption" };
  show($("answer"), "thinking…");
  try {
    show($("answer"), (await postJSON("/analyze-image", body)).answer);
  } catch (e) {
    show($("answer"), e.message, true);
  }
}

// --- chat ------------------------------------------------------------------------------------------

function addMessage(role, text) {
  const bubble = document.createElement("div");
  bubble.className = `msg ${role}`;
  bubble.textContent = text;
  $("messages").append(bubble);
  bubble.scrollIntoView({ block: "end" });
  return bubble;
}

// Read OpenAI-style server-sent events; call onPiece with each piece of content; return the whole text.
async function readEvents(response, onPiece) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return text;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const lines = buffer.slice(0, end).split("\n");
      buffer = buffer.slice(end + 2);
      const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (!data || data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const piece = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
      if (piece) {
        text += piece;
        onPiece(piece);
      }
    }
  }
}

async function sendChat(text) {
  const withImage = $("attach").checked && page.image;
  const content = withImage
    ? [{ type: "image_url", image_url: { url: page.image } }, { type: "text", text }]
    : text;
  page.history.push({ role: "user", content });
  addMessage("user", withImage ? `[image] ${text}` : text);
  const bubble = addMessage("assistant", "");
  bubble.dataset.state = "streaming";
  bubble.dataset.chunks = "0";
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({ messages: page.history, stream: true, max_tokens: 64 }),
    });
    if (!response.ok) throw new Error(await errorText(response));
    const reply = await readEvents(response, (piece) => {
      bubble.textContent += piece;
      bubble.dataset.chunks = String(Number(bubble.dataset.chunks) + 1);
      bubble.scrollIntoView({ block: "end" });
    });
    page.history.push({ role: "assistant", content: reply });
    bubble.dataset.state = "done";
  } catch (e) {
    page.history.pop();
    bubble.textContent = e.message;
    bubble.classList.add("error");
    bubble.dataset.state = "error";
  }
}

// --- wiring ----------------------------------------------------------------------------------------

function wire() {
  $("api-key").value = localStorage.getItem("polymodal-api-key") || "";
  $("api-key").addEventListener("change", () => {
    localStorage.setItem("polymodal-api-key", $("api-key").value.trim());
    loadStatus();
  });
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const query = $("query").value.trim();
    if (query) busy(e.target, () => search({ query }, `"${query}"`));
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    setImage(e.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", () => setImage($("file").files[0]));
  $("classify-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (needImage()) busy(e.target, classify);
  });
  $("similar").addEventListener("click", () => {
    if (needImage()) busy($("classify-form"), () => search({ image: page.image }, "the image"));
  });
  $("ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (needImage()) busy(e.target, ask);
  });
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || e.target.querySelector("button[type=submit]").disabled) return; // one reply at a time
    $("prompt").value = "";
    busy(e.target, () => sendChat(text));
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  $("clear-chat").addEventListener("click", () => {
    page.history = [];
    $("messages").replaceChildren();
  });
  loadStatus();
}

wire();
