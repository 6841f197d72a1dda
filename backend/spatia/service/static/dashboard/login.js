"use strict";
// The token arrives in the link's fragment (never sent to the server). It is traded once for an
// HttpOnly, SameSite=Strict cookie, and the link is replaced in the browser's history.
(function () {
  const status = document.getElementById("status");
  const form = document.getElementById("form");
  async function signIn(token) {
    const response = await fetch("/v1/session", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({token: token}),
    });
    if (response.status === 204) {
      location.replace("/#/");
      return;
    }
    status.textContent = "That token was refused; paste the current one.";
    form.hidden = false;
  }
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  history.replaceState(null, "", "/login");  // the token leaves the address bar and history at once
  if (token) {
    signIn(token);
  } else {
    status.textContent = "Paste the service's token.";
    form.hidden = false;
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    signIn(document.getElementById("token").value.trim());
  });
})();
