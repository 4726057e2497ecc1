// The demo page: plain JavaScript over the public API (/v1), no build step, no outside request.
// The key lives in localStorage and travels only in the Authorization header, never in a URL.
"use strict";

const KEY_STORE = "animal-avatar.api-key";
const PAGE_SIZE = 12;
const POLL_FIRST_MS = 400;
const POLL_MAX_MS = 2000;
const POLL_GIVE_UP_MS = 5 * 60 * 1000;

// Every problem code the API answers with, in a person's words, with what to do about it.
// A code not listed here is looked up at /problems/{code} (tests/api/test_demo_files.py checks
// that every code of the API is listed).
const MESSAGES = {
  invalid_request: ["Something in the form isn't right.", "Check what you entered and try again."],
  unauthorized: ["This key isn't recognised.", "Check that you pasted the whole key, or create a new account."],
  forbidden: ["That isn't allowed with this key.", "Sign in with your own key and try again."],
  not_found: ["That avatar no longer exists.", "It may have been deleted, perhaps on another device: reload the page to see your list as it is."],
  method_not_allowed: ["The page asked for something the service doesn't do.", "Reload the page and try again."],
  conflict: ["That username or email is already taken.", "Choose another, or use the key of the account you already have."],
  image_too_large: ["This photo is too large.", "Choose a smaller photo, or take a new one at a lower resolution."],
  request_too_large: ["What you typed is too long.", "Shorten it and try again."],
  unsupported_image: ["This file isn't a photo we can read.", "Choose a JPEG, PNG, WebP or HEIC image."],
  invalid_image: ["This photo seems damaged or incomplete.", "Choose another photo, or take a new one."],
  no_face_detected: ["We couldn't find a face in this photo.", "Try a well-lit photo with your face clearly visible, looking at the camera."],
  content_blocked: ["This photo can't be turned into an avatar.", "The safety filter refused it. Try a different photo."],
  rate_limited: ["You've made a lot of avatars in a short time.", "Please wait a while before making more."],
  upstream_unavailable: ["The avatar service is busy or unavailable right now.", "Please try again in a minute."],
  upstream_timeout: ["Making your avatar took too long.", "Please try again: it often works the second time."],
  internal_error: ["Something went wrong on our side.", "Please try again in a moment."],
};
const OFFLINE = ["We can't reach the service.", "Check your connection and try again."];

const $ = (id) => document.getElementById(id);
const state = { key: localStorage.getItem(KEY_STORE), user: null, animals: [], cursor: null, shown: null, file: null, session: 0 };
// Thrown by a wait that outlived the signed-in session it was for (signed out, erased).
const CANCELLED = new Error("signed out");

// ---- talking to the API ----------------------------------------------------------------------

class Problem extends Error {
  constructor(body, retryAfter) {
    super(body.detail || body.code || "error");
    this.code = body.code || "internal_error";
    this.detail = body.detail;
    this.retryAfter = retryAfter;
  }
}

// An error answer as a Problem; one that is not problem+json (a proxy's page) by its status.
function answerProblem(status, body, retryAfter) {
  const code = (body && body.code) || (status >= 500 ? "upstream_unavailable" : "invalid_request");
  return new Problem(Object.assign({}, body, { code }), retryAfter);
}

function authHeaders(extra) {
  return Object.assign({ Authorization: "Bearer " + state.key }, extra || {});
}

async function api(method, path, { body, auth = true } = {}) {
  const headers = auth ? authHeaders() : {};
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (_) {
    throw new Problem({ code: "offline" });
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw answerProblem(response.status, body, response.headers.get("Retry-After"));
  }
  return response.status === 204 ? null : response.json();
}

// A random Idempotency-Key: a retried upload is then never made twice (works outside HTTPS too).
function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// The upload goes through XMLHttpRequest: fetch cannot report upload progress.
function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    const headers = authHeaders({ Prefer: "respond-async", "Idempotency-Key": idempotencyKey() });
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new Problem({ code: "offline" }));
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(answerProblem(xhr.status, xhr.response, xhr.getResponseHeader("Retry-After")));
    };
    xhr.send(form);
  });
}

