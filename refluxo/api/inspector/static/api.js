// The API, as the page calls it: same origin, JSON, the user's key as a bearer token.

const KEY = "refluxo.apiKey";
const BASE = new URL(".", document.baseURI);

/** An error answer (or none at all), with the API's code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** What to tell the user. */
  get explanation() {
    if (this.status === 401) {
      return `The server refused the API key (${this.message}). ` +
        "Enter the server's API key (REFLUXO_API_KEY) in the field above.";
    }
    if (this.status === 403) return `Not allowed: ${this.message}`;
    if (this.status === 0) return this.message;
    return `${this.message} (HTTP ${this.status})`;
  }
}

/** The key kept for this tab only (sessionStorage): gone when the tab closes. */
export function apiKey() {
  return window.sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) window.sessionStorage.setItem(KEY, key);
  else window.sessionStorage.removeItem(KEY);
}

/**
 * What is wrong with `key` as an API key (null: nothing). A key holds printable ASCII only:
 * a pasted curly quote or non-breaking space cannot be sent in a header at all.
 */
export function keyProblem(key) {
  for (const char of key) {
    const code = char.codePointAt(0);
    if (code < 0x20 || code > 0x7e) {
      const hex = code.toString(16).toUpperCase().padStart(4, "0");
      const shown = code < 0x20 || code === 0x7f || /\s/u.test(char) ? "" : `“${char}” `;
      return `The key holds the character ${shown}(U+${hex}), which no API key has: a key is ` +
        "printable ASCII (letters, digits, punctuation) only. Retype or re-copy it without that character.";
    }
  }
  return null;
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  const problem = keyProblem(key);
  if (problem) throw new ApiError(0, "bad_key", problem);
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(new URL(path, BASE), init);
  } catch (error) {
    throw new ApiError(0, "unreachable", `The server could not be reached (${error.message}).`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const detail = data && data.error ? data.error : {};
    throw new ApiError(
      response.status,
      detail.code || `http_${response.status}`,
      detail.message || response.statusText || "request failed",
    );
  }
  return data;
}

const run = (id) => `runs/${encodeURIComponent(id)}`;

export function listRuns({ status, limit = 50, cursor } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (status) query.set("status", status);
  if (cursor) query.set("cursor", cursor);
  return call("GET", `runs?${query}`);
}

export function listWorkflows() {
  return call("GET", "workflows");
}

export function getRun(id, { after = -1, limit = 1000 } = {}) {
  const query = new URLSearchParams({ timelineAfter: String(after), timelineLimit: String(limit) });
  return call("GET", `${run(id)}?${query}`);
}

export function getGraph(id) {
  return call("GET", `${run(id)}/graph`);
}

/** A page of the run's child runs (of its latest wait): those after index `after`, by index. */
export function listChildren(id, { after = -1, limit = 100 } = {}) {
  const query = new URLSearchParams({ after: String(after), limit: String(limit) });
  return call("GET", `${run(id)}/children?${query}`);
}

export function resumeRun(id, payload, version) {
  return call("POST", `${run(id)}/resume`, { payload, version });
}

export function cancelRun(id, reason) {
  return call("POST", `${run(id)}/cancel`, reason ? { reason } : {});
}
