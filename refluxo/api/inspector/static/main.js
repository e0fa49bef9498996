// The inspector's entry point: the API key field, the notice line, and the two views
// (the runs list at #/, a run at #/runs/<id>), chosen by the address's fragment.

import { ApiError, apiKey, setApiKey } from "./api.js";
import { runView } from "./run.js";
import { runsView } from "./runs.js";

const view = document.getElementById("view");
const notice = document.getElementById("notice");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("api-key");
let stop = () => {};

function say(text, kind = "info") {
  notice.textContent = text;
  notice.className = `notice notice-${kind}`;
  notice.hidden = false;
}

function clear() {
  if (notice.classList.contains("notice-error")) notice.hidden = true;
}

function fail(error) {
  say(error instanceof ApiError ? error.explanation : `Unexpected error: ${error}`, "error");
}

function route() {
  stop();
  stop = () => {};
  notice.hidden = true;
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const context = { fail, clear, say };
  const match = /^\/runs\/(.+)$/.exec(path);
  if (match) {
    let id;
    try {
      id = decodeURIComponent(match[1]);
    } catch {
      id = match[1];
    }
    stop = runView(view, id, context);
  } else {
    stop = runsView(view, new URLSearchParams(query), context);
  }
}

keyInput.value = apiKey();
keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey(keyInput.value.trim());
  route();
});
document.getElementById("key-forget").addEventListener("click", () => {
  keyInput.value = "";
  setApiKey("");
  route();
});
window.addEventListener("hashchange", route);
route();