// ---- showing what happened ---------------------------------------------------------------------

function waitText(seconds) {
  const s = Number(seconds);
  if (!Number.isFinite(s) || s <= 0) return "";
  if (s < 90) return ` Try again in ${Math.ceil(s)} seconds.`;
  return ` Try again in about ${Math.ceil(s / 60)} minutes.`;
}

async function wordsFor(problem) {
  if (problem.code === "offline") return OFFLINE;
  if (MESSAGES[problem.code]) return MESSAGES[problem.code];
  try {
    const page = await (await fetch("/problems/" + encodeURIComponent(problem.code))).json();
    if (page.title) return [page.title + ".", page.description];
  } catch (_) {
    /* fall through */
  }
  return MESSAGES.internal_error;
}

async function showError(problem) {
  if (!(problem instanceof Problem)) {
    console.error(problem);
    problem = new Problem({ code: "internal_error" });
  }
  const [title, advice] = await wordsFor(problem);
  $("error-title").textContent = title;
  $("error-advice").textContent = advice + waitText(problem.retryAfter);
  $("error-detail").textContent = problem.detail ? "Details: " + problem.detail : "";
  $("error").dataset.code = problem.code;
  $("error").hidden = false;
  if (problem.code === "unauthorized" && state.user) signOut("Your key no longer works here, so this browser forgot it.");
}

function clearMessages() {
  $("error").hidden = true;
  $("notice").hidden = true;
}

function notify(text) {
  $("notice").textContent = text;
  $("notice").hidden = false;
}

function setProgress(fraction, text) {
  $("progress-box").hidden = false;
  $("progress").value = Math.round(fraction * 100);
  $("progress-label").textContent = text;
}

function when(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function animalName(id) {
  const found = state.animals.find((a) => a.id === id);
  return found ? found.name : id;
}

function confirmWith(title, text, action) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// ---- account -----------------------------------------------------------------------------------

function showView() {
  const signedIn = Boolean(state.user);
  const showingKey = !$("new-key").hidden;
  $("welcome").hidden = signedIn || showingKey;
  $("account-bar").hidden = !signedIn;
  $("app").hidden = !signedIn || showingKey;
  if (signedIn) $("who").textContent = state.user.username;
}

async function signIn(key) {
  state.key = key;
  try {
    state.user = await api("GET", "/v1/users/me");
  } catch (problem) {
    state.key = null;
    state.user = null;
    throw problem;
  }
  localStorage.setItem(KEY_STORE, key);
  await loadHistory(true);
}

function signOut(message) {
  localStorage.removeItem(KEY_STORE);
  Object.assign(state, { key: null, user: null, cursor: null, shown: null, session: state.session + 1 });
  $("history").replaceChildren();
  $("result").hidden = true;
  $("result-image").removeAttribute("src");
  $("progress-box").hidden = true;
  // The selfie goes with the person: nothing of theirs stays for whoever signs in next.
  $("camera").value = $("photo").value = "";
  setPhoto(null);
  showView();
  if (message) notify(message);
}

async function onSignup(event) {
  event.preventDefault();
  clearMessages();
  const form = event.target;
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const user = await api("POST", "/v1/users", {
      auth: false,
      body: { username: form.username.value.trim(), email: form.email.value.trim() },
    });
    // The key first: it is shown only now, whatever happens next.
    localStorage.setItem(KEY_STORE, user.api_key);
    form.reset();
    $("new-key-value").value = user.api_key;
    $("new-key").hidden = false;
    showView();
    $("new-key-value").focus();
    $("new-key-value").select();
    await signIn(user.api_key);
    showView();
  } catch (problem) {
    await showError(problem);
  } finally {
    button.disabled = false;
  }
}

async function onSignin(event) {
  event.preventDefault();
  clearMessages();
  const form = event.target;
  try {
    await signIn(form.key.value.trim());
    form.reset();
    showView();
    $("make-title").focus();
  } catch (problem) {
    await showError(problem);
  }
}

