// The inspector's entry point: the API key field, the notice line, and the two views
// (the runs list at #/, a run at #/runs/<id>), chosen by the address's fragment.

import { ApiError, apiKey, keyProblem, setApiKey } from "./api.js";
import { runView } from "./run.js";
import { runsView } from "./runs.js";

const view = document.getElementById("view");
const notice = document.getElementById("notice");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("api-key");
const keyError = document.getElementById("api-key-error");
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

/** Says what is wrong with the key typed (or nothing); true if it may be used. */
function checkKey() {
  const problem = keyProblem(keyInput.value.trim());
  keyError.textContent = problem || "";
  keyError.hidden = !problem;
  keyInput.setAttribute("aria-invalid", problem ? "true" : "false");
  return !problem;
}

keyInput.value = apiKey();
keyInput.addEventListener("input", () => {
  if (keyInput.getAttribute("aria-invalid") === "true") checkKey();
});
keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!checkKey()) {
    keyInput.focus();
    return; // not kept: the key in use stays what it was
  }
  setApiKey(keyInput.value.trim());
  route();
});
document.getElementById("key-forget").addEventListener("click", () => {
  keyInput.value = "";
  checkKey();
  setApiKey("");
  route();
});
window.addEventListener("hashchange", route);
route();
