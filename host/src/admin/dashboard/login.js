// plughost's sign-in page: asks for the admin token once, keeps it in this
// tab's sessionStorage, and loads the dashboard with it as a bearer token.
(() => {
"use strict";

const TOKEN_KEY = "plughost.admin.token";

function showError(text) {
  const e = document.getElementById("login-error");
  e.textContent = text;
  e.hidden = !text;
}

/** Loads the dashboard with `token`; false (and an error shown) when refused. */
async function signIn(token) {
  let r;
  try {
    r = await fetch("/", { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
  } catch (e) {
    showError("The host did not answer: " + e.message);
    return false;
  }
  if (r.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showError("That token was refused: check it and try again.");
    return false;
  }
  if (!r.ok) {
    showError("The host answered " + r.status + ".");
    return false;
  }
  const page = await r.text();
  sessionStorage.setItem(TOKEN_KEY, token);
  document.open();
  document.write(page);
  document.close();
  return true;
}

document.getElementById("login").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = document.getElementById("token");
  const token = input.value.trim();
  if (!token) return;
  showError("");
  signIn(token).then((ok) => { if (!ok) { input.value = ""; input.focus(); } });
});

const kept = sessionStorage.getItem(TOKEN_KEY);
if (kept) signIn(kept);
})();