async function onForget() {
  const ok = await confirmWith(
    "Forget this key?",
    "This browser will no longer be signed in. Your account and avatars stay; you will need your key to come back.",
    "Forget the key",
  );
  if (ok) signOut("This browser forgot your key.");
}

async function onErase() {
  const ok = await confirmWith(
    "Erase your account?",
    "This deletes your account, every avatar you made and every stored image of yours, for good. It cannot be undone.",
    "Erase everything",
  );
  if (!ok) return;
  clearMessages();
  try {
    await api("DELETE", "/v1/users/me");
    signOut("Your account and all your images were erased.");
  } catch (problem) {
    await showError(problem);
  }
}

// ---- making an avatar --------------------------------------------------------------------------

function chosenAnimals() {
  return Array.from(document.querySelectorAll("#animals input:checked"), (box) => box.value);
}

function chosenStyle() {
  const picked = document.querySelector('#make input[name="style"]:checked');
  return picked ? picked.value : "character";
}

function checkAnimals() {
  const first = document.querySelector("#animals input");
  if (first) first.setCustomValidity(chosenAnimals().length ? "" : "Pick at least one animal.");
}

function renderAnimals() {
  const boxes = state.animals.map((animal, i) => {
    const input = el("input", { type: "checkbox", name: "animal", value: animal.id, id: "animal-" + animal.id });
    if (i === 0) input.checked = true;
    input.addEventListener("change", checkAnimals);
    return el("label", { class: "chip", for: input.id, title: animal.description }, input, " " + animal.name);
  });
  $("animals").replaceChildren(...boxes);
  checkAnimals();
}

// The photo comes from the front camera (phones) or the file picker: whichever was used last.
function onPhoto(event) {
  const input = event.target;
  for (const other of [$("camera"), $("photo")]) if (other !== input) other.value = "";
  setPhoto(input.files[0] || null);
}

function setPhoto(file) {
  state.file = file;
  $("photo").setCustomValidity("");
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.removeAttribute("src");
  preview.hidden = !file;
  $("no-preview").hidden = true;
  if (file) preview.src = URL.createObjectURL(file);
}

function onPreviewError() {
  // HEIC, say, which most browsers cannot draw: the service can.
  $("preview").hidden = true;
  $("no-preview").hidden = !state.file;
}

async function onMake(event) {
  event.preventDefault();
  clearMessages();
  const file = state.file;
  if (!file) {
    $("photo").setCustomValidity("Choose or take a photo.");
    $("photo").reportValidity();
    return;
  }
  const animals = chosenAnimals();
  const form = new FormData();
  form.append("image", file, file.name || "photo");
  const pack = animals.length > 1;
  form.append(pack ? "animals" : "animal", animals.join(","));
  form.append("style", chosenStyle());
  $("submit").disabled = true; // also stops Enter from sending it twice
  try {
    setProgress(0, "Uploading your photo");
    const accepted = await upload(pack ? "/v1/packs" : "/v1/generations", form, (f) =>
      setProgress(f * 0.3, `Uploading your photo (${Math.round(f * 100)}%)`),
    );
    const done = pack ? await follow("/v1/packs/" + accepted.id, packProgress) : await follow("/v1/generations/" + accepted.id, oneProgress);
    const items = pack ? done.generations : [done];
    const good = items.filter((g) => g.status === "succeeded");
    $("progress-box").hidden = true;
    if (good.length) showResult(good[0], good);
    const failed = items.find((g) => g.status === "failed");
    if (failed) await showError(new Problem(failed.error || { code: "internal_error" }));
    if (pack && good.length && failed) notify(`${good.length} of ${items.length} animals were made.`);
    await loadHistory(true);
  } catch (problem) {
    $("progress-box").hidden = true;
    if (problem !== CANCELLED) await showError(problem);
  } finally {
    $("submit").disabled = false;
  }
}

const FINISHED = new Set(["succeeded", "failed", "partial"]);

function oneProgress(record) {
  const name = animalName(record.animal);
  if (record.status === "pending") return [0.35, "Waiting for a turn"];
  return [0.6, `Drawing your ${name.toLowerCase()}`];
}

function packProgress(pack) {
  const total = pack.generations.length;
  const done = pack.generations.filter((g) => FINISHED.has(g.status)).length;
  if (pack.status === "pending") return [0.35, "Waiting for a turn"];
  return [0.4 + (0.6 * done) / total, `Drawing your animals: ${done} of ${total} done`];
}

// Poll a record until it is finished, showing its progress; quick at first, then every 2 s.
async function follow(path, progressOf) {
  let wait = POLL_FIRST_MS;
  const started = Date.now();
  const session = state.session;
  for (;;) {
    if (session !== state.session) throw CANCELLED;
    const record = await api("GET", path);
    if (session !== state.session) throw CANCELLED;
    if (FINISHED.has(record.status)) return record;
    if (progressOf) setProgress(...progressOf(record));
    if (Date.now() - started > POLL_GIVE_UP_MS) throw new Problem({ code: "upstream_timeout" });
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 1.5, POLL_MAX_MS);
  }
}

// ---- the result ----------------------------------------------------------------------------------

function drawBoxes(record) {
  const img = $("result-image");
  const svg = $("boxes");
  const ns = "http://www.w3.org/2000/svg";
  svg.setAttribute("viewBox", `0 0 ${img.naturalWidth || 1} ${img.naturalHeight || 1}`);
  const shapes = [];
  const stroke = Math.max(2, (img.naturalWidth || 400) / 250);
  for (const face of record.faces || []) {
    const rect = document.createElementNS(ns, "rect");
    for (const [k, v] of Object.entries({ x: face.box.x, y: face.box.y, width: face.box.width, height: face.box.height, "stroke-width": stroke })) rect.setAttribute(k, v);
    shapes.push(rect);
    for (const point of Object.values(face.landmarks || {})) {
      const dot = document.createElementNS(ns, "circle");
      for (const [k, v] of Object.entries({ cx: point.x, cy: point.y, r: stroke * 1.5 })) dot.setAttribute(k, v);
      shapes.push(dot);
    }
  }
  svg.replaceChildren(...shapes);
}

function showResult(record, siblings) {
  state.shown = record;
  const img = $("result-image");
  const name = animalName(record.animal);
  img.dataset.retried = "";
  img.alt = `Your photo as a ${name.toLowerCase()}`;
  img.src = record.image_url;
  $("open-image").href = record.image_url;
  const faces = (record.faces || []).length;
  $("result-caption").textContent = `${name} · ${faces} face${faces === 1 ? "" : "s"} · made ${when(record.completed_at || record.created_at)}`;
  const strip = $("pack-strip");
  strip.hidden = !siblings || siblings.length < 2;
  if (!strip.hidden) {
    strip.replaceChildren(
      ...siblings.map((g) => {
        const button = el("button", { type: "button", "aria-pressed": String(g.id === record.id), text: animalName(g.animal) });
        button.addEventListener("click", () => showResult(g, siblings));
        return button;
      }),
    );
  }
  $("result").hidden = false;
  $("result-title").focus({ preventScroll: false });
}

// Signed links expire: an image whose link stopped working is given a fresh one, once.
async function freshLink(img, record) {
  if (img.dataset.retried) return null;
  img.dataset.retried = "yes";
  try {
    const fresh = await api("GET", "/v1/generations/" + record.id);
    if (!fresh.image_url) return null;
    record.image_url = fresh.image_url;
    img.src = fresh.image_url;
    return fresh.image_url;
  } catch (_) {
    return null; // deleted meanwhile, or offline: the history tells when it is reloaded
  }
}

async function onResultError() {
  const link = state.shown && (await freshLink($("result-image"), state.shown));
  if (link) $("open-image").href = link;
}

// ---- history -------------------------------------------------------------------------------------

function historyItem(record) {
  const name = animalName(record.animal);
  const made = when(record.created_at);
  const item = el("li", { class: "item", "data-id": record.id, "data-status": record.status });
  if (record.status === "succeeded") {
    const open = el("button", { type: "button", class: "thumb", "aria-label": `Show the ${name.toLowerCase()} avatar made ${made}` });
    const thumb = el("img", { src: record.image_url, alt: `${name} avatar`, loading: "lazy", width: "160", height: "160" });
    thumb.addEventListener("error", () => freshLink(thumb, record));
    open.append(thumb);
    open.addEventListener("click", () => showResult(record));
    item.append(open);
  } else {
    const unfinished = record.status !== "failed";
    const words = unfinished ? "Still being made…" : (MESSAGES[record.error && record.error.code] || MESSAGES.internal_error)[0];
    item.append(el("div", { class: "thumb empty", text: words }));
    if (unfinished) settle(record, item);
  }
  const remove = el("button", { type: "button", class: "link danger", "aria-label": `Delete the ${name.toLowerCase()} avatar made ${made}`, text: "Delete" });
  remove.addEventListener("click", () => onDelete(record, item));
  item.append(el("p", { class: "meta" }, el("strong", { text: name }), el("span", { text: made })), remove);
  return item;
}

// An avatar still being made (after a reload, say) takes its place in the list when finished.
async function settle(record, item) {
  try {
    const done = await follow("/v1/generations/" + record.id, null);
    if (item.isConnected) item.replaceWith(historyItem(done));
  } catch (_) {
    /* deleted meanwhile, or signed out: nothing to update */
  }
}

async function loadHistory(fromStart) {
  if (fromStart) state.cursor = null;
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (state.cursor) query.set("cursor", state.cursor);
  const page = await api("GET", "/v1/generations?" + query);
  const items = page.items.map(historyItem);
  if (fromStart) $("history").replaceChildren(...items);
  else $("history").append(...items);
  state.cursor = page.next_cursor;
  $("more").hidden = !state.cursor;
}

async function onMore() {
  clearMessages();
  try {
    await loadHistory(false);
  } catch (problem) {
    await showError(problem);
  }
}

async function onDelete(record, item) {
  const name = animalName(record.animal).toLowerCase();
  if (!(await confirmWith(`Delete this ${name} avatar?`, "The avatar and its stored image are deleted for good.", "Delete"))) return;
  clearMessages();
  try {
    await api("DELETE", "/v1/generations/" + record.id);
    notify(`The ${name} avatar was deleted.`);
  } catch (problem) {
    if (problem.code !== "not_found") return showError(problem);
  }
  item.remove();
  if (state.shown && state.shown.id === record.id) $("result").hidden = true;
  $("history-title").focus();
}

// ---- start ---------------------------------------------------------------------------------------

async function start() {
  $("signup").addEventListener("submit", onSignup);
  $("signin").addEventListener("submit", onSignin);
  $("make").addEventListener("submit", onMake);
  $("photo").addEventListener("change", onPhoto);
  $("camera").addEventListener("change", onPhoto);
  $("preview").addEventListener("error", onPreviewError);
  $("forget").addEventListener("click", onForget);
  $("erase").addEventListener("click", onErase);
  $("more").addEventListener("click", onMore);
  $("error-close").addEventListener("click", () => ($("error").hidden = true));
  $("result-image").addEventListener("load", () => state.shown && drawBoxes(state.shown));
  $("result-image").addEventListener("error", onResultError);
  $("all-animals").addEventListener("click", () => {
    document.querySelectorAll("#animals input").forEach((box) => (box.checked = true));
    checkAnimals();
  });
  $("copy-key").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("new-key-value").value);
      notify("Key copied.");
    } catch (_) {
      $("new-key-value").select();
      notify("Select the key and copy it yourself.");
    }
  });
  $("key-saved").addEventListener("click", () => {
    $("new-key-value").value = "";
    $("new-key").hidden = true;
    showView();
    $("make-title").focus();
  });
  try {
    state.animals = await api("GET", "/v1/animals", { auth: false });
    renderAnimals();
    if (state.key) await signIn(state.key);
  } catch (problem) {
    if (problem.code === "unauthorized") signOut("The key this browser kept no longer works (was the account erased?), so it was forgotten.");
    else await showError(problem);
  }
  showView();
  document.body.dataset.ready = "yes";
}

start();
